//! The broker connection fails mid-stream; the daemon reconnects (backoff with jitter), resumes
//! its persistent session, and loses no event.

mod common;

use std::time::Duration;

use common::*;
use faultline::app::App;
use faultline::clock::Clock;

async fn connection_loss_mid_stream_loses_no_event(backend: Backend) {
    let ProxiedDaemon {
        settings,
        mut running,
        store,
        proxy,
        _dir,
    } = proxied_daemon(backend).await;
    let prefix = settings.mqtt.client_id.clone();

    // Publishers talk to the broker directly; only the daemon's link goes through the proxy.
    let mut direct = settings.mqtt.clone();
    direct.url = mqtt_url();
    let topic = format!("{prefix}/faultline/v1/events/test/r");
    let events: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            let body = format!(r#"{{"v":1,"event_id":"r-{i}","fault_id":"R-{i}","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["LV3.21{}"]}}"#, i % 8 + 1);
            (topic.clone(), body.into_bytes())
        })
        .collect();
    for (round, chunk) in events.chunks(100).enumerate() {
        faultline::ingest::publish::publish_all(&direct, chunk.to_vec())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30 * round as u64)).await;
        proxy.cut();
    }
    let applied = |store: faultline::store::Store| async move {
        let counts = store.event_counts().await.unwrap();
        counts
            .iter()
            .find(|(s, _)| s == "applied")
            .map_or(0, |(_, n)| *n)
    };
    eventually("all 300 events applied", || {
        let store = store.clone();
        async move { applied(store).await >= 300 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        applied(store.clone()).await,
        300,
        "every event applied exactly once"
    );
    assert!(
        running.wait_subscribed(Duration::from_secs(10)).await,
        "subscribed again after the cuts"
    );
    running.shutdown().await;
}

both_backends!(connection_loss_mid_stream_loses_no_event);

/// `/readyz` follows the broker link: ready while subscribed, 503 naming the broker when the
/// link is down.
#[tokio::test]
async fn readiness_reports_a_lost_broker() {
    let prefix = unique_prefix();
    let (url, _dir) = fresh_database(Backend::Sqlite, &prefix).await;
    let proxy = Proxy::start().await;
    let mut settings = test_settings(&prefix, &url);
    settings.mqtt.url = proxy.url.clone();
    let app = App::build(settings, Clock::System).await.unwrap();
    let mut running = app.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let ready = format!("http://{}/readyz", running.api_addr);
    let probe = || async {
        let resp = reqwest::get(&ready).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap())
    };
    assert_eq!(probe().await.0, 200);
    drop(proxy); // the broker is gone and stays gone
    let mut answer = probe().await;
    for _ in 0..100 {
        if answer.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = probe().await;
    }
    assert_eq!(answer.0, 503, "{answer:?}");
    assert_eq!(answer.1["broker"], "unreachable");
    assert_eq!(answer.1["database"], "ok");
    running.shutdown().await;
}
