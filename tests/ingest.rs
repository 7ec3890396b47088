//! The spine end to end: events over the real Mosquitto, state in a real SQLite file and a real
//! PostgreSQL database. Expected sets are computed here from the CSV, not by the code under test.

mod common;

use std::time::Duration;

use common::*;

const DETECTED_POLYGON: &[u8] = include_bytes!("../samples/events/detected-polygon.json");
const DETECTED_RADIUS: &[u8] = include_bytes!("../samples/events/detected-radius.json");
const DETECTED_DEVICES: &[u8] = include_bytes!("../samples/events/detected-devices.json");
const UPDATED_SHRINK: &[u8] = include_bytes!("../samples/events/updated-shrink.json");
const RESTORED: &[u8] = include_bytes!("../samples/events/restored.json");
const PLANNED: &[u8] = include_bytes!("../samples/events/planned.json");

fn within_600m_of_f1002(customers: &[SampleCustomer]) -> (Vec<String>, Vec<String>) {
    // A sphere is within 0.5 % of the ellipsoid: customers clearly inside must be affected,
    // customers clearly outside must not; the thin shell in between is not asserted.
    let d = |c: &SampleCustomer| haversine_m(11.830, 53.440, c.lon, c.lat);
    let inside = sorted(
        customers
            .iter()
            .filter(|c| d(c) < 600.0 * 0.995)
            .map(|c| c.id.clone()),
    );
    let outside = sorted(
        customers
            .iter()
            .filter(|c| d(c) > 600.0 * 1.005)
            .map(|c| c.id.clone()),
    );
    (inside, outside)
}

async fn example_events_give_the_right_affected_sets(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let f1001 = in_box(&customers, 11.800, 53.400, 11.825, 53.420);
    let f1001_shrunk = in_box(&customers, 11.800, 53.400, 11.812, 53.410);
    let f1003 = on_device(&customers, "LV3.201");
    let (near, far) = within_600m_of_f1002(&customers);
    assert!(
        f1001.len() > 1000 && !f1003.is_empty() && !near.is_empty(),
        "the examples cover customers"
    );

    app.publish(&[DETECTED_POLYGON, DETECTED_RADIUS, DETECTED_DEVICES])
        .await;
    app.wait_events(3).await;
    assert_eq!(
        app.store.fault_members("F-1001", "out").await.unwrap(),
        f1001
    );
    assert_eq!(
        app.store.fault_members("F-1003", "out").await.unwrap(),
        f1003
    );
    let f1002 = app.store.fault_members("F-1002", "out").await.unwrap();
    assert!(
        near.iter().all(|c| f1002.contains(c)),
        "every customer well inside 600 m is out"
    );
    assert!(
        f1002.iter().all(|c| !far.contains(c)),
        "no customer well beyond 600 m is out"
    );
    assert_eq!(
        app.store.customers_out().await.unwrap(),
        union(&[&f1001, &f1002, &f1003])
    );

    app.publish(&[UPDATED_SHRINK]).await;
    app.wait_events(4).await;
    assert_eq!(
        app.store.fault_members("F-1001", "out").await.unwrap(),
        f1001_shrunk
    );
    let left: Vec<String> = f1001
        .iter()
        .filter(|c| !f1001_shrunk.contains(c))
        .cloned()
        .collect();
    assert_eq!(
        app.store.fault_members("F-1001", "restored").await.unwrap(),
        left
    );

    app.publish(&[RESTORED, PLANNED]).await;
    app.wait_events(6).await;
    assert!(app
        .store
        .fault_members("F-1001", "out")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        app.store.fault_members("F-1001", "restored").await.unwrap(),
        f1001
    );
    assert_eq!(
        app.store.customers_out().await.unwrap(),
        union(&[&f1002, &f1003])
    );
    let planned = in_box(&customers, 11.815, 53.425, 11.835, 53.437);
    assert_eq!(
        app.store.fault_members("P-2001", "planned").await.unwrap(),
        planned
    );
    assert_eq!(
        app.store.fault_state("P-2001").await.unwrap().unwrap().0,
        "planned"
    );
    assert_eq!(app.count("applied").await, 6);
    app.shutdown().await;
}

