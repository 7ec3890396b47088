//! Test harness: every test gets its own database (SQLite file or PostgreSQL database), its own
//! MQTT topic prefix and client id, on the real Mosquitto and PostgreSQL of the machine.
#![allow(dead_code)]

pub mod api;
pub mod fcm;
pub mod smtp;
pub mod tls;

use std::time::Duration;

use faultline::app::{App, Running};
use faultline::clock::Clock;
use faultline::config::{Secret, Settings};
use faultline::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn mqtt_url() -> String {
    std::env::var("FAULTLINE_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

pub fn pg_admin_url() -> String {
    std::env::var("FAULTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A unique, identifier-safe name for this test's topics, client id and database.
pub fn unique_prefix() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// A fresh database of the backend; the TempDir keeps a SQLite file alive.
pub async fn fresh_database(backend: Backend, name: &str) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("faultline.db").display()),
        Backend::Postgres => {
            let admin = sqlx::PgPool::connect(&pg_admin_url())
                .await
                .expect("PostgreSQL reachable (scripts/test.sh starts it)");
            // A name we generated ourselves; identifiers cannot be bound as parameters.
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let mut url = url::Url::parse(&pg_admin_url()).unwrap();
            url.set_path(name);
            url.to_string()
        }
    };
    (url, dir)
}

/// Settings for a test: its own prefix on every topic, its own client id and database.
pub fn test_settings(prefix: &str, database_url: &str) -> Settings {
    let mut s = Settings::defaults();
    s.database.url = Secret::new(database_url);
    s.database.max_connections = 4;
    s.mqtt.url = mqtt_url();
    s.mqtt.client_id = prefix.to_owned();
    s.mqtt.topic = format!("{prefix}/faultline/v1/events/#");
    s.mqtt.deadletter_topic = format!("{prefix}/faultline/v1/deadletter");
    s.mqtt.status_topic = format!("{prefix}/faultline/v1/status");
    s.mqtt.reconnect_min_ms = 100;
    s.mqtt.reconnect_max_ms = 1000;
    s.status.min_interval_ms = 100;
    s.mapping.reload_secs = 1;
    s.api.bind = "127.0.0.1:0".into();
    // Tests replay events dated days before the clock that reads them, which makes every one a
    // late event: without this, each outage notice would wait the late-event minute. The wait
    // itself is tested with its default in tests/late_events.rs.
    s.notify.late_event_wait_secs = 0;
    s
}

/// A sample customer as the test reads it, straight from the CSV, without the code under test.
#[derive(Debug, Clone)]
pub struct SampleCustomer {
    pub id: String,
    pub lon: f64,
    pub lat: f64,
    pub feeder: String,
    pub service_point: String,
    pub phone: String,
    pub email: String,
    pub push_token: String,
    pub language: String,
    pub channels: Vec<String>,
    pub critical: bool,
}

pub fn sample_customers() -> Vec<SampleCustomer> {
    include_str!("../../samples/customers.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            SampleCustomer {
                id: f[0].into(),
                lon: f[2].parse().unwrap(),
                lat: f[3].parse().unwrap(),
                feeder: f[12].into(),
                service_point: f[13].into(),
                phone: f[4].into(),
                email: f[5].into(),
                push_token: f[6].into(),
                language: f[7].into(),
                channels: f[8]
                    .split('|')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                critical: !f[11].is_empty(),
            }
        })
        .collect()
}

/// Ids of sample customers in the half-open box [x0, x1) × [y0, y1), the documented rule for
/// points on an axis-aligned rectangle's edges.
pub fn in_box(customers: &[SampleCustomer], x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<String> {
    sorted(
        customers
            .iter()
            .filter(|c| c.lon >= x0 && c.lon < x1 && c.lat >= y0 && c.lat < y1)
            .map(|c| c.id.clone()),
    )
}

pub fn on_device(customers: &[SampleCustomer], device: &str) -> Vec<String> {
    sorted(
        customers
            .iter()
            .filter(|c| c.feeder == device || c.service_point == device)
            .map(|c| c.id.clone()),
    )
}

/// Great-circle distance on a sphere of the mean Earth radius.
pub fn haversine_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().asin()
}

pub fn sorted(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = ids.collect();
    v.sort();
    v.dedup();
    v
}

