//! Delivery through the log channel: every due notice goes out once, on the customer's first
//! reachable preferred channel, in their language, contacts masked; opted-out customers are
//! left alone unless they depend on power; a send interrupted by a crash is not repeated.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use faultline::app::App;
use faultline::clock::Clock;

/// What the test expects for a customer, from the CSV alone.
fn expected_channel(c: &SampleCustomer) -> Option<&'static str> {
    let has = |ch: &str| match ch {
        "sms" => !c.phone.is_empty(),
        "email" => !c.email.is_empty(),
        "push" => !c.push_token.is_empty(),
        _ => false,
    };
    let order: Vec<&str> = if !c.channels.is_empty() {
        c.channels.iter().map(String::as_str).collect()
    } else if c.critical {
        vec!["sms", "push", "email"]
    } else {
        return None;
    };
    order.into_iter().find(|ch| has(ch)).map(|ch| match ch {
        "sms" => "sms",
        "email" => "email",
        _ => "push",
    })
}

async fn start_with_log(backend: Backend, log: &std::path::Path) -> TestApp {
    let mut app = spawn_app(backend).await;
    // Restart with the log channel on (spawn_app starts without channels).
    app.stop().await;
    let mut settings = app.settings.clone();
    settings.channels.log.path = log.display().to_string();
    settings.notify.poll_ms = 50;
    let built = App::build(settings, Clock::System).await.unwrap();
    app.store = built.store().clone(); // the first app closed its pool
    let mut running = built.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    app.running = Some(running);
    app
}

fn read_lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn notices_go_out_once_on_the_right_channel_in_the_right_language(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("notices.jsonl");
    let app = start_with_log(backend, &log).await;
    let customers: HashMap<String, SampleCustomer> = sample_customers()
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let affected = on_device(&customers.values().cloned().collect::<Vec<_>>(), "LV3.201");
    app.publish(&[include_bytes!("../samples/events/detected-devices.json")])
        .await;
    let store = app.store.clone();
    eventually("every outage notice is handled", || {
        let store = store.clone();
        async move {
            store
                .count_notices(Some("F-1003"), "outage", "queued")
                .await
                .unwrap()
                == 0
                && store
                    .count_notices(Some("F-1003"), "outage", "sent")
                    .await
                    .unwrap()
                    > 0
        }
    })
    .await;

    let lines = read_lines(&log);
    let reached: Vec<&String> = affected
        .iter()
        .filter(|id| expected_channel(&customers[*id]).is_some())
        .collect();
    assert_eq!(
        lines.len(),
        reached.len(),
        "one line per reachable customer"
    );
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        let id = line["customer_id"].as_str().unwrap().to_owned();
        assert!(seen.insert(id.clone()), "{id} notified twice");
        let c = &customers[&id];
        assert_eq!(
            line["channel"],
            expected_channel(c).unwrap(),
            "{id}'s channel"
        );
        let lang = if ["de", "en", "ru", "zh"].contains(&c.language.as_str()) {
            c.language.as_str()
        } else {
            "en"
        };
        assert_eq!(line["language"], lang, "{id}'s language");
        let text = line.to_string();
        for contact in [&c.phone, &c.email, &c.push_token] {
            assert!(
                contact.is_empty() || !text.contains(contact.as_str()),
                "{id}'s contact leaked"
            );
        }
    }
    let opted_out = affected
        .iter()
        .filter(|id| expected_channel(&customers[*id]).is_none())
        .count() as i64;
    let suppressed = app
        .store
        .count_notices(Some("F-1003"), "outage", "suppressed")
        .await
        .unwrap();
    let unreachable = app
        .store
        .count_notices(Some("F-1003"), "outage", "unreachable")
        .await
        .unwrap();
    assert_eq!(suppressed + unreachable, opted_out);
    let summary = app.store.sent_summary().await.unwrap();
    assert_eq!(
        summary.iter().map(|(_, _, n)| n).sum::<i64>(),
        reached.len() as i64
    );
    app.shutdown().await;
}

async fn a_send_interrupted_by_a_crash_is_not_repeated(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("notices.jsonl");
    // No channel yet: notices wait in the outbox.
    let mut app = spawn_app(backend).await;
    app.publish(&[include_bytes!("../samples/events/detected-devices.json")])
        .await;
    app.wait_events(1).await;
    let queued = app
        .store
        .count_notices(Some("F-1003"), "outage", "queued")
        .await
        .unwrap();
    assert!(queued > 0);
    // A daemon claimed five of them two minutes ago and died before recording the outcome.
    let two_minutes_ago = chrono::Utc::now().timestamp_millis() - 120_000;
    let claimed = app
        .store
        .claim_due_notices(two_minutes_ago, 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    app.stop().await;

    let mut settings = app.settings.clone();
    settings.channels.log.path = log.display().to_string();
    settings.notify.poll_ms = 50;
    let mut running = App::build(settings, Clock::System)
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let store = running.store.clone(); // the first app closed its pool
    eventually("the rest is sent", || {
        let store = store.clone();
        async move {
            store
                .count_notices(Some("F-1003"), "outage", "queued")
                .await
                .unwrap()
                == 0
        }
    })
    .await;
    let failed = store
        .count_notices(Some("F-1003"), "outage", "failed")
        .await
        .unwrap();
    running.shutdown().await;
    assert_eq!(failed, 5, "the interrupted sends are failed, not repeated");
    let lines = read_lines(&log);
    for n in &claimed {
        assert!(
            lines.iter().all(|l| l["notice_id"] != n.id),
            "notice {} was sent again",
            n.id
        );
    }
}

both_backends!(
    notices_go_out_once_on_the_right_channel_in_the_right_language,
    a_send_interrupted_by_a_crash_is_not_repeated,
);