fn rect(event: &str, fault: &str, kind: &str, seq: u64, [x0, y0, x1, y1]: [f64; 4]) -> Vec<u8> {
    format!(
        r#"{{"v":1,"event_id":"{event}","fault_id":"{fault}","kind":"{kind}","seq":{seq},"occurred_at":"2026-11-23T14:{seq:02}:00Z",
        "area":{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#
    )
    .into_bytes()
}

fn restore(event: &str, fault: &str, seq: u64) -> Vec<u8> {
    format!(r#"{{"v":1,"event_id":"{event}","fault_id":"{fault}","kind":"restored","seq":{seq},"occurred_at":"2026-11-23T16:{seq:02}:00Z"}}"#).into_bytes()
}

async fn overlapping_faults_keep_shared_customers_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let a = in_box(&customers, 11.800, 53.400, 11.815, 53.415);
    let b = in_box(&customers, 11.810, 53.405, 11.825, 53.420);
    let shared: Vec<String> = a.iter().filter(|c| b.contains(c)).cloned().collect();
    assert!(!shared.is_empty());
    app.publish(&[
        &rect("o1", "A", "detected", 1, [11.800, 53.400, 11.815, 53.415]),
        &rect("o2", "B", "detected", 1, [11.810, 53.405, 11.825, 53.420]),
    ])
    .await;
    app.wait_events(2).await;
    assert_eq!(app.store.customers_out().await.unwrap(), union(&[&a, &b]));
    app.publish(&[&restore("o3", "A", 2)]).await;
    app.wait_events(3).await;
    assert_eq!(
        app.store.customers_out().await.unwrap(),
        b,
        "shared customers stay out through B"
    );
    assert_eq!(app.store.fault_members("A", "restored").await.unwrap(), a);
    app.publish(&[&restore("o4", "B", 2)]).await;
    app.wait_events(4).await;
    assert!(app.store.customers_out().await.unwrap().is_empty());
    app.shutdown().await;
}

async fn updates_grow_and_stale_or_duplicate_events_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let small = in_box(&customers, 11.800, 53.400, 11.805, 53.405);
    let big = in_box(&customers, 11.800, 53.400, 11.815, 53.415);
    let first = rect("g1", "G", "detected", 1, [11.800, 53.400, 11.805, 53.405]);
    app.publish(&[
        &first,
        &rect("g3", "G", "updated", 3, [11.800, 53.400, 11.815, 53.415]),
    ])
    .await;
    app.wait_events(2).await;
    assert_eq!(
        app.store.fault_members("G", "out").await.unwrap(),
        big,
        "grown"
    );
    // seq 2 arrives late and would shrink it back; the repeated g1 would re-detect it.
    app.publish(&[
        &rect("g2", "G", "updated", 2, [11.800, 53.400, 11.805, 53.405]),
        &first,
    ])
    .await;
    app.wait_events(4).await;
    assert_eq!(
        app.store.fault_members("G", "out").await.unwrap(),
        big,
        "stale and duplicate ignored"
    );
    assert_eq!(
        (
            app.count("applied").await,
            app.count("stale").await,
            app.count("duplicate").await
        ),
        (2, 1, 1)
    );
    assert_eq!(
        app.store.fault_state("G").await.unwrap().unwrap().1,
        Some(3)
    );
    assert!(small.iter().all(|c| big.contains(c)));
    app.shutdown().await;
}

async fn bad_examples_are_rejected_dead_lettered_and_the_daemon_serves_on(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut letters = subscribe(&app.settings.mqtt.deadletter_topic).await;
    let bad: [(&[u8], &str); 5] = [
        (
            include_bytes!("../samples/events/bad-no-area.json"),
            "needs an `area`",
        ),
        (
            include_bytes!("../samples/events/bad-kind.json"),
            "\"exploded\" is not one of",
        ),
        (
            include_bytes!("../samples/events/bad-time-and-ring.json"),
            "at least 4",
        ),
        (
            include_bytes!("../samples/events/bad-coordinates.json"),
            "outside WGS84",
        ),
        (
            include_bytes!("../samples/events/bad-truncated.json"),
            "not valid JSON",
        ),
    ];
    let payloads: Vec<&[u8]> = bad
        .iter()
        .map(|(p, _)| *p)
        .chain([DETECTED_DEVICES])
        .collect();
    app.publish(&payloads).await;
    app.wait_events(6).await;
    assert_eq!(app.count("rejected").await, 5);
    assert_eq!(
        app.count("applied").await,
        1,
        "the good event after the bad ones is applied"
    );
    let rejected = app
        .store
        .list_events(Some(faultline::store::EventStatus::Rejected), 10)
        .await
        .unwrap();
    for (payload, reason) in &bad {
        let row = rejected
            .iter()
            .find(|e| &e.payload.as_slice() == payload)
            .expect("stored unchanged");
        assert!(
            row.reason.as_deref().unwrap_or("").contains(reason),
            "{:?} lacks {reason}",
            row.reason
        );
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (_, body, _) = tokio::time::timeout(Duration::from_secs(10), letters.recv())
            .await
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        seen.push((
            doc["payload"].as_str().unwrap().to_owned(),
            doc["reason"].as_str().unwrap().to_owned(),
        ));
    }
    for (payload, reason) in &bad {
        let text = std::str::from_utf8(payload).unwrap();
        assert!(
            seen.iter().any(|(p, r)| p == text && r.contains(reason)),
            "dead letter for {text}"
        );
    }
    app.shutdown().await;
}

