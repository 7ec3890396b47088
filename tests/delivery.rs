//! Delivery through the log channel: every due notice goes out once, on the customer's first
//! reachable preferred channel, in their language, contacts masked; opted-out customers are
//! left alone unless they depend on power; a send interrupted by a crash is not repeated.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use faultline::app::App;
use faultline::clock::Clock;

/// Noon in Berlin, outside every sample customer's quiet hours, whenever the tests run.
fn midday() -> Clock {
    Clock::manual("2026-11-24T11:00:00Z".parse().unwrap())
}

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
    app.restart_with(midday(), |s| {
        s.channels.log.path = log.display().to_string();
        s.notify.poll_ms = 50;
    })
    .await;
    app
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
    assert!(wait_settled(&app.store, "F-1003", "outage").await > 0);

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
    // A daemon claimed five of them two minutes ago (a claim marks them `sending`: their
    // requests were about to leave) and died before recording the outcome.
    let two_minutes_ago = midday().now().timestamp_millis() - 120_000;
    let claimed = app
        .store
        .refill(&[], claim(5), &[], two_minutes_ago, |c| {
            (Vec::new(), c.notices)
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    // A daemon of an earlier version, which claimed notices as `claimed` before marking them
    // `sending`, died holding two more: those never left.
    let legacy = app
        .store
        .refill(&[], claim(2), &[], two_minutes_ago, |c| {
            (Vec::new(), c.notices)
        })
        .await
        .unwrap();
    let ids: Vec<i64> = legacy.iter().map(|n| n.id).collect();
    let sql = format!(
        "UPDATE notices SET state = 'claimed' WHERE id IN ({})",
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &app.store {
        faultline::store::Store::Sqlite(pool) => sqlx::query(&sql).execute(pool).await.map(drop),
        faultline::store::Store::Postgres(pool) => sqlx::query(&sql).execute(pool).await.map(drop),
    }
    .unwrap();
    app.stop().await;

    let mut settings = app.settings.clone();
    settings.channels.log.path = log.display().to_string();
    settings.notify.poll_ms = 50;
    let mut running = App::build(settings, midday())
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let store = running.store.clone(); // the first app closed its pool
    wait_settled(&store, "F-1003", "outage").await;
    let failed = store
        .count_notices(Some("F-1003"), "outage", "failed")
        .await
        .unwrap();
    assert_eq!(failed, 5, "the interrupted sends are failed, not repeated");
    let lines = read_lines(&log);
    for n in &claimed {
        assert!(
            lines.iter().all(|l| l["notice_id"] != n.id),
            "notice {} was sent again",
            n.id
        );
    }
    for n in &legacy {
        let view = store.notices_of(&n.customer_id, "outage").await.unwrap();
        let state = &view.iter().find(|v| v.id == n.id).unwrap().state;
        assert_ne!(
            state, "failed",
            "notice {} was only claimed: it goes back in the queue",
            n.id
        );
        let sent = lines.iter().filter(|l| l["notice_id"] == n.id).count();
        assert_eq!(
            sent,
            usize::from(state == "sent"),
            "notice {}: {state}",
            n.id
        );
    }
    running.shutdown().await;
}

const NIGHT_CUSTOMERS: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    Q1,Q. Sleeper,11.80,53.40,+4915100000011,,,en,sms,22:00-07:00,Europe/Berlin,,TQ-1,TQ-1 Bus 1\n\
    Q2,L. Support,11.80,53.40,+4915100000012,,,en,sms,22:00-07:00,Europe/Berlin,life_support,TQ-1,TQ-1 Bus 2\n";

async fn a_night_outage_becomes_one_morning_notice_except_for_critical_customers(backend: Backend) {
    let (prefix, url, dir, store) = database_with(backend, NIGHT_CUSTOMERS).await;
    let log = dir.path().join("notices.jsonl");
    let mut settings = test_settings(&prefix, &url);
    settings.channels.log.path = log.display().to_string();
    settings.notify.poll_ms = 50;
    // 01:00 in Berlin: inside the customers' quiet hours (22:00–07:00).
    let clock = Clock::manual("2026-11-24T00:00:00Z".parse().unwrap());
    let mut running = App::build(settings.clone(), clock.clone())
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let topic = format!("{prefix}/faultline/v1/events/test/Q-1");
    let out = br#"{"v":1,"event_id":"q1","fault_id":"Q-1","kind":"detected","occurred_at":"2026-11-23T23:30:00Z","devices":["TQ-1"]}"#;
    let back = br#"{"v":1,"event_id":"q2","fault_id":"Q-1","kind":"restored","occurred_at":"2026-11-24T00:00:00Z"}"#;
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic.clone(), out.to_vec())])
        .await
        .unwrap();
    let lines_for = |id: &str| {
        read_lines(&log)
            .into_iter()
            .filter(|l| l["customer_id"] == id)
            .collect::<Vec<_>>()
    };
    eventually("the life-support customer is told at once", || async {
        lines_for("Q2").len() == 1
    })
    .await;
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, back.to_vec())])
        .await
        .unwrap();
    eventually("and told the power is back", || async {
        lines_for("Q2").len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        lines_for("Q1").is_empty(),
        "nothing for the sleeper during quiet hours"
    );

    clock.set("2026-11-24T06:01:00Z".parse().unwrap()); // 07:01 in Berlin
    eventually("the sleeper gets one morning notice", || async {
        lines_for("Q1").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let q1 = lines_for("Q1");
    assert_eq!(q1.len(), 1, "one notice, not two");
    assert_eq!(q1[0]["kind"], "restored");
    let body = q1[0]["body"].as_str().unwrap();
    assert!(
        body.contains("00:30") && body.contains("01:00"),
        "from … to … in local time: {body}"
    );
    let outage = &store.notices_of("Q1", "outage").await.unwrap()[0];
    assert_eq!(outage.state, "suppressed");
    running.shutdown().await;
}

/// While the daemon writes a large set of notices its worker makes no claim (it could claim
/// none of them before the commit); the moment the write ends, it claims.
async fn no_claim_while_a_large_notice_write_is_in_progress(backend: Backend) {
    let (prefix, url, dir, store) = database_with(backend, NIGHT_CUSTOMERS).await;
    let log = dir.path().join("notices.jsonl");
    let mut settings = test_settings(&prefix, &url);
    settings.channels.log.path = log.display().to_string();
    settings.notify.poll_ms = 20;
    let app = App::build(settings.clone(), midday()).await.unwrap();
    let writing = app.claim_pause().hold();
    let mut running = app.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let topic = format!("{prefix}/faultline/v1/events/test/Q-1");
    let out = br#"{"v":1,"event_id":"q1","fault_id":"Q-1","kind":"detected","occurred_at":"2026-11-24T10:00:00Z","devices":["TQ-1"]}"#;
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, out.to_vec())])
        .await
        .unwrap();
    wait_for_notices(&store, "Q-1", "outage", "queued", 2).await;
    // Due, committed, and the worker polls every 20 ms: twenty-five polls' time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store
            .count_notices(Some("Q-1"), "outage", "queued")
            .await
            .unwrap(),
        2,
        "nothing claimed while the write is in progress"
    );
    assert!(read_lines(&log).is_empty());
    drop(writing);
    assert_eq!(wait_settled(&store, "Q-1", "outage").await, 2);
    assert_eq!(read_lines(&log).len(), 2);
    running.shutdown().await;
}

both_backends!(
    no_claim_while_a_large_notice_write_is_in_progress,
    notices_go_out_once_on_the_right_channel_in_the_right_language,
    a_send_interrupted_by_a_crash_is_not_repeated,
    a_night_outage_becomes_one_morning_notice_except_for_critical_customers,
);
