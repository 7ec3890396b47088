//! The notice outbox as ingest fills it: one outage and one restoration notice per customer
//! episode however many faults overlap, none for a momentary outage, restoration notices for
//! the customers a shrinking fault lets go, episodes kept across a restart; large notice sets
//! that meet existing rows.

mod common;

use std::time::Duration;

use common::*;

fn rect(event: &str, fault: &str, kind: &str, at: &str, [x0, y0, x1, y1]: [f64; 4]) -> Vec<u8> {
    format!(
        r#"{{"v":1,"event_id":"{event}","fault_id":"{fault}","kind":"{kind}","occurred_at":"{at}",
        "area":{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#
    )
    .into_bytes()
}

fn restore(event: &str, fault: &str, at: &str) -> Vec<u8> {
    format!(r#"{{"v":1,"event_id":"{event}","fault_id":"{fault}","kind":"restored","occurred_at":"{at}"}}"#).into_bytes()
}

const A: [f64; 4] = [11.800, 53.400, 11.815, 53.415];
const B: [f64; 4] = [11.810, 53.405, 11.825, 53.420];

async fn overlapping_faults_make_one_outage_and_one_restoration_notice(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let (a, b) = (
        in_box(&customers, A[0], A[1], A[2], A[3]),
        in_box(&customers, B[0], B[1], B[2], B[3]),
    );
    let both = union(&[&a, &b]);
    let only_a: Vec<String> = a.iter().filter(|c| !b.contains(c)).cloned().collect();
    app.publish(&[
        &rect("n1", "A", "detected", "2026-11-23T14:01:00Z", A),
        &rect("n2", "B", "detected", "2026-11-23T14:02:00Z", B),
        &restore("n3", "A", "2026-11-23T16:00:00Z"),
    ])
    .await;
    app.wait_events(3).await;
    let outage = app.store.notices_per_customer("outage").await.unwrap();
    assert_eq!(
        outage.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        both
    );
    assert!(
        outage.iter().all(|(_, n)| *n == 1),
        "one outage notice per customer"
    );
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        only_a,
        "shared customers are still out"
    );

    app.publish(&[&restore("n4", "B", "2026-11-23T16:05:00Z")])
        .await;
    app.wait_events(4).await;
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        both
    );
    assert!(
        restored.iter().all(|(_, n)| *n == 1),
        "one restoration notice per customer"
    );
    assert_eq!(app.store.unpaired_restorations().await.unwrap(), 0);
    assert!(app.store.open_episodes().await.unwrap().is_empty());
    assert_eq!(
        app.store
            .count_notices(None, "outage", "queued")
            .await
            .unwrap(),
        both.len() as i64
    );
    app.shutdown().await;
}

async fn a_momentary_outage_sends_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let out = in_box(&customers, A[0], A[1], A[2], A[3]);
    app.publish(&[
        &rect("m1", "M", "detected", "2026-11-23T14:00:00Z", A),
        &restore("m2", "M", "2026-11-23T14:02:00Z"),
    ])
    .await;
    app.wait_events(2).await;
    assert_eq!(
        app.store
            .count_notices(Some("M"), "outage", "suppressed")
            .await
            .unwrap(),
        out.len() as i64
    );
    assert_eq!(
        app.store
            .count_notices(Some("M"), "outage", "queued")
            .await
            .unwrap(),
        0
    );
    assert!(app
        .store
        .notices_per_customer("restored")
        .await
        .unwrap()
        .is_empty());
    app.shutdown().await;
}

async fn episodes_survive_a_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.publish(&[&rect("e1", "E", "detected", "2026-11-23T14:00:00Z", A)])
        .await;
    app.wait_events(1).await;
    let settings = app.settings.clone();
    app.stop().await;
    let rebuilt = faultline::app::App::build(settings, faultline::clock::Clock::System)
        .await
        .unwrap();
    let store = rebuilt.store().clone();
    let mut running = rebuilt.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let payload = restore("e2", "E", "2026-11-23T17:00:00Z");
    faultline::ingest::publish::publish_all(
        &app.settings.mqtt,
        vec![(app.events_topic("E"), payload)],
    )
    .await
    .unwrap();
    wait_events(&store, 2).await;
    let outage = store.notices_per_customer("outage").await.unwrap().len();
    assert!(outage > 0);
    assert_eq!(
        store.notices_per_customer("restored").await.unwrap().len(),
        outage
    );
    assert_eq!(
        store.unpaired_restorations().await.unwrap(),
        0,
        "restorations belong to the episodes opened before the restart"
    );
    running.shutdown().await;
}

async fn a_shrinking_fault_restores_the_customers_it_lets_go(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let small = [11.800, 53.400, 11.808, 53.408];
    let (all, kept) = (
        in_box(&customers, A[0], A[1], A[2], A[3]),
        in_box(&customers, small[0], small[1], small[2], small[3]),
    );
    let let_go: Vec<String> = all.iter().filter(|c| !kept.contains(c)).cloned().collect();
    assert!(!kept.is_empty() && !let_go.is_empty());
    app.publish(&[
        &rect("s1", "S", "detected", "2026-11-23T14:00:00Z", A),
        &rect("s2", "S", "updated", "2026-11-23T15:00:00Z", small),
    ])
    .await;
    app.wait_events(2).await;
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        let_go,
        "partial restoration: only the customers outside the new area"
    );
    assert_eq!(app.store.open_episodes().await.unwrap().len(), kept.len());
    app.shutdown().await;
}

/// A large set goes in the fast way (PostgreSQL: `COPY`); when some of its rows exist already
/// (a redelivered batch, a scheduled job run twice), only the new ones are created, with the
/// values given.
async fn a_large_notice_set_creates_only_the_notices_not_there_yet(backend: Backend) {
    let (url, _dir) = fresh_database(backend, &format!("bulk_{}", unique_prefix())).await;
    let store = faultline::store::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let intent = |i: usize| faultline::store::NoticeIntent {
        customer_id: format!("C{i:05}"),
        episode_started_at: 1_700_000_000_000,
        kind: "outage",
        variant: String::new(),
        fault_id: "F-BULK".into(),
        priority: (i % 3) as i64,
        due_at: 1_700_000_000_000 + i as i64,
    };
    let first: Vec<_> = (0..1500).map(intent).collect();
    assert_eq!(store.create_notices(&first, 1).await.unwrap(), 1500);
    let all: Vec<_> = (0..3000).rev().map(intent).collect();
    assert_eq!(
        store.create_notices(&all, 2).await.unwrap(),
        1500,
        "the 1,500 that existed are skipped"
    );
    let queued = store
        .count_notices(Some("F-BULK"), "outage", "queued")
        .await;
    assert_eq!(queued.unwrap(), 3000);
    let per_customer = store.notices_per_customer("outage").await.unwrap();
    assert!(per_customer.iter().all(|(_, n)| *n == 1), "one notice each");
    // The first claims are the most urgent: priority 0, earliest due first.
    let claimed = store.claim_due_notices(i64::MAX / 2, 3).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(ids, ["C00000", "C00003", "C00006"]);
}

both_backends!(
    a_large_notice_set_creates_only_the_notices_not_there_yet,
    a_shrinking_fault_restores_the_customers_it_lets_go,
    overlapping_faults_make_one_outage_and_one_restoration_notice,
    a_momentary_outage_sends_nothing,
    episodes_survive_a_restart,
);