pub fn union(sets: &[&[String]]) -> Vec<String> {
    sorted(sets.iter().flat_map(|s| s.iter().cloned()))
}

/// A daemon under test.
pub struct TestApp {
    pub running: Option<Running>,
    pub store: Store,
    pub settings: Settings,
    pub prefix: String,
    pub backend: Backend,
    _dir: tempfile::TempDir,
}

/// Builds a daemon on a fresh database with the sample customers imported, and waits until it
/// is subscribed.
pub async fn spawn_app(backend: Backend) -> TestApp {
    let prefix = unique_prefix();
    let (url, dir) = fresh_database(backend, &prefix).await;
    let settings = test_settings(&prefix, &url);
    import_samples(&url).await;
    let app = App::build(settings.clone(), Clock::System)
        .await
        .expect("app builds");
    let store = app.store().clone();
    let mut running = app.start().expect("app starts");
    assert!(
        running.wait_subscribed(Duration::from_secs(10)).await,
        "subscribed to the broker"
    );
    TestApp {
        running: Some(running),
        store,
        settings,
        prefix,
        backend,
        _dir: dir,
    }
}

pub async fn import_samples(database_url: &str) {
    let store = Store::connect(database_url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let customers =
        faultline::directory::parse_customers(include_str!("../../samples/customers.csv")).unwrap();
    store
        .upsert_customers(&customers.rows, chrono::Utc::now())
        .await
        .unwrap();
    store.close().await;
}

impl TestApp {
    pub fn events_topic(&self, fault: &str) -> String {
        format!("{}/faultline/v1/events/test/{fault}", self.prefix)
    }

    /// Publishes payloads in order (QoS 1, each acknowledged by the broker).
    pub async fn publish(&self, payloads: &[&[u8]]) {
        let messages = payloads
            .iter()
            .map(|p| (self.events_topic("x"), p.to_vec()))
            .collect();
        faultline::ingest::publish::publish_all(&self.settings.mqtt, messages)
            .await
            .unwrap();
    }

    /// Imports the sample staff into the daemon's database; returns them as parsed.
    pub async fn import_staff(&self) -> Vec<faultline::directory::StaffRecord> {
        let staff = faultline::directory::parse_staff(include_str!("../../samples/staff.csv"))
            .unwrap()
            .rows;
        self.store
            .upsert_staff(&staff, chrono::Utc::now())
            .await
            .unwrap();
        staff
    }

    /// Waits until at least `n` events are in the event log.
    pub async fn wait_events(&self, n: i64) {
        wait_events(&self.store, n).await
    }

    pub async fn count(&self, status: &str) -> i64 {
        self.store
            .event_counts()
            .await
            .unwrap()
            .into_iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| n)
    }

    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Stops the daemon and starts it again on the same database and broker topics, with
    /// `change` applied to its settings and the given clock.
    pub async fn restart_with(
        &mut self,
        clock: faultline::clock::Clock,
        change: impl FnOnce(&mut Settings),
    ) {
        self.stop().await;
        change(&mut self.settings);
        let built = faultline::app::App::build(self.settings.clone(), clock)
            .await
            .unwrap();
        self.store = built.store().clone(); // the first app closed its pool
        let mut running = built.start().unwrap();
        assert!(running.wait_subscribed(Duration::from_secs(10)).await);
        self.running = Some(running);
    }

    /// Stops the daemon but keeps its database (a SQLite file lives as long as `self`).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub async fn wait_events(store: &Store, n: i64) {
    for _ in 0..300 {
        let seen: i64 = store
            .event_counts()
            .await
            .unwrap()
            .iter()
            .map(|(_, c)| c)
            .sum();
        if seen >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} events processed within 30 s");
}

