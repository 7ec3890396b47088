//! `GET /api/v1/stream`: server-sent events for the console — `fault` with a fault's new
//! status document, `staffing` when the plan was overridden. A console that falls behind gets
//! `resync` and reloads instead of a backlog.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;

use super::auth::Viewer;
use super::ApiState;

pub async fn stream(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live.subscribe();
    let stop = state.stopping.clone();
    let events = stream::unfold((rx, stop), |(mut rx, stop)| async move {
        let event = tokio::select! {
            _ = stop.cancelled() => return None,
            next = rx.recv() => match next {
                Ok(live) => Event::default().event(live.kind).data(&*live.data),
                Err(RecvError::Lagged(_)) => Event::default().event("resync").data("{}"),
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(event), (rx, stop)))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
