//! Fault events over HTTP, for operators without a broker: the payload joins the MQTT events'
//! queue to the ingest engine (same contract, validation, dead-letter record and ordering), and
//! the answer waits for its commit.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::auth::{Operator, Viewer};
use super::error::QueryArgs;
use super::{ApiError, ApiState};
use crate::domain::Region;
use crate::ingest::mqtt::Inbound;
use crate::ingest::publish::event_topic;
use crate::store::EventStatus;

/// How long a poster waits for the commit before being told to look in the event log.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// The most of a stored reason or id a listing shows. They are written short (every quoted
/// value cut at `domain::QUOTE_CHARS`); rows stored before that could hold a megabyte each.
const MAX_REASON_CHARS: usize = 4000;

#[derive(Debug, Deserialize)]
pub struct PostArgs {
    /// The topic's region level (default `http`); informational, as on MQTT.
    region: Option<String>,
}

/// `POST /api/v1/events`: 200 with the event's status once committed (`applied`, `stale`,
/// `ignored`, `duplicate`), 422 with the reason when rejected (it is in the dead letters too).
pub async fn post(
    State(state): State<ApiState>,
    Operator(_): Operator,
    QueryArgs(args): QueryArgs<PostArgs>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Refused rather than cleaned: the region names the topic, which the event log, the
    // dead letter and log lines carry.
    let region = Region::parse(args.region.as_deref().unwrap_or("http"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let topic = event_topic(&state.events_filter, region.as_str(), &body);
    let (reply, verdict) = oneshot::channel();
    state
        .events
        .send(Inbound {
            topic,
            payload: body.to_vec(),
            receipt: None,
            reply: Some(reply),
        })
        .map_err(|_| ApiError::Unavailable("the daemon is stopping; post again later".into()))?;
    let verdict = tokio::time::timeout(COMMIT_WAIT, verdict)
        .await
        .map_err(|_| {
            ApiError::Unavailable(
                "not committed yet (the database is slow or down); the event is queued, see /api/v1/events/rejected or the fault".into(),
            )
        })?
        .map_err(|_| ApiError::Unavailable("the daemon stopped before the commit".into()))?;
    let status = if verdict.status == EventStatus::Rejected {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "status": verdict.status.as_str(), "reason": verdict.reason })),
    ))
}

#[derive(Debug, Deserialize)]
pub struct RejectedArgs {
    limit: Option<i64>,
}

/// `GET /api/v1/events/rejected`: the dead letters, newest first, with their reasons.
pub async fn rejected(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
    QueryArgs(args): QueryArgs<RejectedArgs>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .list_events(
            Some(EventStatus::Rejected),
            args.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    let events: Vec<Value> = rows
        .into_iter()
        .map(|e| {
            // Payloads are kept whole in the database; a listing shows the start of each.
            let text = String::from_utf8_lossy(&e.payload);
            let payload: String = text.chars().take(2000).collect();
            json!({
                "id": e.id, "event_id": e.event_id.as_deref().map(clip),
                "fault_id": e.fault_id.as_deref().map(clip), "topic": e.topic,
                "received_at": e.received_at, "reason": e.reason.as_deref().map(clip),
                "payload": payload,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}

/// A stored text as a listing shows it: at most [`MAX_REASON_CHARS`] characters.
fn clip(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason.to_owned(),
    }
}
