//! Customers through the API: CSV import, one customer, preferences (also used by the
//! self-service route), erasure, and the API's own audit log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Eraser, Operator, Viewer};
use super::error::{JsonBody, QueryArgs};
use super::{ApiError, ApiState};
use crate::domain::{Channel, CustomerId, Email, Language, Phone, QuietHours};
use crate::store::CustomerView;

/// A phone number as the caller may see it: whole, or masked as in the logs.
pub(super) fn phone_shown(p: Option<&Phone>, full: bool) -> Option<String> {
    shown(p, full, Phone::as_str, Phone::masked)
}

/// An e-mail address as the caller may see it: whole, or masked as in the logs.
pub(super) fn email_shown(e: Option<&Email>, full: bool) -> Option<String> {
    shown(e, full, Email::as_str, Email::masked)
}

fn shown<T>(
    contact: Option<&T>,
    full: bool,
    whole: fn(&T) -> &str,
    masked: fn(&T) -> String,
) -> Option<String> {
    contact.map(|c| if full { whole(c).to_owned() } else { masked(c) })
}

/// A customer as JSON, contacts masked unless `full`.
pub(super) fn masked(c: CustomerView, full: bool) -> Value {
    let phone = phone_shown(c.phone.as_ref(), full);
    let email = email_shown(c.email.as_ref(), full);
    json!({
        "customer_id": c.customer_id, "name": c.name, "lon": c.lon, "lat": c.lat,
        "phone": phone, "email": email, "language": c.language,
        "channels": split_channels(&c.channels), "quiet_hours": c.quiet_hours,
        "timezone": c.timezone, "critical": c.critical,
    })
}

fn split_channels(stored: &str) -> Vec<&str> {
    stored.split('|').filter(|s| !s.is_empty()).collect()
}

/// Preferences a customer (or an operator for them) may change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// In order of preference; empty opts out of outage notices.
    pub channels: Vec<String>,
    pub language: String,
    /// `HH:MM-HH:MM`, or null for none.
    pub quiet_hours: Option<String>,
}

/// Validated preferences in their stored form: (channels, language, quiet hours).
pub(super) fn parse_preferences(
    p: &Preferences,
) -> Result<(String, String, Option<String>), ApiError> {
    let bad = |e: crate::domain::DomainError| ApiError::Unprocessable(e.to_string());
    let mut channels: Vec<&'static str> = Vec::new();
    for raw in &p.channels {
        let channel: Channel = raw.parse().map_err(bad)?;
        if channels.contains(&channel.as_str()) {
            return Err(ApiError::Unprocessable(format!(
                "channel `{raw}` is listed twice"
            )));
        }
        channels.push(channel.as_str());
    }
    let language = Language::parse(&p.language).map_err(bad)?;
    let quiet = p
        .quiet_hours
        .as_deref()
        .filter(|q| !q.trim().is_empty())
        .map(|q| q.parse::<QuietHours>().map(|q| q.to_string()))
        .transpose()
        .map_err(bad)?;
    Ok((channels.join("|"), language.as_str().to_owned(), quiet))
}

/// Stores validated preferences; 404 for an unknown customer.
pub(super) async fn store_preferences(
    state: &ApiState,
    customer_id: &str,
    p: &Preferences,
) -> Result<Value, ApiError> {
    let (channels, language, quiet) = parse_preferences(p)?;
    let now = crate::store::millis(state.clock.now());
    let unknown = || ApiError::NotFound(format!("no customer {customer_id}"));
    // An erased customer's tombstone takes no preferences: it stands for no one.
    if state.store.is_erased(customer_id).await? {
        return Err(unknown());
    }
    if !state
        .store
        .set_preferences(customer_id, &channels, &language, quiet.as_deref(), now)
        .await?
    {
        return Err(unknown());
    }
    Ok(json!({
        "customer_id": customer_id, "channels": split_channels(&channels),
        "language": language, "quiet_hours": quiet,
    }))
}

/// `PUT /api/v1/customers/{id}/preferences`.
pub async fn preferences(
    State(state): State<ApiState>,
    Operator(_): Operator,
    Path(id): Path<String>,
    JsonBody(p): JsonBody<Preferences>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(store_preferences(&state, &id, &p).await?))
}

/// `GET /api/v1/customers/{id}`: the customer, contacts masked unless operator, and whether
/// they are out now.
pub async fn one(
    State(state): State<ApiState>,
    Viewer(caller): Viewer,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let unknown = || ApiError::NotFound(format!("no customer {id}"));
    let customer = state.store.customer(&id).await?.ok_or_else(unknown)?;
    if state.store.is_erased(&id).await? {
        return Err(unknown());
    }
    let mut body = masked(customer, caller.sees_contacts());
    let faults: Vec<String> = {
        let book = state.book.read();
        crate::domain::CustomerId::parse(&id)
            .ok()
            .and_then(|cid| book.index().idx_of(&cid))
            .map(|idx| {
                book.faults_of(idx)
                    .into_iter()
                    .map(|f| f.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    body["out"] = json!(!faults.is_empty());
    body["faults"] = json!(faults);
    Ok(Json(body))
}

/// `DELETE /api/v1/customers/{id}`: erases the customer (docs/DATA.md, "Erasure"). 200 once
/// their personal data is gone; 202 while a notice of theirs is in flight, whose text goes
/// when it settles. The history stays, cut from the id by the next sweep after a grace.
pub async fn erase(
    State(state): State<ApiState>,
    Eraser(_): Eraser,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let unknown = || ApiError::NotFound(format!("no customer {id}"));
    let customer = CustomerId::parse(&id).map_err(|_| unknown())?;
    let now = crate::store::millis(state.clock.now());
    let erasure = state
        .store
        .erase_customer(&customer, now)
        .await?
        .ok_or_else(unknown)?;
    let in_flight = erasure.notices_in_flight;
    // No id in the log: logs are kept longer than an erasure takes.
    tracing::info!(notices_in_flight = in_flight, "customer erased");
    let (status, word) = if in_flight == 0 {
        (StatusCode::OK, "erased")
    } else {
        (StatusCode::ACCEPTED, "erasing")
    };
    Ok((
        status,
        Json(json!({ "status": word, "notices_in_flight": in_flight })),
    ))
}

/// `POST /api/v1/customers/import`: a CSV (or GeoJSON) body in the columns of docs/DATA.md,
/// upserted by id. Bad rows are listed with their line; the good ones are imported.
pub async fn import(
    State(state): State<ApiState>,
    Operator(_): Operator,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let report = crate::directory::parse_customers(&body).map_err(ApiError::Unprocessable)?;
    state
        .store
        .upsert_customers(&report.rows, state.clock.now())
        .await?;
    let errors: Vec<Value> = report
        .errors
        .iter()
        .map(|e| json!({ "line": e.line, "reason": e.reason }))
        .collect();
    Ok(Json(
        json!({ "imported": report.rows.len(), "rejected": errors }),
    ))
}

#[derive(Debug, Deserialize)]
pub struct AuditArgs {
    limit: Option<i64>,
}

/// `GET /api/v1/audit`: the newest API writes (who, when, what, outcome).
pub async fn audit(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
    QueryArgs(args): QueryArgs<AuditArgs>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .api_audit(args.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!({ "writes": rows })))
}
