//! Dead letters go out from the stored rows, once each: a rejection stored by a daemon that died
//! before publishing it is published by the next start, a letter the broker acknowledged is not
//! published again after a SIGKILL, and a rejected payload delivered again gets no second letter
//! and no second copy. An event far over the payload limit is rejected like any bad input: it
//! neither breaks the broker connection nor holds up the events behind it.

mod common;

use std::time::Duration;

use common::*;
use faultline::store::{BatchWrite, EventRecord, EventStatus, Store};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

const GOOD: &[u8] = include_bytes!("../samples/events/detected-devices.json");
const BAD_KIND: &[u8] = include_bytes!("../samples/events/bad-kind.json");
const NO_AREA: &[u8] = include_bytes!("../samples/events/bad-no-area.json");
const TRUNCATED: &[u8] = include_bytes!("../samples/events/bad-truncated.json");

/// An event of exactly `size` bytes: valid but for its size (a note of megabytes).
fn oversized(size: usize) -> Vec<u8> {
    let head = r#"{"v":1,"event_id":"big-1","fault_id":"F-BIG","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["LV3.202"],"note":""#;
    let tail = r#""}"#;
    let mut payload = head.as_bytes().to_vec();
    payload.resize(size - tail.len(), b'x');
    payload.extend_from_slice(tail.as_bytes());
    payload
}

async fn next_letter(letters: &mut UnboundedReceiver<(String, Vec<u8>, bool)>) -> Value {
    let (_, body, _) = tokio::time::timeout(Duration::from_secs(20), letters.recv())
        .await
        .expect("a dead letter within 20 s")
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn count(store: &Store, status: &str) -> i64 {
    let counts = store.event_counts().await.unwrap();
    counts
        .into_iter()
        .find(|(s, _)| s == status)
        .map_or(0, |(_, n)| n)
}

async fn a_five_megabyte_event_is_dead_lettered_and_the_next_one_applied(backend: Backend) {
    // The daemon reaches the broker through a proxy that counts its connections.
    let ProxiedDaemon {
        settings,
        mut running,
        store,
        proxy,
        _dir,
    } = proxied_daemon(backend).await;
    let prefix = settings.mqtt.client_id.clone();
    let mut letters = subscribe(&settings.mqtt.deadletter_topic).await;

    let big = oversized(5 * 1024 * 1024);
    let mut direct = settings.mqtt.clone();
    direct.url = mqtt_url();
    let topic = format!("{prefix}/faultline/v1/events/test/F-BIG");
    let messages = vec![(topic.clone(), big.clone()), (topic, GOOD.to_vec())];
    faultline::ingest::publish::publish_all(&direct, messages)
        .await
        .unwrap();

    // The sentinel: the event behind the big one is applied, so ingest went on.
    eventually("the event after the big one is applied", || {
        let store = store.clone();
        async move { count(&store, "applied").await == 1 }
    })
    .await;
    let letter = next_letter(&mut letters).await;
    assert_eq!(letter["code"], "too_large", "{letter}");
    assert!(
        letter["reason"].as_str().unwrap().contains("5242880 bytes"),
        "{letter}"
    );
    assert_eq!(letter["truncated"], true);
    let head = letter["payload"].as_str().unwrap();
    assert!(head.len() <= 4096 && big.starts_with(head.as_bytes()));
    // One row per payload (no duplicate from a redelivery), the big one by its head only.
    let rows = store.list_events(None, 10).await.unwrap();
    let statuses: Vec<&str> = rows.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses, ["applied", "rejected"]);
    assert_eq!(rows[1].payload, head.as_bytes());
    // No reconnect loop: one connection for events and one for dead letters, ever.
    assert_eq!(proxy.connections(), 2);
    assert!(running.wait_subscribed(Duration::from_secs(1)).await);
    eventually("the letter is marked as acknowledged", || {
        let store = store.clone();
        async move { store.dead_letters_due().await.unwrap() == 0 }
    })
    .await;
    running.shutdown().await;
}

/// What an ingest batch commits for a rejected payload.
fn rejected_row(topic: &str, payload: &[u8], reason: &str) -> BatchWrite {
    BatchWrite {
        events: vec![EventRecord {
            event_id: Some("evt-bad-2".into()),
            fault_id: Some("F-9".into()),
            kind: None,
            seq: None,
            topic: topic.into(),
            payload: payload.to_vec(),
            received_at: "2026-11-23T14:05:01Z".parse().unwrap(),
            status: EventStatus::Rejected,
            reason: Some(reason.into()),
            digest: Some(faultline::store::payload_digest(topic, reason, payload)),
        }],
        now: 1_795_442_701_000,
        ..Default::default()
    }
}

/// Publishes a good probe event until the daemon has accepted one, so that its persistent
/// session exists and nothing published later is missed.
async fn wait_until_consuming(store: &Store, settings: &faultline::config::Settings, topic: &str) {
    let probe = br#"{"v":1,"event_id":"probe","fault_id":"PROBE","kind":"restored","occurred_at":"2026-11-23T13:00:00Z"}"#;
    eventually("the daemon consumes events", || {
        let (store, mqtt, topic) = (store.clone(), settings.mqtt.clone(), topic.to_owned());
        async move {
            let message = vec![(topic, probe.to_vec())];
            let _ = faultline::ingest::publish::publish_all(&mqtt, message).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut accepted = 0;
            for status in ["applied", "stale", "ignored"] {
                accepted += count(&store, status).await;
            }
            accepted >= 1
        }
    })
    .await;
}

