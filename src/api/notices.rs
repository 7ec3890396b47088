//! Notices through the API: search by customer or fault, resend one that never reached its
//! customer, cancel a fault's notices still waiting.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{Operator, Viewer};
use super::error::QueryArgs;
use super::faults::fault_id;
use super::{ApiError, ApiState};
use crate::store::{NoticeQuery, Resend};

#[derive(Debug, Deserialize)]
pub struct SearchArgs {
    customer_id: Option<String>,
    fault_id: Option<String>,
    state: Option<String>,
    /// Page on: notices with ids below this one.
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/notices?customer_id=…|fault_id=…`: newest first, paged by id.
pub async fn search(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
    QueryArgs(args): QueryArgs<SearchArgs>,
) -> Result<Json<Value>, ApiError> {
    if args.customer_id.is_none() && args.fault_id.is_none() {
        return Err(ApiError::BadRequest(
            "search by customer_id or fault_id (or both)".into(),
        ));
    }
    let limit = args.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .store
        .search_notices(&NoticeQuery {
            customer_id: args.customer_id,
            fault_id: args.fault_id,
            state: args.state,
            before_id: args.before,
            limit,
        })
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|n| n.id))
        .flatten();
    Ok(Json(json!({ "notices": rows, "next_before": next })))
}

/// `POST /api/v1/notices/{id}/resend`: only a notice that ended `failed`, `unreachable` or
/// `suppressed` goes out again (409 otherwise: at most once per customer, episode and kind).
pub async fn resend(
    State(state): State<ApiState>,
    Operator(_): Operator,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let now = crate::store::millis(state.clock.now());
    match state.store.resend_notice(id, now).await? {
        Resend::Queued => {
            state.wake.notify_one();
            Ok(Json(json!({ "id": id, "state": "queued" })))
        }
        Resend::NoSuchNotice => Err(ApiError::NotFound(format!("no notice {id}"))),
        Resend::NotResendable(st) => Err(ApiError::Conflict(format!(
            "notice {id} is {st}; only failed, unreachable or suppressed notices are resent"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CancelBody {
    reason: Option<String>,
}

/// `POST /api/v1/faults/{id}/notices/cancel`: the fault's queued notices become `suppressed`
/// with the reason; notices already in flight finish.
pub async fn cancel(
    State(state): State<ApiState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = fault_id(&id)?;
    // The body is optional: an empty one cancels without a reason.
    let body: CancelBody = if body.is_empty() {
        CancelBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::Unprocessable(e.to_string()))?
    };
    let why = body.reason.unwrap_or_else(|| "no reason given".into());
    let reason = format!("cancelled by {}: {why}", caller.actor());
    let now = crate::store::millis(state.clock.now());
    let n = state
        .store
        .cancel_queued_notices(id.as_str(), &reason, now)
        .await?;
    let _ = state.dirty.send(id.clone());
    Ok(Json(json!({ "fault_id": id.as_str(), "cancelled": n })))
}
