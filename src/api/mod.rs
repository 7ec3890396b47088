//! The HTTP side of the daemon (axum): provider webhooks now, the operators' API next. Every
//! route but health and public status is authenticated; webhooks by the provider's signature.

mod twilio;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Secret;
use crate::domain::FaultId;
use crate::notify::templates::Templates;
use crate::shared::SharedBook;
use crate::store::Store;

/// Largest request body accepted: provider callbacks are a few hundred bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

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
    /// Wakes the delivery worker when a receipt asks for a fallback.
    pub wake: Arc<Notify>,
    /// Faults whose status document should be republished (a customer reported OUT).
    pub dirty: mpsc::UnboundedSender<FaultId>,
}

/// Every route.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/webhooks/sms/status", post(twilio::status))
        .route("/webhooks/sms/inbound", post(twilio::inbound))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Binds `addr` (port 0 picks a free one) without blocking, for a synchronous start-up.
pub fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// Serves until `stop`; requests in progress finish first.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, stop: CancellationToken) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?addr, "HTTP API listening");
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP API stopped with an error");
    }
}