async fn each_rejection_is_dead_lettered_once_across_a_sigkill(backend: Backend) {
    let prefix = unique_prefix();
    let (url, _dir) = fresh_database(backend, &prefix).await;
    import_samples(&url).await;
    let settings = test_settings(&prefix, &url);
    let store = Store::connect(&url, 2).await.unwrap();
    let topic = format!("{prefix}/faultline/v1/events/test/F-9");
    // A daemon committed a rejection and died before publishing its letter.
    let reason = "bad_kind: `kind` \"exploded\" is not one of detected, updated, restored, planned, cancelled";
    store
        .commit_batch(&rejected_row(&topic, BAD_KIND, reason))
        .await
        .unwrap();
    let stored = store.list_events(None, 1).await.unwrap()[0].id;
    let mut letters = subscribe(&settings.mqtt.deadletter_topic).await;

    let mut daemon = KillOnDrop(daemon_command(&settings).spawn().unwrap());
    let letter = next_letter(&mut letters).await;
    assert_eq!(
        letter["id"], stored,
        "the stored rejection is published at start"
    );
    assert_eq!(letter["code"], "bad_kind");
    assert_eq!(letter["payload"], std::str::from_utf8(BAD_KIND).unwrap());
    assert_eq!(letter["rejected_at"], "2026-11-23T14:05:01+00:00");
    wait_until_consuming(&store, &settings, &topic).await;
    let publish = |payloads: &[&[u8]]| {
        let messages = payloads
            .iter()
            .map(|p| (topic.clone(), p.to_vec()))
            .collect();
        faultline::ingest::publish::publish_all(&settings.mqtt, messages)
    };
    publish(&[NO_AREA]).await.unwrap();
    assert!(next_letter(&mut letters).await["reason"]
        .as_str()
        .unwrap()
        .contains("needs an `area`"));
    eventually("both letters are acknowledged", || {
        let store = store.clone();
        async move { store.dead_letters_due().await.unwrap() == 0 }
    })
    .await;

    daemon.0.kill().unwrap(); // SIGKILL
    daemon.0.wait().unwrap();
    // While it is down: NO_AREA again, as the broker redelivers a message whose acknowledgement
    // was lost, then a new bad payload, the sentinel.
    publish(&[NO_AREA, TRUNCATED]).await.unwrap();
    let _daemon = KillOnDrop(daemon_command(&settings).spawn().unwrap());
    let letter = next_letter(&mut letters).await;
    assert_eq!(
        letter["payload"],
        std::str::from_utf8(TRUNCATED).unwrap(),
        "the next letter is the sentinel's: none repeated, none for the redelivery"
    );
    eventually("the sentinel's letter is acknowledged", || {
        let store = store.clone();
        async move { store.dead_letters_due().await.unwrap() == 0 }
    })
    .await;
    assert_eq!(count(&store, "rejected").await, 3);
    let duplicates = store
        .list_events(Some(EventStatus::Duplicate), 10)
        .await
        .unwrap();
    let again: Vec<_> = duplicates
        .iter()
        .filter(|e| {
            e.reason
                .as_deref()
                .unwrap_or("")
                .starts_with("rejected before")
        })
        .collect();
    assert_eq!(again.len(), 1, "the redelivery is recorded once");
    assert!(again[0].payload.is_empty(), "without a second copy");
    store.close().await;
}

async fn a_redelivered_duplicate_keeps_no_payload(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut letters = subscribe(&app.settings.mqtt.deadletter_topic).await;
    // The same event and the same bad payload twice, as a broker redelivers them; then a
    // sentinel that must be the next letter.
    app.publish(&[GOOD, BAD_KIND, GOOD, BAD_KIND, NO_AREA])
        .await;
    app.wait_events(5).await;
    assert_eq!(next_letter(&mut letters).await["code"], "bad_kind");
    assert_eq!(next_letter(&mut letters).await["code"], "missing_area");
    let rows = app.store.list_events(None, 10).await.unwrap();
    let statuses: Vec<&str> = rows.iter().rev().map(|e| e.status.as_str()).collect();
    assert_eq!(
        statuses,
        ["applied", "rejected", "duplicate", "duplicate", "rejected"]
    );
    let sizes: Vec<usize> = rows.iter().rev().map(|e| e.payload.len()).collect();
    assert_eq!(
        sizes,
        [GOOD.len(), BAD_KIND.len(), 0, 0, NO_AREA.len()],
        "the first copy keeps the payload, the repeats keep none"
    );
    app.shutdown().await;
}

both_backends!(
    a_five_megabyte_event_is_dead_lettered_and_the_next_one_applied,
    each_rejection_is_dead_lettered_once_across_a_sigkill,
    a_redelivered_duplicate_keeps_no_payload,
);
