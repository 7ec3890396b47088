//! The database goes away mid-storm: nothing may be acknowledged until it is back, and then
//! every event is applied exactly once (the engine retries, rebuilding its state from the
//! database). PostgreSQL only: it is the backend that can be taken away from a running daemon.

mod common;

use std::time::Duration;

use common::*;

async fn admin(sql: &str) {
    let pool = sqlx::PgPool::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

async fn applied(store: &faultline::store::Store) -> i64 {
    let counts = store.event_counts().await.unwrap();
    counts
        .iter()
        .find(|(s, _)| s == "applied")
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_delays_events_but_loses_none() {
    faultline::telemetry::init("warn", "text"); // the retries are worth seeing when this fails
    let app = spawn_app(Backend::Postgres).await;
    let db = app.prefix.clone();
    let event = |i: usize| {
        format!(r#"{{"v":1,"event_id":"d-{i}","fault_id":"D-{i}","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["LV3.21{}"]}}"#, i % 8 + 1)
            .into_bytes()
    };
    let first: Vec<Vec<u8>> = (0..20).map(event).collect();
    app.publish(&first.iter().map(Vec::as_slice).collect::<Vec<_>>())
        .await;
    app.wait_events(20).await;

    // Take the database away from the daemon.
    admin(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false")).await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ))
    .await;
    let second: Vec<Vec<u8>> = (20..60).map(event).collect();
    app.publish(&second.iter().map(Vec::as_slice).collect::<Vec<_>>())
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back again: the retried batches commit, the book is rebuilt, nothing is doubled.
    admin(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true")).await;
    let store = app.store.clone();
    eventually("all 60 events applied after the outage", || {
        let store = store.clone();
        async move { applied(&store).await >= 60 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applied(&app.store).await, 60);
    let customers = sample_customers();
    let expected: Vec<String> = (1..=8)
        .flat_map(|f| on_device(&customers, &format!("LV3.21{f}")))
        .collect();
    assert_eq!(
        app.store.customers_out().await.unwrap(),
        sorted(expected.into_iter())
    );
    let book = app.running.as_ref().unwrap().book.clone();
    assert_eq!(
        book.read().faults().count(),
        60,
        "the rebuilt book holds every fault once"
    );
    app.shutdown().await;
}
