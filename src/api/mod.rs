//! The HTTP side of the daemon (axum): the operators' and coordinators' API under `/api/v1`
//! (API keys with roles, [`auth`]), the web console at `/`, customers' self-service at
//! `/status`, health and metrics, and the providers' webhooks (verified by signature).

pub mod auth;
mod console;
mod customers;
mod error;
mod events;
mod faults;
mod limit;
mod metrics;
mod notices;
pub mod selfservice;
mod staffing;
mod stream;
mod twilio;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post, put};
use axum::Router;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use limit::PerClient;

use crate::clock::Clock;
use crate::config::Secret;
use crate::domain::FaultId;
use crate::ingest::mqtt::Inbound;
use crate::notify::templates::Templates;
use crate::shared::SharedBook;
use crate::staffing::callcenter::CallCenterSettings;
use crate::status::{LatestDocs, LiveEvent, NoticeTotals};
use crate::store::Store;

/// Largest webhook body: provider callbacks are a few hundred bytes.
const MAX_WEBHOOK_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub book: SharedBook,
    pub templates: Arc<Templates>,
    pub clock: Clock,
    /// Twilio's auth token, which keys its webhook signatures; webhooks are refused without it.
    pub sms_auth_token: Secret,
    /// `api.public_url`: what providers call us at, for signature checks.
    pub public_url: String,
    /// Wakes the delivery worker (a receipt asks for a fallback, a notice is resent).
    pub wake: Arc<Notify>,
    /// Faults whose status document should be republished (a customer reported OUT).
    pub dirty: mpsc::UnboundedSender<FaultId>,
    /// The ingest engine's queue: events posted over HTTP take the MQTT events' path.
    pub events: mpsc::UnboundedSender<Inbound>,
    /// The topic filter events arrive on, whose base names HTTP events' topics.
    pub events_filter: String,
    /// The newest status document of every fault.
    pub latest: LatestDocs,
    /// The outbox's counts for `/metrics`, kept by the status publisher.
    pub notice_totals: NoticeTotals,
    /// The console's live stream.
    pub live: broadcast::Sender<LiveEvent>,
    /// Asks the staffing loop to re-plan now.
    pub replan: Arc<Notify>,
    /// `true` while the broker subscription stands (readiness).
    pub subscribed: watch::Receiver<bool>,
    pub call_center: CallCenterSettings,
    /// Self-service: the key of customers' status tokens, and the per-address rate limit.
    pub tokens: selfservice::TokenKey,
    pub public_limit: Arc<limit::PerClient>,
    /// `api.tile_url`, for the console.
    pub tile_url: String,
    pub max_body_bytes: usize,
    /// `api.public_max_body_bytes`: the self-service routes' body limit.
    pub public_max_body_bytes: usize,
    /// Cancelled when the server stops: live streams end so the graceful stop can finish.
    pub stopping: CancellationToken,
}

impl ApiState {
    /// Tells live consoles that the staffing plan changed and asks for a re-plan.
    fn staffing_changed(&self) {
        self.replan.notify_one();
        let _ = self.live.send(LiveEvent {
            kind: "staffing",
            data: "{}".into(),
        });
    }
}

/// Every route.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/faults", get(faults::list))
        .route("/faults/{id}", get(faults::one))
        .route("/faults/{id}/customers", get(faults::customers))
        .route("/faults/{id}/notices/cancel", post(notices::cancel))
        .route("/map/faults", get(faults::map))
        .route("/map/density", get(faults::density))
        .route("/events", post(events::post))
        .route("/events/rejected", get(events::rejected))
        .route("/notices", get(notices::search))
        .route("/notices/{id}/resend", post(notices::resend))
        .route("/staff", get(staffing::staff))
        .route("/staff/{id}", patch(staffing::update))
        .route("/staff/{id}/release", post(staffing::release))
        .route("/staff/{id}/accept", post(staffing::accept))
        .route("/staff/{id}/decline", post(staffing::decline))
        .route("/staff/{id}/rested", post(staffing::rested))
        .route("/assignments", get(staffing::assignments))
        .route("/assignments/pin", post(staffing::pin))
        .route("/assignments/move", post(staffing::move_person))
        .route("/callcenter", get(staffing::callcenter))
        .route("/customers/import", post(customers::import))
        .route("/customers/{id}", get(customers::one))
        .route("/customers/{id}", axum::routing::delete(customers::erase))
        .route("/customers/{id}/preferences", put(customers::preferences))
        .route("/audit", get(customers::audit))
        .route("/stream", get(stream::stream))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        // The contract itself is public: clients read it before they have a key.
        .route("/openapi.json", get(console::openapi));
    let metrics = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    let webhooks = Router::new()
        .route("/webhooks/sms/status", post(twilio::status))
        .route("/webhooks/sms/inbound", post(twilio::inbound))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES));
    // Anyone may call these: the client's rate is checked before anything else is done for
    // the request, and a body is read only up to a few KB (a preference change is ~100 bytes).
    let public = Router::new()
        .route("/status", get(selfservice::status))
        .route("/status/preferences", put(selfservice::preferences))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            selfservice::rate_limit,
        ))
        .layer(DefaultBodyLimit::max(state.public_max_body_bytes));
    Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .merge(webhooks)
        .merge(public)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(metrics::readyz))
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Binds `addr` (port 0 picks a free one) without blocking, for a synchronous start-up.
pub fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Serves until `stop`; requests in progress finish first. Live streams end at `stop` too.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, stop: CancellationToken) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP API listening");
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP API stopped with an error");
    }
}