/// Waits until `check` holds, polling; panics with `what` after 20 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A notice as a channel gets it: number `id`, an English outage notice to `address`.
pub fn notice(
    id: i64,
    channel: faultline::domain::Channel,
    address: &str,
) -> faultline::channels::Outbound {
    faultline::channels::Outbound {
        notice_id: id,
        customer_id: format!("C{id}"),
        fault_id: "F-1".into(),
        kind: "outage".into(),
        channel,
        address: address.into(),
        language: "en".into(),
        title: "Power outage at your address".into(),
        body: format!("Notice number {id}."),
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that `faultline publish` of `samples/events/detected-radius.json` succeeded and
/// that the event arrived on `received`; returns the topic it arrived on.
pub async fn sample_event_arrives(
    publish: &std::process::Output,
    received: &mut mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
) -> String {
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let (topic, payload, _) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        payload,
        std::fs::read("samples/events/detected-radius.json").unwrap()
    );
    topic
}

/// Subscribes to `topic` on the test broker; returns once the subscription is acknowledged.
pub async fn subscribe(topic: &str) -> mpsc::UnboundedReceiver<(String, Vec<u8>, bool)> {
    subscribe_at(&mqtt_url(), topic).await
}

/// Subscribes to `topic` on the broker at `url`; returns once the subscription is acknowledged.
pub async fn subscribe_at(
    url: &str,
    topic: &str,
) -> mpsc::UnboundedReceiver<(String, Vec<u8>, bool)> {
    let url = url::Url::parse(url).unwrap();
    let mut opts = MqttOptions::new(
        unique_prefix(),
        url.host_str().unwrap(),
        url.port().unwrap_or(1883),
    );
    opts.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 10);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client; // keep the request channel open
        let mut ready = Some(ready_tx);
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let sent = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
                    if sent.is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .unwrap()
        .unwrap();
    rx
}

/// Runs each named async test function once per backend, in modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A TCP proxy in front of a real server (the broker, a provider's mock) that counts the
/// connections it is asked for and whose connections the test can cut, to exercise
/// reconnects without touching the shared Mosquitto.
pub struct Proxy {
    /// `mqtt://` and the proxy's address (from [`Proxy::start`]).
    pub url: String,
    /// The proxy's `host:port`.
    pub addr: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of the test broker.
    pub async fn start() -> Proxy {
        let upstream = url::Url::parse(&mqtt_url()).unwrap();
        let upstream = format!(
            "{}:{}",
            upstream.host_str().unwrap(),
            upstream.port().unwrap_or(1883)
        );
        Self::to(upstream).await
    }

