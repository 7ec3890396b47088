//! Customers' self-service, public and rate-limited per client address: "is it just me?" by
//! customer id and token, or by location, and a customer's own preferences by token. Answers
//! never carry anyone else's data: a location answer names no customer, and a wrong token
//! looks exactly like an unknown customer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::customers::{store_preferences, Preferences};
use super::error::{JsonBody, QueryArgs};
use super::{ApiError, ApiState};
use crate::domain::{Coord, CustomerId};
use crate::outage::{FaultState, OutageBook};
use crate::store::{Store, StoreError};

/// How close a device-only fault's customer must be for a location to count as "here".
const NEAR_M: f64 = 150.0;

/// The key of customers' status tokens: generated once, shared through the database.
#[derive(Clone)]
pub struct TokenKey(Arc<[u8]>);

impl TokenKey {
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let fresh: [u8; 32] = rand::random();
        let b64 = base64::engine::general_purpose::STANDARD;
        let stored = store
            .server_secret("self_service_token_key", &b64.encode(fresh))
            .await?;
        let key = b64
            .decode(stored)
            .map_err(|e| StoreError::Corrupt(format!("self-service token key: {e}")))?;
        Ok(Self(key.into()))
    }

    /// A customer's token: what a notice or the app gives them to check and manage their own
    /// outage status. HMAC, so nothing per customer is stored.
    pub fn token(&self, customer_id: &str) -> String {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return String::new();
        };
        mac.update(customer_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    }

    fn verify(&self, customer_id: &str, token: &str) -> bool {
        super::auth::constant_time_eq(self.token(customer_id).as_bytes(), token.as_bytes())
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusArgs {
    customer_id: Option<String>,
    token: Option<String>,
    lon: Option<f64>,
    lat: Option<f64>,
}

/// The public routes' first step: a request takes a token from its client's bucket before its
/// query or body is read. Every request pays, malformed ones included, and a flood of large
/// bodies is refused unread (the body limit comes second, at `api.public_max_body_bytes`).
pub async fn rate_limit(
    State(state): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let checked = state
        .public_limit
        .check(client.ip(), std::time::Instant::now());
    match checked {
        Ok(()) => next.run(request).await,
        Err(retry_after_secs) => ApiError::TooManyRequests { retry_after_secs }.into_response(),
    }
}

fn unknown() -> ApiError {
    ApiError::NotFound("unknown customer or wrong token".into())
}

/// `GET /status?customer_id=…&token=…` or `GET /status?lon=…&lat=…` (rate-limited by
/// [`rate_limit`]).
pub async fn status(
    State(state): State<ApiState>,
    QueryArgs(args): QueryArgs<StatusArgs>,
) -> Result<Json<Value>, ApiError> {
    match (&args.customer_id, &args.token, args.lon, args.lat) {
        (Some(id), Some(token), None, None) => customer_status(&state, id, token).await,
        (None, None, Some(lon), Some(lat)) => {
            let at = Coord::new(lon, lat).map_err(|e| ApiError::BadRequest(e.to_string()))?;
            Ok(Json(location_status(&state.book.read(), at)))
        }
        _ => Err(ApiError::BadRequest(
            "ask with customer_id and token, or with lon and lat".into(),
        )),
    }
}

async fn customer_status(state: &ApiState, id: &str, token: &str) -> Result<Json<Value>, ApiError> {
    if !state.tokens.verify(id, token) {
        return Err(unknown());
    }
    let mut body = {
        let book = state.book.read();
        // An erased customer keeps a slot in the index, unplaced, until the erasure completes:
        // their token answers as for nobody.
        let idx = CustomerId::parse(id)
            .ok()
            .and_then(|cid| book.index().idx_of(&cid))
            .filter(|&idx| book.index().get(idx).is_placed())
            .ok_or_else(unknown)?;
        let faults: Vec<_> = book
            .faults_of(idx)
            .into_iter()
            .filter_map(|f| book.fault(f))
            .collect();
        let planned: Vec<Value> = book
            .faults()
            .filter(|f| f.state == FaultState::Planned && f.affected.binary_search(&idx).is_ok())
            .map(|f| json!({ "starts_at": f.starts_at, "ends_at": f.ends_at, "cause": f.cause }))
            .collect();
        json!({
            "customer_id": id,
            "out": !faults.is_empty(),
            "since": book.episode_of(idx),
            "etr": latest_etr(faults.iter().map(|f| f.etr)),
            "causes": faults.iter().map(|f| f.cause.as_str()).collect::<Vec<_>>(),
            "planned": planned,
        })
    };
    if let Some(c) = state.store.customer(id).await? {
        body["preferences"] = json!({
            "channels": c.channels.split('|').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
            "language": c.language, "quiet_hours": c.quiet_hours,
        });
    }
    Ok(Json(body))
}

/// Power is back when the last fault ends: the latest ETR, unknown if any fault has none.
fn latest_etr(etrs: impl Iterator<Item = Option<DateTime<Utc>>>) -> Option<DateTime<Utc>> {
    etrs.collect::<Option<Vec<_>>>()?.into_iter().max()
}

/// Outages covering a point: open active fault areas that contain it, and device-only faults
/// with a customer out within [`NEAR_M`]. No customer is named.
fn location_status(book: &OutageBook, at: Coord) -> Value {
    let near = book.index().near(at, NEAR_M);
    let here: Vec<_> = book
        .faults()
        .filter(|f| f.state == FaultState::Active)
        .filter(|f| match &f.area {
            Some(area) => area.prepared.contains(at.lon, at.lat),
            None => near.iter().any(|c| f.affected.binary_search(c).is_ok()),
        })
        .collect();
    let since = here.iter().filter_map(|f| f.detected_at).min();
    json!({
        "outage": !here.is_empty(),
        "since": since,
        "etr": if here.is_empty() { None } else { latest_etr(here.iter().map(|f| f.etr)) },
        "causes": here.iter().map(|f| f.cause.as_str()).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
pub struct TokenArgs {
    customer_id: String,
    token: String,
}

/// `PUT /status/preferences?customer_id=…&token=…`: a customer changes their own channels,
/// language and quiet hours (rate-limited by [`rate_limit`], the body by
/// `api.public_max_body_bytes`).
pub async fn preferences(
    State(state): State<ApiState>,
    QueryArgs(args): QueryArgs<TokenArgs>,
    JsonBody(p): JsonBody<Preferences>,
) -> Result<Json<Value>, ApiError> {
    if !state.tokens.verify(&args.customer_id, &args.token) {
        return Err(unknown());
    }
    Ok(Json(
        store_preferences(&state, &args.customer_id, &p).await?,
    ))
}
