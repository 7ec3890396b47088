//! `/metrics` (Prometheus text format, behind an API key) and `/readyz`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::auth::Viewer;
use super::{ApiError, ApiState};
use crate::telemetry::metrics::{describe, sample, OUTBOX_WRITE, SEND_LATENCY, SOLVE_TIME};

/// `GET /metrics`. Event and notice counts come from the database, so a restart does not reset
/// them; the histograms are this process's own. Notice counts are the totals the status
/// publisher keeps fault by fault ([`crate::status::NoticeTotals`]): a scrape never counts the
/// outbox, which holds millions of rows during a storm.
pub async fn metrics(
    State(state): State<ApiState>,
    Viewer(_): Viewer,
) -> Result<impl IntoResponse, ApiError> {
    let mut out = String::new();
    describe(
        &mut out,
        "faultline_events_total",
        "counter",
        "Fault events received, by what became of them.",
    );
    for (status, n) in state.store.event_counts().await? {
        sample(
            &mut out,
            "faultline_events_total",
            &[("status", &status)],
            n as f64,
        );
    }
    describe(
        &mut out,
        "faultline_dead_letters_due",
        "gauge",
        "Rejected events whose dead letter the broker has not acknowledged yet.",
    );
    let due = state.store.dead_letters_due().await?;
    sample(&mut out, "faultline_dead_letters_due", &[], due as f64);
    let (out_now, open) = {
        let book = state.book.read();
        (
            book.customers_out(),
            book.faults().filter(|f| f.state.is_open()).count(),
        )
    };
    describe(
        &mut out,
        "faultline_customers_out",
        "gauge",
        "Customers out of power now.",
    );
    sample(&mut out, "faultline_customers_out", &[], out_now as f64);
    describe(
        &mut out,
        "faultline_faults_open",
        "gauge",
        "Faults active or planned.",
    );
    sample(&mut out, "faultline_faults_open", &[], open as f64);
    describe(
        &mut out,
        "faultline_notices",
        "gauge",
        "Notices in the outbox, by channel and state.",
    );
    let mut queued = 0;
    for (channel, st, n) in state.notice_totals.by_channel_and_state() {
        if st == "queued" {
            queued += n;
        }
        let channel = channel.unwrap_or_else(|| "none".into());
        sample(
            &mut out,
            "faultline_notices",
            &[("channel", &channel), ("state", &st)],
            n as f64,
        );
    }
    describe(
        &mut out,
        "faultline_queue_depth",
        "gauge",
        "Notices waiting to be sent.",
    );
    sample(&mut out, "faultline_queue_depth", &[], queued as f64);
    SEND_LATENCY.render(
        "faultline_send_latency_seconds",
        "Time from a notice's request to the provider's answer.",
        &mut out,
    );
    SOLVE_TIME.render(
        "faultline_assignment_solve_seconds",
        "Time to solve the crew assignment.",
        &mut out,
    );
    OUTBOX_WRITE.render(
        "faultline_outbox_write_seconds",
        "Time an ingest batch takes to write its notice rows.",
        &mut out,
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// `GET /readyz`: 200 when the database answers and the broker subscription stands.
pub async fn readyz(State(state): State<ApiState>) -> impl IntoResponse {
    let database = state.store.ping().await.is_ok();
    let broker = *state.subscribed.borrow();
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    (
        status,
        Json(json!({ "database": word(database), "broker": word(broker) })),
    )
}
