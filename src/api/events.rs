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
use crate::ingest::mqtt::{events_topic_base, topic_level, Inbound};
use crate::store::EventStatus;

/// How long a poster waits for the commit before being told to look in the event log.
const COMMIT_WAIT: Duration = Duration::from_secs(30);

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
    let region = args.region.unwrap_or_else(|| "http".into());
    let fault = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["fault_id"].as_str().map(topic_level))
        .unwrap_or_else(|| "unknown".into());
    let topic = format!(
        "{}/{}/{fault}",
        events_topic_base(&state.events_filter),
        topic_level(&region)
    );
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
                "id": e.id, "event_id": e.event_id, "fault_id": e.fault_id, "topic": e.topic,
                "received_at": e.received_at, "reason": e.reason, "payload": payload,
            })
        })
        .collect();
    Ok(Json(json!({ "events": events })))
}
