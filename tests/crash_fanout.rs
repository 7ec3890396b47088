//! Kill the real binary with SIGKILL in the middle of a fan-out and start it again: every
//! affected customer ends with exactly one outage notice row; no SMS is sent twice; the only
//! notices not sent are those in flight at the kill, which are
//! failed rather than resent (at most `notify.concurrency`). The size of that window is
//! printed (docs/NOTICES.md quotes it). A graceful stop in the middle puts the unsent claims
//! back in the queue, and the restarted daemon sends each of them once.

mod common;

use std::collections::HashMap;
use std::process::Child;
use std::time::Duration;

use common::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CUSTOMERS: usize = 1500;
const BATCH: usize = 40;
const CONCURRENCY: usize = 8;

fn csv() -> String {
    let mut text = String::from("customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n");
    for i in 0..CUSTOMERS {
        text.push_str(&format!(
            "X{i:05},Customer {i},11.80,53.40,+49151{i:08},,,en,sms,,Europe/Berlin,,FAN-1,FAN-1 Bus {i}\n"
        ));
    }
    text
}

fn spawn(settings: &faultline::config::Settings, sms: &str) -> Child {
    daemon_command(settings)
        .env("FAULTLINE__CHANNELS__SMS__BASE_URL", sms)
        .env("FAULTLINE__CHANNELS__SMS__ACCOUNT_SID", "ACfan")
        .env("FAULTLINE__CHANNELS__SMS__AUTH_TOKEN", "fan-token")
        .env("FAULTLINE__CHANNELS__SMS__FROM", "+4915000000000")
        .env("FAULTLINE__NOTIFY__BATCH_SIZE", BATCH.to_string())
        .env("FAULTLINE__NOTIFY__CONCURRENCY", CONCURRENCY.to_string())
        .env("FAULTLINE__NOTIFY__POLL_MS", "50")
        // Interrupted sends are settled two seconds after the kill, not a minute.
        .env("FAULTLINE__NOTIFY__STALE_SENDING_SECS", "2")
        .env("FAULTLINE__SCHEDULE__RETRY_SWEEPER", "* * * * * *")
        .spawn()
        .expect("the faultline binary starts")
}

async fn sms_provider() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/ACfan/Messages.json"))
        // A slow provider keeps the fan-out going long enough to kill it in the middle.
        .respond_with(
            ResponseTemplate::new(201)
                .set_delay(Duration::from_millis(25))
                .set_body_json(serde_json::json!({"sid": "SMfan", "status": "queued"})),
        )
        .mount(&server)
        .await;
    server
}

async fn sigkill_mid_fanout_sends_nothing_twice(backend: Backend) {
    let provider = sms_provider().await;
    let (prefix, url, _dir, store) = database_with(backend, &csv()).await;
    let settings = test_settings(&prefix, &url);
    let mut daemon = spawn(&settings, &provider.uri());
    let event = br#"{"v":1,"event_id":"fan","fault_id":"FAN-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["FAN-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/FAN-1");
    eventually("the fan-out is under way", || {
        let (mqtt, topic, provider) = (settings.mqtt.clone(), topic.clone(), &provider);
        async move {
            // Republishing is harmless: the event id is deduplicated.
            let _ =
                faultline::ingest::publish::publish_all(&mqtt, vec![(topic, event.to_vec())]).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            provider.received_requests().await.unwrap().len() >= CUSTOMERS / 3
        }
    })
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let at_kill = provider.received_requests().await.unwrap().len();
    assert!(at_kill < CUSTOMERS, "killed in the middle");

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut daemon = spawn(&settings, &provider.uri());
    eventually("every notice is settled", || {
        let store = store.clone();
        async move {
            let queued = store
                .count_notices(Some("FAN-1"), "outage", "queued")
                .await
                .unwrap();
            let mut open = queued;
            for state in ["claimed", "sending"] {
                open += store
                    .count_notices(Some("FAN-1"), "outage", state)
                    .await
                    .unwrap();
            }
            open == 0
        }
    })
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let per_customer = store.notices_per_customer("outage").await.unwrap();
    assert_eq!(per_customer.len(), CUSTOMERS);
    assert!(
        per_customer.iter().all(|(_, n)| *n == 1),
        "one notice row per customer"
    );
    let sent = store
        .count_notices(Some("FAN-1"), "outage", "sent")
        .await
        .unwrap();
    let failed = store
        .count_notices(Some("FAN-1"), "outage", "failed")
        .await
        .unwrap();
    assert_eq!(sent + failed, CUSTOMERS as i64);
    // The window in doubt: the requests in flight plus the finished ones not yet recorded; a
    // finished one keeps its slot until the refill that records it.
    let window = CONCURRENCY as i64;
    assert!(
        failed <= window,
        "only the requests in flight at the kill: {failed}"
    );

    let mut per_number: HashMap<String, usize> = HashMap::new();
    for r in provider.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&r.body).to_string();
        let to = body
            .split('&')
            .find(|kv| kv.starts_with("To="))
            .unwrap()
            .to_owned();
        *per_number.entry(to).or_default() += 1;
    }
    assert!(
        per_number.values().all(|&n| n == 1),
        "no SMS went out twice"
    );
    assert!(
        per_number.len() as i64 >= sent,
        "every sent notice reached the provider"
    );
    eprintln!(
        "fan-out killed after {at_kill} of {CUSTOMERS} requests: {failed} notices were in flight \
         (failed, not resent); {} of them had reached the provider",
        per_number.len() as i64 - sent
    );
}