    /// A proxy in front of `upstream` (`host:port`).
    pub async fn to(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let url = format!("mqtt://{addr}");
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (registry, count) = (conns.clone(), accepted.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(task);
            }
        });
        Proxy {
            url,
            addr,
            accepted,
            conns,
            accept,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Drops every proxied connection, as a network failure would.
    pub fn cut(&self) {
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Waits until the fault has exactly `want` notices of `kind` in `state`.
pub async fn wait_for_notices(store: &Store, fault: &str, kind: &str, state: &str, want: i64) {
    let what = format!("{want} {kind} notices {state} for {fault}");
    eventually(&what, || {
        let store = store.clone();
        async move { store.count_notices(Some(fault), kind, state).await.unwrap() == want }
    })
    .await;
}

/// Waits until a fault has notices of `kind` and none is waiting, claimed or on its way (a
/// sent notice is recorded just after its request or log line). Returns how many were sent.
pub async fn wait_settled(store: &Store, fault: &str, kind: &str) -> i64 {
    async fn total(store: &Store, fault: &str, kind: &str, states: &[&str]) -> i64 {
        let mut n = 0;
        for state in states {
            n += store.count_notices(Some(fault), kind, state).await.unwrap();
        }
        n
    }
    eventually(
        &format!("every {kind} notice of {fault} is settled"),
        || async {
            total(store, fault, kind, &["queued", "claimed", "sending"]).await == 0
                && total(
                    store,
                    fault,
                    kind,
                    &["sent", "failed", "suppressed", "unreachable"],
                )
                .await
                    > 0
        },
    )
    .await;
    total(store, fault, kind, &["sent"]).await
}

/// A fresh, migrated database holding only the customers of `csv`: (prefix, url, dir, store).
pub async fn database_with(
    backend: Backend,
    csv: &str,
) -> (String, String, tempfile::TempDir, Store) {
    let prefix = unique_prefix();
    let (url, dir) = fresh_database(backend, &prefix).await;
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let rows = faultline::directory::parse_customers(csv).unwrap().rows;
    assert!(!rows.is_empty());
    store
        .upsert_customers(&rows, chrono::Utc::now())
        .await
        .unwrap();
    (prefix, url, dir, store)
}

/// The JSON lines the log channel wrote so far.
pub fn read_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The real binary's `run`, configured by environment like an operator would, for this test's
/// database, broker topics and client id (port 0 for the API, quiet logs). Callers add their
/// own settings and spawn it.
pub fn daemon_command(settings: &Settings) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.arg("run")
        .env("FAULTLINE__DATABASE__URL", settings.database.url.expose())
        .env("FAULTLINE__MQTT__URL", &settings.mqtt.url)
        .env("FAULTLINE__MQTT__CLIENT_ID", &settings.mqtt.client_id)
        .env("FAULTLINE__MQTT__TOPIC", &settings.mqtt.topic)
        .env(
            "FAULTLINE__MQTT__DEADLETTER_TOPIC",
            &settings.mqtt.deadletter_topic,
        )
        .env("FAULTLINE__MQTT__STATUS_TOPIC", &settings.mqtt.status_topic)
        // Events days old are late events: see `test_settings`.
        .env(
            "FAULTLINE__NOTIFY__LATE_EVENT_WAIT_SECS",
            settings.notify.late_event_wait_secs.to_string(),
        )
        .env("FAULTLINE__LOG__FILTER", "warn")
        .env("FAULTLINE__API__BIND", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    cmd
}

/// A claim of up to `limit` due notices from the front of the queue.
pub fn claim(limit: usize) -> faultline::store::ClaimRequest {
    faultline::store::ClaimRequest {
        limit,
        ..Default::default()
    }
}

/// A daemon on a fresh database holding the customers of `csv`, on a manual clock set to
/// `now`, sending every notice through the log channel at `log` (polled every 50 ms). `change`
/// adjusts the settings before it starts.
pub struct LogDaemon {
    pub settings: Settings,
    pub running: Running,
    pub store: Store,
    pub clock: Clock,
    pub log: std::path::PathBuf,
    pub _dir: tempfile::TempDir,
}

pub async fn log_daemon(
    backend: Backend,
    csv: &str,
    now: chrono::DateTime<chrono::Utc>,
    change: impl FnOnce(&mut Settings),
) -> LogDaemon {
    let (prefix, url, dir, store) = database_with(backend, csv).await;
    let mut settings = test_settings(&prefix, &url);
    let log = dir.path().join("notices.jsonl");
    settings.channels.log.path = log.display().to_string();
    settings.notify.poll_ms = 50;
    change(&mut settings);
    let clock = Clock::manual(now);
    let mut running = App::build(settings.clone(), clock.clone())
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    LogDaemon {
        settings,
        running,
        store,
        clock,
        log,
        _dir: dir,
    }
}

impl LogDaemon {
    pub async fn publish(&self, fault: &str, events: &[String]) {
        publish_events(&self.settings, fault, events).await;
    }
}

/// Publishes `events` of `fault` on the events topic of the daemon of `settings` (QoS 1, each
/// acknowledged by the broker).
pub async fn publish_events(settings: &Settings, fault: &str, events: &[String]) {
    let topic = format!(
        "{}/faultline/v1/events/test/{fault}",
        settings.mqtt.client_id
    );
    let messages = events
        .iter()
        .map(|e| (topic.clone(), e.clone().into_bytes()))
        .collect();
    faultline::ingest::publish::publish_all(&settings.mqtt, messages)
        .await
        .unwrap();
}

/// A daemon on a fresh database with the sample customers that reaches the broker through a
/// [`Proxy`], which counts its connections and can cut them. Publishers and subscribers of the
/// test talk to the broker directly.
pub struct ProxiedDaemon {
    pub settings: Settings,
    pub running: Running,
    pub store: Store,
    pub proxy: Proxy,
    pub _dir: tempfile::TempDir,
}

pub async fn proxied_daemon(backend: Backend) -> ProxiedDaemon {
    let prefix = unique_prefix();
    let (url, dir) = fresh_database(backend, &prefix).await;
    import_samples(&url).await;
    let proxy = Proxy::start().await;
    let mut settings = test_settings(&prefix, &url);
    settings.mqtt.url = proxy.url.clone();
    let app = App::build(settings.clone(), Clock::System).await.unwrap();
    let store = app.store().clone();
    let mut running = app.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    ProxiedDaemon {
        settings,
        running,
        store,
        proxy,
        _dir: dir,
    }
}
