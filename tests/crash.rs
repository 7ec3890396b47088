//! Nothing lost, nothing twice: the real binary is killed with SIGKILL in the middle of a
//! stream, events are published while it is down, and a restart must account for every event
//! exactly once, with the outage state the events imply.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;

fn spawn_daemon(settings: &faultline::config::Settings) -> Child {
    daemon_command(settings)
        // Small batches, so the kill lands between commits as well as inside one.
        .env("FAULTLINE__INGEST__BATCH_SIZE", "4")
        .spawn()
        .expect("the faultline binary starts")
}

fn event(i: usize, device: &str) -> Vec<u8> {
    // Even faults are detected then restored; odd ones stay out.
    let (fault, kind, seq) = (
        i / 2,
        if i % 2 == 0 { "detected" } else { "restored" },
        1 + i % 2,
    );
    let fault = if fault % 2 == 0 {
        fault
    } else {
        fault + 100_000
    };
    let kind = if fault >= 100_000 && kind == "restored" {
        "updated"
    } else {
        kind
    };
    format!(
        r#"{{"v":1,"event_id":"k-{i}","fault_id":"K-{fault}","kind":"{kind}","seq":{seq},"occurred_at":"2026-11-23T14:00:00Z","devices":["{device}"]}}"#
    )
    .into_bytes()
}

/// Starts the daemon for the first time and waits until its persistent session exists: an
/// accepted probe event proves it is subscribed, so nothing published later is missed.
async fn first_start(
    settings: &faultline::config::Settings,
    store: &faultline::store::Store,
    topic: &str,
) -> Child {
    let daemon = spawn_daemon(settings);
    let probe = br#"{"v":1,"event_id":"probe","fault_id":"PROBE","kind":"restored","occurred_at":"2026-11-23T13:00:00Z"}"#;
    eventually("the daemon subscribes", || {
        let (store, mqtt, topic) = (store.clone(), settings.mqtt.clone(), topic.to_owned());
        async move {
            let _ =
                faultline::ingest::publish::publish_all(&mqtt, vec![(topic, probe.to_vec())]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            accepted(&store).await >= 1
        }
    })
    .await;
    daemon
}

async fn accepted(store: &faultline::store::Store) -> i64 {
    let counts = store.event_counts().await.unwrap();
    counts
        .iter()
        .filter(|(s, _)| s == "applied" || s == "stale" || s == "ignored")
        .map(|(_, n)| n)
        .sum()
}

async fn sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(backend: Backend) {
    let prefix = unique_prefix();
    let (url, _dir) = fresh_database(backend, &prefix).await;
    import_samples(&url).await;
    let settings = test_settings(&prefix, &url);
    let store = faultline::store::Store::connect(&url, 2).await.unwrap();
    let customers = sample_customers();
    // Whole feeders (≈118 customers each) make every event heavy enough that the stream is
    // still running when the kill comes.
    let feeders = sorted(customers.iter().map(|c| c.feeder.clone()));
    let devices: Vec<&str> = feeders.iter().map(String::as_str).collect();
    let topic = format!("{prefix}/faultline/v1/events/test/k");
    let publish = |range: std::ops::Range<usize>| {
        let mqtt = settings.mqtt.clone();
        let messages: Vec<(String, Vec<u8>)> = range
            .map(|i| (topic.clone(), event(i, devices[(i / 2) % devices.len()])))
            .collect();
        async move {
            faultline::ingest::publish::publish_all(&mqtt, messages)
                .await
                .unwrap()
        }
    };

    let mut daemon = first_start(&settings, &store, &topic).await;

    // Mosquitto queues at most 1000 messages per client by default: stay below.
    const RUNNING: usize = 600;
    const WHILE_DOWN: usize = 200;
    let stream = tokio::spawn(publish(0..RUNNING));
    // Poll tightly, so the kill lands early in the stream rather than whenever a slow poll wakes.
    while accepted(&store).await < (RUNNING / 6) as i64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let at_kill = accepted(&store).await;
    stream.await.unwrap();
    publish(RUNNING..RUNNING + WHILE_DOWN).await;

    let mut daemon = spawn_daemon(&settings);
    let total = (1 + RUNNING + WHILE_DOWN) as i64;
    eventually("every event is accounted for after the restart", || {
        let store = store.clone();
        async move { accepted(&store).await >= total }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    assert!(
        at_kill < total - WHILE_DOWN as i64,
        "the kill landed mid-stream ({at_kill} of {total})"
    );
    assert_eq!(
        accepted(&store).await,
        total,
        "each event accepted exactly once"
    );
    // The expected state, from the events alone: faults whose last event is not `restored`.
    let mut expected = Vec::new();
    for i in (0..RUNNING + WHILE_DOWN).step_by(2) {
        let fault = i / 2;
        let restored_later = fault % 2 == 0 && i + 1 < RUNNING + WHILE_DOWN;
        if !restored_later {
            expected.extend(on_device(&customers, devices[fault % devices.len()]));
        }
    }
    let out = sorted(expected.into_iter());
    assert_eq!(store.customers_out().await.unwrap(), out);
    // The outbox went through the same crash: open episodes are exactly the customers out, and
    // every restoration notice belongs to an outage notice of the same episode.
    let open = sorted(
        store
            .open_episodes()
            .await
            .unwrap()
            .into_iter()
            .map(|(c, _)| c),
    );
    assert_eq!(open, out);
    assert_eq!(store.unpaired_restorations().await.unwrap(), 0);
    store.close().await;
}

async fn sigterm_drains_and_exits_cleanly(backend: Backend) {
    let prefix = unique_prefix();
    let (url, _dir) = fresh_database(backend, &prefix).await;
    import_samples(&url).await;
    let settings = test_settings(&prefix, &url);
    let store = faultline::store::Store::connect(&url, 2).await.unwrap();
    let topic = format!("{prefix}/faultline/v1/events/test/t");
    let mut daemon = first_start(&settings, &store, &topic).await;
    let messages: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| (topic.clone(), event(i, "LV3.211")))
        .collect();
    faultline::ingest::publish::publish_all(&settings.mqtt, messages)
        .await
        .unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || daemon.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "a clean exit on SIGTERM, got {exit:?}");
    // What the daemon had not taken stays with the broker: a restart consumes the rest.
    let mut daemon = spawn_daemon(&settings);
    eventually("the rest is consumed after the restart", || {
        let store = store.clone();
        async move { accepted(&store).await >= 401 }
    })
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(accepted(&store).await, 401);
    store.close().await;
}

both_backends!(
    sigkill_mid_stream_loses_nothing_and_applies_nothing_twice,
    sigterm_drains_and_exits_cleanly
);