/// Counts a customer's SMS requests at the provider, by number.
async fn sms_per_number(provider: &MockServer) -> HashMap<String, usize> {
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for r in provider.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&r.body).to_string();
        if let Some(to) = body.split('&').find(|kv| kv.starts_with("To=")) {
            *per_number.entry(to.to_owned()).or_default() += 1;
        }
    }
    per_number
}

async fn a_stop_mid_fanout_puts_unsent_claims_back(backend: Backend) {
    let provider = sms_provider().await;
    let (prefix, url, _dir, store) = database_with(backend, &csv()).await;
    let mut settings = test_settings(&prefix, &url);
    settings.channels.sms.base_url = provider.uri();
    settings.channels.sms.account_sid = "ACfan".into();
    settings.channels.sms.auth_token = faultline::config::Secret::new("fan-token");
    settings.channels.sms.from = "+4915000000000".into();
    settings.notify.batch_size = BATCH;
    settings.notify.concurrency = CONCURRENCY;
    settings.notify.poll_ms = 50;
    let start = || async {
        let mut running =
            faultline::app::App::build(settings.clone(), faultline::clock::Clock::System)
                .await
                .unwrap()
                .start()
                .unwrap();
        assert!(running.wait_subscribed(Duration::from_secs(10)).await);
        running
    };
    let running = start().await;
    let event = br#"{"v":1,"event_id":"fan","fault_id":"FAN-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["FAN-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/FAN-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    eventually("the fan-out is under way", || async {
        provider.received_requests().await.unwrap().len() >= CUSTOMERS / 4
    })
    .await;
    running.shutdown().await;

    // Stopped: nothing is left claimed or in doubt; what was not sent is queued again with
    // its claim not counted as an attempt.
    let mut sent = 0;
    let mut queued = 0;
    for i in 0..CUSTOMERS {
        let notices = store
            .notices_of(&format!("X{i:05}"), "outage")
            .await
            .unwrap();
        assert_eq!(notices.len(), 1, "one notice row per customer");
        match notices[0].state.as_str() {
            "sent" => sent += 1,
            "queued" => {
                assert_eq!(notices[0].attempts, 0, "a released claim is not an attempt");
                queued += 1;
            }
            other => panic!("X{i:05} left {other} by a graceful stop"),
        }
    }
    assert!(sent > 0 && queued > 0, "stopped in the middle: {sent} sent");
    assert_eq!(sms_per_number(&provider).await.len(), sent);

    let running = start().await;
    eventually("the rest is sent after the restart", || async {
        store
            .count_notices(Some("FAN-1"), "outage", "sent")
            .await
            .unwrap()
            == CUSTOMERS as i64
    })
    .await;
    running.shutdown().await;
    let per_number = sms_per_number(&provider).await;
    assert_eq!(per_number.len(), CUSTOMERS, "everyone got their SMS");
    assert!(per_number.values().all(|&n| n == 1), "nobody got it twice");
}

both_backends!(
    sigkill_mid_fanout_sends_nothing_twice,
    a_stop_mid_fanout_puts_unsent_claims_back
);
