//! Wiring: build everything from configuration ([`App::build`]), start the tasks
//! ([`App::start`]), and stop them in an order that loses nothing ([`Running::shutdown`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::channels::{SetupError, Transports};
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::FaultId;
use crate::ingest::deadletter::DeadLetters;
use crate::ingest::engine::{Engine, EngineConfig, EngineOutputs};
use crate::ingest::event::Limits;
use crate::ingest::mqtt::{self, Link, MqttError};
use crate::notify::intents::Delays;
use crate::notify::jobs::Jobs;
use crate::notify::pause::ClaimPause;
use crate::notify::templates::Templates;
use crate::notify::worker::DeliveryWorker;
use crate::outage::{OutageChange, OutageRules};
use crate::shared::{load_book, SharedBook};
use crate::status::{LatestDocs, LiveEvent, NoticeTotals, StatusPublisher};
use crate::store::{Store, StoreError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Channels(#[from] SetupError),
    #[error("cannot start the delivery worker's thread: {0}")]
    Delivery(#[source] std::io::Error),
    #[error("cannot listen on api.bind {addr}: {source}")]
    Api {
        addr: String,
        source: std::io::Error,
    },
}

/// A daemon built from configuration, not yet running.
pub struct App {
    settings: Settings,
    store: Store,
    book: SharedBook,
    clock: Clock,
    changes: broadcast::Sender<Arc<OutageChange>>,
    customers_seen_ms: i64,
    /// Wakes the delivery worker early (receipts asking for a fallback, quiet hours ending).
    wake: Arc<Notify>,
    /// Pauses the delivery worker's claims while this daemon writes a large set of notices.
    claims: ClaimPause,
    /// Self-service tokens' key, shared by every daemon through the database.
    tokens: api::selfservice::TokenKey,
    latest: LatestDocs,
    live: broadcast::Sender<LiveEvent>,
    /// The outbox's counts for `/metrics`, read whole here once and then kept up to date.
    notice_totals: NoticeTotals,
}

impl App {
    /// Opens and migrates the database and rebuilds the outage state from it.
    pub async fn build(mut settings: Settings, clock: Clock) -> Result<Self, AppError> {
        if settings.mqtt.embedded {
            settings.mqtt.url = crate::broker::start_embedded(&settings.mqtt.url)?;
            tracing::info!(url = %settings.mqtt.url, "embedded MQTT broker listening");
        }
        let store = Store::connect(
            settings.database.url.expose(),
            settings.database.max_connections,
        )
        .await?;
        store.migrate().await?;
        let (book, customers_seen_ms) = load_book(&store, outage_rules(&settings)).await?;
        {
            let b = book.index().len();
            tracing::info!(
                backend = store.backend(),
                customers = b,
                "outage state rebuilt from the database"
            );
        }
        let (changes, _) = broadcast::channel(4096);
        let tokens = api::selfservice::TokenKey::load(&store).await?;
        let notice_totals = NoticeTotals::load(&store).await?;
        // A console that falls this far behind reloads (`resync`) instead of replaying.
        let (live, _) = broadcast::channel(1024);
        Ok(Self {
            tokens,
            notice_totals,
            latest: LatestDocs::default(),
            live,
            settings,
            store,
            book: SharedBook::new(book),
            clock,
            changes,
            customers_seen_ms,
            wake: Arc::new(Notify::new()),
            claims: ClaimPause::default(),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn book(&self) -> SharedBook {
        self.book.clone()
    }

    /// The pause a large notice write holds over claims (benchmarks write next to the daemon
    /// the way its own writers do).
    pub fn claim_pause(&self) -> ClaimPause {
        self.claims.clone()
    }

    /// Every committed outage change; subscribe before [`App::start`] to see them all.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<OutageChange>> {
        self.changes.subscribe()
    }

    /// Connects to the broker and starts ingest and status publishing.
    pub fn start(self) -> Result<Running, AppError> {
        let s = &self.settings;
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let http_events = inbound_tx.clone();
        let replan = Arc::new(Notify::new());
        let (dirty_tx, dirty_rx) = mpsc::unbounded_channel();
        let dirty = dirty_tx.clone();
        let staffing_dirty = dirty_tx.clone();
        // Delivery progress only changes notice counts, which may lag a few seconds.
        let (counts_tx, counts_rx) = mpsc::unbounded_channel();
        let stop_link = CancellationToken::new();
        let link =
            mqtt::spawn_subscriber(&s.mqtt, s.mqtt.topic.clone(), inbound_tx, stop_link.clone())?;
        let dead_letters = Arc::new(Notify::new());
        let stop_dead_letters = CancellationToken::new();
        let dead_letters_task = DeadLetters {
            store: self.store.clone(),
            topic: s.mqtt.deadletter_topic.clone(),
            wake: dead_letters.clone(),
        }
        .spawn(&s.mqtt, stop_dead_letters.clone())?;
        let engine = Engine::new(
            self.store.clone(),
            self.book.clone(),
            Some(link.client.clone()),
            EngineConfig {
                limits: Limits {
                    max_payload_bytes: s.ingest.max_payload_bytes,
                    max_vertices: s.ingest.max_vertices,
                },
                batch_size: s.ingest.batch_size,
                reload_every: Duration::from_secs(s.mapping.reload_secs),
                delays: notice_delays(s),
            },
            EngineOutputs {
                dirty: dirty_tx,
                changes: self.changes.clone(),
                claims: self.claims.clone(),
                dead_letters: dead_letters.clone(),
            },
            self.clock.clone(),
            self.customers_seen_ms,
        );
        // Subscribed before the engine runs, so no change slips between the first plan and
        // the first re-plan.
        let staffing_changes = self.changes.subscribe();
        let stop_engine = CancellationToken::new();
        let engine_task = tokio::spawn(engine.run(inbound_rx, stop_engine.clone()));
        let stop_staffing = CancellationToken::new();
        let staffing_task = tokio::spawn(crate::staffing::service::run(
            self.store.clone(),
            self.book.clone(),
            s.staffing.clone(),
            staffing_changes,
            crate::staffing::service::Signals {
                dirty: Some(staffing_dirty),
                replan: replan.clone(),
            },
            self.clock.clone(),
            stop_staffing.clone(),
        ));
        let publisher = StatusPublisher {
            latest: self.latest.clone(),
            live: self.live.clone(),
            book: self.book.clone(),
            store: self.store.clone(),
            client: link.client.clone(),
            topic: s.mqtt.status_topic.clone(),
            min_interval: Duration::from_millis(s.status.min_interval_ms.max(1)),
            clock: self.clock.clone(),
            totals: self.notice_totals.clone(),
        };
        let stop_status = CancellationToken::new();
        let status_task = tokio::spawn(publisher.run(dirty_rx, counts_rx, stop_status.clone()));
        let stop_delivery = CancellationToken::new();
        let delivery_task = match self.delivery_worker()? {
            Some(mut w) => {
                w.dirty = Some(counts_tx);
                Some(spawn_on_own_thread(w, stop_delivery.clone())?)
            }
            None => None,
        };
        let (api_addr, stop_api, api_task) = self.start_api(ApiLinks {
            dirty,
            events: http_events,
            replan,
            subscribed: link.subscribed.clone(),
        })?;
        let jobs = Arc::new(Jobs::new(
            s,
            self.store.clone(),
            self.book.clone(),
            self.clock.clone(),
            self.wake.clone(),
            self.claims.clone(),
        ));
        let stop_jobs = CancellationToken::new();
        let jobs_task = tokio::spawn(run_jobs(jobs.clone(), s.clone(), stop_jobs.clone()));
        Ok(Running {
            jobs,
            stop_jobs,
            jobs_task,
            api_addr,
            stop_api,
            api_task,
            store: self.store,
            book: self.book,
            subscribed: link.subscribed.clone(),
            link,
            stop_link,
            stop_engine,
            engine_task,
            stop_dead_letters,
            dead_letters_task,
            stop_status,
            status_task,
            stop_delivery,
            delivery_task,
            stop_staffing,
            staffing_task,
        })
    }

    /// Binds `api.bind` and serves the HTTP API.
    fn start_api(
        &self,
        links: ApiLinks,
    ) -> Result<(SocketAddr, CancellationToken, JoinHandle<()>), AppError> {
        let bind = &self.settings.api.bind;
        let listener = api::bind(bind).map_err(|source| AppError::Api {
            addr: bind.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| AppError::Api {
            addr: bind.clone(),
            source,
        })?;
        let stop = CancellationToken::new();
        let state = ApiState {
            store: self.store.clone(),
            book: self.book.clone(),
            templates: Arc::new(Templates::bundled()),
            clock: self.clock.clone(),
            sms_auth_token: self.settings.channels.sms.auth_token.clone(),
            public_url: self.settings.api.public_url.clone(),
            wake: self.wake.clone(),
            dirty: links.dirty,
            events: links.events,
            events_filter: self.settings.mqtt.topic.clone(),
            latest: self.latest.clone(),
            notice_totals: self.notice_totals.clone(),
            live: self.live.clone(),
            replan: links.replan,
            subscribed: links.subscribed,
            call_center: self.settings.staffing.call_center,
            tokens: self.tokens.clone(),
            public_limit: Arc::new(api::PerClient::new(
                self.settings.api.public_rate_per_sec,
                self.settings.api.public_burst,
            )),
            tile_url: self.settings.api.tile_url.clone(),
            max_body_bytes: self.settings.api.max_body_bytes,
            public_max_body_bytes: self.settings.api.public_max_body_bytes,
            stopping: stop.clone(),
        };
        let task = tokio::spawn(api::serve(listener, api::router(state), stop.clone()));
        Ok((addr, stop, task))
    }

    /// The delivery worker, when a channel is configured. Without one, notices wait in the
    /// outbox rather than being marked unreachable.
    fn delivery_worker(&self) -> Result<Option<DeliveryWorker>, SetupError> {
        let worker = delivery_worker(
            &self.settings,
            &self.store,
            &self.book,
            &self.clock,
            self.wake.clone(),
            self.claims.clone(),
        )?;
        if worker.is_none() {
            tracing::info!("no notification channel configured: notices wait in the outbox");
        }
        Ok(worker)
    }
}

/// A delivery worker for these settings, or `None` when no channel is configured.
pub fn delivery_worker(
    s: &Settings,
    store: &Store,
    book: &SharedBook,
    clock: &Clock,
    wake: Arc<Notify>,
    claims: ClaimPause,
) -> Result<Option<DeliveryWorker>, SetupError> {
    let transports = Transports::from_settings(&s.channels)?;
    if transports.is_empty() {
        return Ok(None);
    }
    Ok(Some(DeliveryWorker {
        store: store.clone(),
        book: book.clone(),
        transports: Arc::new(transports),
        templates: Templates::bundled(),
        critical_override: s.notify.critical_override_opt_out,
        max_attempts: s.notify.max_attempts,
        retry_base: Duration::from_millis(s.notify.retry_base_ms),
        batch_size: s.notify.batch_size,
        concurrency: s.notify.concurrency,
        stale_sending: Duration::from_secs(s.notify.stale_sending_secs),
        poll: Duration::from_millis(s.notify.poll_ms),
        clock: clock.clone(),
        wake,
        claims,
        dirty: None,
        refills_on: None,
    }))
}

/// The channels the HTTP API shares with the other tasks.
struct ApiLinks {
    dirty: mpsc::UnboundedSender<FaultId>,
    events: mpsc::UnboundedSender<crate::ingest::mqtt::Inbound>,
    replan: Arc<Notify>,
    subscribed: watch::Receiver<bool>,
}

/// A started daemon.
pub struct Running {
    pub store: Store,
    pub book: SharedBook,
    /// Where the HTTP API listens (`api.bind` with port 0 resolved).
    pub api_addr: SocketAddr,
    stop_api: CancellationToken,
    api_task: JoinHandle<()>,
    /// The scheduled jobs, callable directly (tests step them on a manual clock).
    pub jobs: Arc<Jobs>,
    stop_jobs: CancellationToken,
    jobs_task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
    link: Link,
    stop_link: CancellationToken,
    stop_engine: CancellationToken,
    engine_task: JoinHandle<()>,
    stop_dead_letters: CancellationToken,
    dead_letters_task: JoinHandle<()>,
    stop_status: CancellationToken,
    status_task: JoinHandle<()>,
    stop_delivery: CancellationToken,
    delivery_task: Option<JoinHandle<()>>,
    stop_staffing: CancellationToken,
    staffing_task: JoinHandle<()>,
}

impl Running {
    /// Waits until the broker has acknowledged our subscription (or `timeout` passes).
    pub async fn wait_subscribed(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.subscribed.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Runs until `signal` completes, then shuts down cleanly.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }

    /// Stops in dependency order: ingest finishes its batch (commit, then acks); status
    /// publishes what is still due; then the link carries those packets and disconnects.
    pub async fn shutdown(self) {
        // No new webhooks first: what they would change must still reach the database.
        self.stop_api.cancel();
        let _ = self.api_task.await;
        self.stop_jobs.cancel();
        let _ = self.jobs_task.await;
        self.stop_engine.cancel();
        let _ = self.engine_task.await;
        // After the engine: the letters of its last batch go out before the connection closes.
        self.stop_dead_letters.cancel();
        let _ = self.dead_letters_task.await;
        self.stop_staffing.cancel();
        let _ = self.staffing_task.await;
        self.stop_status.cancel();
        let _ = self.status_task.await;
        self.stop_delivery.cancel();
        if let Some(task) = self.delivery_task {
            let _ = task.await;
        }
        // Requests are carried in order, so the disconnect goes out after the last acks.
        let _ = self.link.client.disconnect().await;
        if tokio::time::timeout(Duration::from_secs(5), &mut { self.link.task })
            .await
            .is_err()
        {
            self.stop_link.cancel();
        }
        self.store.close().await;
        tracing::info!("stopped");
    }
}

/// Owns the job scheduler until `stop`.
async fn run_jobs(jobs: Arc<Jobs>, settings: Settings, stop: CancellationToken) {
    match crate::notify::jobs::schedule(jobs, &settings).await {
        Ok(mut scheduler) => {
            stop.cancelled().await;
            if let Err(e) = scheduler.shutdown().await {
                tracing::warn!(error = %e, "job scheduler did not stop cleanly");
            }
        }
        // Validation checked the expressions; this is the scheduler failing to start at all.
        Err(e) => tracing::error!(error = %e, "scheduled jobs are not running"),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The delivery worker's thread, as `/proc` shows it (the fan-out bench reads its CPU time).
pub const DELIVERY_THREAD: &str = "delivery";

/// Runs the delivery worker on a thread and single-threaded runtime of its own; the returned
/// task ends when the worker has stopped.
///
/// A fan-out is a great many small tasks that wake each other (a send, its connection's task,
/// the window). On the daemon's shared runtime, every few of those wake-ups also wake the other
/// worker thread to steal the work; on a thread of their own they run back to back. In a
/// 200,000-notice fan-out the same work took a fifth less CPU (docs/performance-history.md). Delivery is
/// then one core's work per daemon: on SQLite there is one claimer anyway, and PostgreSQL
/// scales out by daemons.
fn spawn_on_own_thread(
    mut worker: DeliveryWorker,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, AppError> {
    worker.refills_on = Some(tokio::runtime::Handle::current());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Delivery)?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(DELIVERY_THREAD.into())
        .spawn(move || {
            runtime.block_on(worker.run(stop));
            let _ = done.send(());
        })
        .map_err(AppError::Delivery)?;
    Ok(tokio::spawn(async move {
        // The sender is dropped unsent only if the worker panicked.
        if finished.await.is_err() {
            tracing::error!("the delivery worker's thread ended in a panic");
        }
    }))
}

/// The outage book's rules (`notify.momentary_delay_secs`, `notify.etr_change_minutes`). Built
/// here, at the top, so that `config` imports nothing above it.
fn outage_rules(s: &Settings) -> OutageRules {
    OutageRules {
        momentary_delay: s.momentary_delay(),
        etr_change: Duration::from_secs(s.notify.etr_change_minutes.saturating_mul(60)),
    }
}

/// When outage notices fall due besides the momentary delay
/// (`notify.critical_momentary_delay_secs`, `notify.late_event_wait_secs`).
fn notice_delays(s: &Settings) -> Delays {
    Delays {
        critical: Duration::from_secs(s.notify.critical_momentary_delay_secs),
        late_event: Duration::from_secs(s.notify.late_event_wait_secs),
    }
}
