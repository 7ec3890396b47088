//! `/metrics` reports the outbox from the counts the status publisher keeps fault by fault, not
//! from a count of the whole outbox per scrape: right after fan-outs, after deliveries, and
//! from the first scrape after a restart (which reads them once).

mod common;

use std::collections::BTreeMap;

use common::api::ApiClient;
use common::*;
use faultline::clock::Clock;

const F1003: &[u8] = include_bytes!("../samples/events/detected-devices.json");
const F2002: &[u8] = br#"{"v":1,"event_id":"m-2","fault_id":"F-2002","kind":"detected","seq":1,"occurred_at":"2026-11-23T14:10:00Z","devices":["LV3.202"]}"#;

/// (channel, state) → notices, as a metric family reads.
type Counts = BTreeMap<(String, String), i64>;

/// `faultline_notices` by (channel, state) and `faultline_queue_depth`, from one scrape.
async fn scrape(api: &ApiClient) -> (Counts, i64) {
    let resp = api.raw_get("/metrics", Some("viewer")).await;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let mut counts = Counts::new();
    let mut depth = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("faultline_notices{channel=\"") {
            let (channel, rest) = rest.split_once("\",state=\"").unwrap();
            let (state, n) = rest.split_once("\"} ").unwrap();
            let n = n.parse::<f64>().unwrap() as i64;
            counts.insert((channel.to_owned(), state.to_owned()), n);
        } else if let Some(n) = line.strip_prefix("faultline_queue_depth ") {
            depth = Some(n.parse::<f64>().unwrap() as i64);
        }
    }
    (counts, depth.expect("faultline_queue_depth is reported"))
}

/// The outbox as the test counts it, straight from the database.
async fn outbox(app: &TestApp) -> Counts {
    let sql = "SELECT c, s, CAST(SUM(n) AS BIGINT) FROM (\
               SELECT COALESCE(channel, 'none') AS c, state AS s, COUNT(*) AS n FROM notices GROUP BY 1, 2 \
               UNION ALL SELECT 'none', 'queued', COUNT(*) FROM staged_notices) AS t \
               WHERE n > 0 GROUP BY 1, 2";
    let url = app.settings.database.url.expose();
    let rows: Vec<(String, String, i64)> = match app.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    };
    rows.into_iter().map(|(c, s, n)| ((c, s), n)).collect()
}

fn queued(n: usize) -> Counts {
    Counts::from([(("none".to_owned(), "queued".to_owned()), n as i64)])
}

/// Waits until a scrape reports `want` (the status publisher counts a fault after its commit).
async fn wait_for(api: &ApiClient, want: &Counts) {
    let what = format!("/metrics reports {want:?}");
    eventually(&what, || async move { &scrape(api).await.0 == want }).await;
}

async fn notice_counts_follow_fan_outs_and_survive_a_restart(backend: Backend) {
    // No channel configured: every notice waits in the outbox, queued.
    let mut app = spawn_app(backend).await;
    let api = ApiClient::new(&app).await;
    let customers = sample_customers();
    let (n1, n2) = (
        on_device(&customers, "LV3.201").len(),
        on_device(&customers, "LV3.202").len(),
    );
    assert!(n1 > 0 && n2 > 0);
    app.publish(&[F1003]).await;
    wait_for(&api, &queued(n1)).await;
    app.publish(&[F2002]).await;
    wait_for(&api, &queued(n1 + n2)).await;
    let (counts, depth) = scrape(&api).await;
    assert_eq!(depth, (n1 + n2) as i64);
    assert_eq!(counts, outbox(&app).await, "the database agrees");

    // F-1003's notices change behind the daemon's back; a restart reads the outbox once, and
    // its first scrape already reports it.
    let now = chrono::Utc::now().timestamp_millis();
    let cancelled = app
        .store
        .cancel_queued_notices("F-1003", "test", now)
        .await
        .unwrap();
    assert_eq!(cancelled, n1 as u64);
    app.restart_with(Clock::System, |_| {}).await;
    let api = ApiClient::new(&app).await;
    let (counts, depth) = scrape(&api).await;
    let mut want = queued(n2);
    want.insert(("none".into(), "suppressed".into()), n1 as i64);
    assert_eq!(counts, want);
    assert_eq!(depth, n2 as i64);
    assert_eq!(counts, outbox(&app).await);
    app.shutdown().await;
}

async fn notice_counts_follow_deliveries(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_app(backend).await;
    // The log channel on, and noon in Berlin: outside every sample customer's quiet hours.
    app.restart_with(
        Clock::manual("2026-11-24T11:00:00Z".parse().unwrap()),
        |s| {
            s.channels.log.path = dir.path().join("notices.jsonl").display().to_string();
            s.notify.poll_ms = 50;
        },
    )
    .await;
    let api = ApiClient::new(&app).await;
    let n1 = on_device(&sample_customers(), "LV3.201").len() as i64;
    app.publish(&[F1003]).await;
    let sent = wait_settled(&app.store, "F-1003", "outage").await;
    assert!(sent > 0);
    let truth = outbox(&app).await;
    assert_eq!(truth.values().sum::<i64>(), n1);
    assert!(!truth.keys().any(|(_, state)| state == "queued"));
    wait_for(&api, &truth).await;
    assert_eq!(scrape(&api).await.1, 0, "nothing waits");
    let sent_in_outbox: i64 = truth
        .iter()
        .filter(|((_, state), _)| state == "sent")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(sent_in_outbox, sent, "the notices sent, on their channels");
    app.shutdown().await;
}

both_backends!(
    notice_counts_follow_fan_outs_and_survive_a_restart,
    notice_counts_follow_deliveries,
);