async fn status_documents_are_retained_per_fault(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    app.publish(&[DETECTED_DEVICES]).await;
    app.wait_events(1).await;
    let topic = format!("{}/F-1003", app.settings.mqtt.status_topic);
    // Subscribing after the fact still gets the document: it is retained.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut status = subscribe(&topic).await;
    let (_, body, retained) = tokio::time::timeout(Duration::from_secs(10), status.recv())
        .await
        .unwrap()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(retained);
    assert_eq!(doc["affected"], on_device(&customers, "LV3.201").len());
    assert_eq!(
        doc["state"], "active",
        "occurred long ago, so past the momentary window"
    );
    let on_feeder = on_device(&customers, "LV3.201").len();
    assert_eq!(
        doc["notices"]["queued"], on_feeder,
        "an outage notice queued per customer"
    );
    assert_eq!(doc["notices"]["sent"], 0);
    app.publish(&[&restore("s2", "F-1003", 2)]).await;
    let restored = loop {
        let (_, body, _) = tokio::time::timeout(Duration::from_secs(10), status.recv())
            .await
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if doc["state"] == "restored" {
            break doc;
        }
    };
    assert_eq!(restored["affected"], 0);
    assert_eq!(
        restored["notices"]["queued"],
        2 * on_feeder,
        "and a restoration notice each"
    );
    assert_eq!(restored["restored"], on_device(&customers, "LV3.201").len());
    app.shutdown().await;
}

async fn customers_imported_while_running_join_open_faults(backend: Backend) {
    let app = spawn_app(backend).await;
    app.publish(&[DETECTED_POLYGON]).await;
    app.wait_events(1).await;
    let csv = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
               NEW-1,N. Ew,11.8101,53.4101,,,,en,,,Europe/Berlin,hospital,,\n\
               NEW-2,F. Ar,11.9000,53.5000,,,,en,,,Europe/Berlin,,,\n";
    let report = faultline::directory::parse_customers(csv).unwrap();
    app.store
        .upsert_customers(&report.rows, chrono::Utc::now())
        .await
        .unwrap();
    let store = app.store.clone();
    eventually("NEW-1 joins F-1001", || {
        let store = store.clone();
        async move {
            store
                .fault_members("F-1001", "out")
                .await
                .unwrap()
                .contains(&"NEW-1".to_owned())
        }
    })
    .await;
    assert!(!app
        .store
        .customers_out()
        .await
        .unwrap()
        .contains(&"NEW-2".to_owned()));
    app.shutdown().await;
}

async fn planned_outages_start_and_cancel(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    // Starts in the past: the daemon's tick starts it; the other one is cancelled before.
    let started = br#"{"v":1,"event_id":"p1","fault_id":"P-1","kind":"planned","occurred_at":"2026-11-01T09:00:00Z","devices":["LV3.211"],"starts_at":"2026-11-02T08:00:00Z","ends_at":"2026-11-02T12:00:00Z"}"#;
    let later = br#"{"v":1,"event_id":"p2","fault_id":"P-2","kind":"planned","occurred_at":"2026-11-01T09:00:00Z","devices":["LV3.212"],"starts_at":"2099-11-02T08:00:00Z","ends_at":"2099-11-02T12:00:00Z"}"#;
    let cancel = br#"{"v":1,"event_id":"p3","fault_id":"P-2","kind":"cancelled","occurred_at":"2026-11-01T10:00:00Z"}"#;
    app.publish(&[started, later, cancel]).await;
    app.wait_events(3).await;
    let store = app.store.clone();
    eventually("P-1 becomes active", || {
        let store = store.clone();
        async move {
            store
                .fault_state("P-1")
                .await
                .unwrap()
                .is_some_and(|s| s.0 == "active")
        }
    })
    .await;
    assert_eq!(
        app.store.fault_members("P-1", "out").await.unwrap(),
        on_device(&customers, "LV3.211")
    );
    assert_eq!(
        app.store.fault_members("P-2", "cancelled").await.unwrap(),
        on_device(&customers, "LV3.212")
    );
    assert_eq!(
        app.store.customers_out().await.unwrap(),
        on_device(&customers, "LV3.211")
    );
    app.shutdown().await;
}

async fn state_survives_a_clean_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let customers = sample_customers();
    app.publish(&[DETECTED_POLYGON, DETECTED_DEVICES]).await;
    app.wait_events(2).await;
    let settings = app.settings.clone();
    app.stop().await;
    // A new process on the same database and session.
    let rebuilt = faultline::app::App::build(settings, faultline::clock::Clock::System)
        .await
        .unwrap();
    let book = rebuilt.book();
    let out = book.read().customers_out();
    assert_eq!(
        out,
        union(&[
            &in_box(&customers, 11.800, 53.400, 11.825, 53.420),
            &on_device(&customers, "LV3.201")
        ])
        .len()
    );
    let mut running = rebuilt.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    running.shutdown().await;
}

both_backends!(
    example_events_give_the_right_affected_sets,
    overlapping_faults_keep_shared_customers_out,
    updates_grow_and_stale_or_duplicate_events_change_nothing,
    bad_examples_are_rejected_dead_lettered_and_the_daemon_serves_on,
    status_documents_are_retained_per_fault,
    customers_imported_while_running_join_open_faults,
    planned_outages_start_and_cancel,
    state_survives_a_clean_restart,
);
