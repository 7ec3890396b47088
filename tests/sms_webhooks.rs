//! Twilio's webhooks against the running daemon: signed delivery receipts (a failed SMS falls
//! back to the next channel) and inbound replies STOP/START/STATUS/OUT/help answered as TwiML;
//! unsigned or wrongly signed requests are refused and change nothing.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use faultline::app::{App, Running};
use faultline::clock::Clock;
use faultline::config::{Secret, Settings};
use hmac::{Hmac, Mac};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MESSAGES: &str = "/2010-04-01/Accounts/AC9/Messages.json";
const TOKEN: &str = "twilio-auth-token";

const CUSTOMERS: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    W1,A. Delivered,11.80,53.40,+4915100000011,w1@example.net,,en,sms|email,,Europe/Berlin,,TS-1,TS-1 Bus 1\n\
    W2,B. Undelivered,11.80,53.40,+4915100000012,w2@example.net,,de,sms|email,,Europe/Berlin,,TS-1,TS-1 Bus 2\n\
    W3,C. Elsewhere,11.80,53.40,+4915100000013,,,ru,sms,,Europe/Berlin,,TS-2,TS-2 Bus 1\n";

async fn twilio() -> MockServer {
    let server = MockServer::start().await;
    for (n, sid) in [("11", "SMW1"), ("12", "SMW2")] {
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .and(body_string_contains(format!("To=%2B49151000000{n}")))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"sid": sid, "status": "queued"})),
            )
            .mount(&server)
            .await;
    }
    server
}

/// Twilio's scheme, written here independently of the daemon's code.
fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

struct Webhooks {
    base: String,
    http: reqwest::Client,
    /// Numbers each reply's `MessageSid`, as Twilio gives every message its own.
    sent: std::sync::atomic::AtomicU32,
}

impl Webhooks {
    async fn post(
        &self,
        hook: &str,
        params: &[(&str, &str)],
        signature: Option<&str>,
    ) -> (u16, String) {
        let url = format!("{}/webhooks/sms/{hook}", self.base);
        let mut request = self.http.post(&url).form(params);
        let good = sign(&url, params);
        if let Some(sig) = signature.map(|s| if s == "good" { good.as_str() } else { s }) {
            request = request.header("X-Twilio-Signature", sig);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn reply(&self, from: &str, body: &str) -> String {
        let n = self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sid = format!("SM{n:032x}");
        let (status, text) = self
            .post(
                "inbound",
                &[
                    ("From", from),
                    ("Body", body),
                    ("To", "+4915000000000"),
                    ("MessageSid", &sid),
                ],
                Some("good"),
            )
            .await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.starts_with("<?xml") && text.contains("<Response><Message>"),
            "TwiML: {text}"
        );
        text
    }
}

async fn receipts_and_replies(backend: Backend) {
    let server = twilio().await;
    let (prefix, url, dir, store) = database_with(backend, CUSTOMERS).await;
    let mut settings = test_settings(&prefix, &url);
    settings.channels.sms.base_url = server.uri();
    settings.channels.sms.account_sid = "AC9".into();
    settings.channels.sms.auth_token = Secret::new(TOKEN);
    settings.channels.sms.from = "+4915000000000".into();
    settings.channels.sms.status_callback = "https://utility.example/webhooks/sms/status".into();
    settings.channels.log.path = dir.path().join("email.jsonl").display().to_string();
    settings.notify.poll_ms = 50;
    let (running, hooks) = start(&settings).await;
    let event = br#"{"v":1,"event_id":"w1","fault_id":"W-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","cause":"storm","etr":"2026-11-23T20:00:00Z","devices":["TS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/W-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    wait_for_notices(&store, "W-1", "outage", "sent", 2).await;
    let w1 = store.notices_of("W1", "outage").await.unwrap().remove(0);
    let w2 = store.notices_of("W2", "outage").await.unwrap().remove(0);
    assert_eq!(
        (w1.provider_id.as_deref(), w2.provider_id.as_deref()),
        (Some("SMW1"), Some("SMW2"))
    );

    // Refused: no signature, a wrong one, a signature over other parameters.
    let undelivered = [
        ("MessageSid", "SMW2"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30003"),
    ];
    for sig in [
        None,
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Some(sign("http://elsewhere/", &undelivered).as_str()),
    ] {
        let (status, why) = hooks.post("status", &undelivered, sig).await;
        assert_eq!(status, 403, "{why}");
        assert!(why.contains("X-Twilio-Signature"), "{why}");
    }
    assert_eq!(
        store.receipt_of(w2.id).await.unwrap(),
        None,
        "nothing changed"
    );

    // Each SMS names its notice in its status callback.
    let sent: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for n in [&w1, &w2] {
        let callback = format!(
            "StatusCallback=https%3A%2F%2Futility.example%2Fwebhooks%2Fsms%2Fstatus%3Fnotice%3D{}",
            n.id
        );
        assert!(sent.iter().any(|b| b.contains(&callback)), "{sent:?}");
    }

    // A receipt is applied to the notice its callback names, only with that notice's sid.
    let w1_hook = format!("status?notice={}", w1.id);
    let (status, _) = hooks
        .post(
            &w1_hook,
            &[("MessageSid", "SMW2"), ("MessageStatus", "delivered")],
            Some("good"),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(store.receipt_of(w1.id).await.unwrap(), None, "not W1's sid");
    assert_eq!(
        store.receipt_of(w2.id).await.unwrap(),
        None,
        "not W2's callback"
    );

    // Delivered is recorded (by the callback's notice); undelivered without a notice in its
    // callback (a message of an older daemon) is found by its sid and falls back to e-mail.
    let (status, _) = hooks
        .post(
            &w1_hook,
            &[("MessageSid", "SMW1"), ("MessageStatus", "delivered")],
            Some("good"),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = hooks.post("status", &undelivered, Some("good")).await;
    assert_eq!(status, 204);
    assert_eq!(
        store.receipt_of(w1.id).await.unwrap().as_deref(),
        Some("delivered")
    );
    eventually("W2 falls back to e-mail", || {
        let store = store.clone();
        async move {
            let n = store.notices_of("W2", "outage").await.unwrap().remove(0);
            n.state == "sent" && n.channel.as_deref() == Some("email")
        }
    })
    .await;
    let w2 = store.notices_of("W2", "outage").await.unwrap().remove(0);
    assert_eq!(w2.failed_channels, "sms");
    assert_eq!(
        store.notices_per_customer("outage").await.unwrap().len(),
        2,
        "no new notice rows"
    );

    // STATUS: out (with the ETR in local time) or not.
    let status_w1 = hooks.reply("+4915100000011", "status").await;
    assert!(
        status_w1.contains("has been out since") && status_w1.contains("23.11. 21:00"),
        "{status_w1}"
    );
    let status_w3 = hooks.reply("+4915100000013", "STATUS").await;
    assert!(status_w3.contains("Нам не известно"), "{status_w3}");

    // OUT: recorded against the fault covering the customer, or none.
    let out_w2 = hooks.reply("+4915100000012", "out").await;
    assert!(
        out_w2.contains("Danke") && out_w2.contains("bekannt"),
        "{out_w2}"
    );
    let out_w3 = hooks
        .reply("+4915100000013", "OUT no power since noon")
        .await;
    assert!(out_w3.contains("Спасибо"), "{out_w3}");
    assert_eq!(
        store.report_counts(&["W-1".to_owned()]).await.unwrap(),
        vec![("W-1".to_owned(), 1)]
    );

    // STOP and START.
    let stop = hooks.reply("+4915100000012", "Stop").await;
    assert!(stop.contains("START"), "{stop}");
    let phone = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .contacts(&[id.to_owned()])
                .await
                .unwrap()
                .remove(0)
                .phone
        }
    };
    assert_eq!(phone("W2").await, None, "STOP'd number skipped");
    hooks.reply("+4915100000012", "START").await;
    assert_eq!(phone("W2").await.as_deref(), Some("+4915100000012"));

    // Help, and a number nobody registered.
    let help = hooks.reply("+4915100000011", "what is going on?").await;
    assert!(help.contains("STATUS") && help.contains("OUT"), "{help}");
    let stranger = hooks.reply("+4915199999999", "STOP").await;
    assert!(stranger.contains("not registered"), "{stranger}");
    let (status, _) = hooks
        .post(
            "inbound",
            &[("From", "+4915100000012"), ("Body", "STOP")],
            Some("bad"),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(
        phone("W2").await.as_deref(),
        Some("+4915100000012"),
        "the forged STOP changed nothing"
    );
    running.shutdown().await;
}

const STAFF: &str = "staff_id,name,phone,email,skills,languages,lon,lat,status,max_shift_hours\n\
    L1,Near Senior,+4917000000001,l1@utility.example,lineworker:3,en,11.801,53.401,on_shift,12\n\
    L2,Second,+4917000000002,l2@utility.example,lineworker:2,de,11.810,53.410,on_shift,12\n\
    L3,Trainee,+4917000000003,l3@utility.example,lineworker:1,en,11.850,53.450,on_shift,12\n\
    D1,Assessor,+4917000000004,d1@utility.example,damage_assessor:1,en,11.802,53.402,on_shift,12\n";

/// Accepts every message, with one sid for all.
async fn any_twilio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(serde_json::json!({"sid": "SMSTAFF", "status": "queued"})),
        )
        .mount(&server)
        .await;
    server
}

async fn sms_to(server: &MockServer, number: &str) -> Vec<String> {
    let to = format!("To=%2B{}", number.trim_start_matches('+'));
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .filter(|b| b.contains(&to))
        .collect()
}

async fn staff_answer_their_dispatch_by_sms(backend: Backend) {
    let server = any_twilio().await;
    let (prefix, url, _dir, store) = database_with(backend, CUSTOMERS).await;
    let staff = faultline::directory::parse_staff(STAFF).unwrap().rows;
    store
        .upsert_staff(&staff, chrono::Utc::now())
        .await
        .unwrap();
    let mut settings = test_settings(&prefix, &url);
    settings.channels.sms.base_url = server.uri();
    settings.channels.sms.account_sid = "AC9".into();
    settings.channels.sms.auth_token = Secret::new(TOKEN);
    settings.channels.sms.from = "+4915000000000".into();
    settings.notify.poll_ms = 50;
    settings.staffing.replan_secs = 1;
    let (running, hooks) = start(&settings).await;
    // A major fault: lineworker ≥ 2, lineworker, damage assessor.
    let event = br#"{"v":1,"event_id":"d1","fault_id":"W-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","cause":"storm","devices":["TS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/W-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    wait_for_notices(&store, "W-1", "dispatch", "sent", 3).await;
    let to_l1 = sms_to(&server, "+4917000000001").await;
    assert_eq!(to_l1.len(), 1, "one dispatch to L1");
    assert!(
        to_l1[0].contains("Dispatch") && to_l1[0].contains("W-1") && to_l1[0].contains("YES"),
        "{}",
        to_l1[0]
    );
    let to_l2 = sms_to(&server, "+4917000000002").await;
    assert!(
        to_l2[0].contains("Einsatz"),
        "L2 is addressed in German: {}",
        to_l2[0]
    );
    assert!(
        sms_to(&server, "+4917000000003").await.is_empty(),
        "L3 is not needed yet"
    );

    // L1 accepts; L2 declines, and the trainee L3 takes the slot L2 leaves.
    let yes = hooks.reply("+4917000000001", "yes").await;
    assert!(yes.contains("confirmed for fault W-1"), "{yes}");
    let no = hooks.reply("+4917000000002", "NO").await;
    assert!(no.contains("Verstanden") && no.contains("W-1"), "{no}");
    let again = hooks.reply("+4917000000002", "no").await;
    assert!(again.contains("Es wartet kein Einsatz"), "{again}");
    eventually("L3 is dispatched in L2's place", || {
        let server = &server;
        async move { !sms_to(server, "+4917000000003").await.is_empty() }
    })
    .await;
    let plan = store.assignments().await.unwrap();
    let state_of = |id: &str| {
        plan.iter()
            .find(|a| a.staff_id.as_ref().map(|s| s.as_str()) == Some(id))
            .map(|a| a.state.clone())
    };
    assert_eq!(state_of("L1").as_deref(), Some("accepted"));
    assert_eq!(state_of("L2"), None, "L2 is not offered W-1 again");
    assert_eq!(state_of("L3").as_deref(), Some("dispatched"));
    assert_eq!(
        sms_to(&server, "+4917000000001").await.len(),
        1,
        "L1 keeps their slot: no second dispatch (answers go back as TwiML)"
    );
    // A customer's YES is not a dispatch answer.
    let customer = hooks.reply("+4915100000011", "YES").await;
    assert!(!customer.contains("confirmed"), "{customer}");

    // Restoration releases the crew; L1's time on it counts towards their fatigue limit.
    let restored = br#"{"v":1,"event_id":"d2","fault_id":"W-1","kind":"restored","occurred_at":"2026-11-23T15:00:00Z"}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/W-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, restored.to_vec())])
        .await
        .unwrap();
    eventually("W-1's crew is released", || {
        let store = store.clone();
        async move { store.assignments().await.unwrap().is_empty() }
    })
    .await;
    let states = store.staff_states().await.unwrap();
    let hours = |id: &str| {
        states
            .iter()
            .find(|s| s.record.id.as_str() == id)
            .unwrap()
            .hours_worked
    };
    assert!(hours("L1") > 0.0, "accepted work is counted");
    assert_eq!(hours("L2"), 0.0, "a decline is not work");
    running.shutdown().await;
}

/// The daemon of `settings`, subscribed, and a client for its webhooks.
async fn start(settings: &Settings) -> (Running, Webhooks) {
    let mut running = App::build(settings.clone(), Clock::System)
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let hooks = Webhooks {
        base: format!("http://{}", running.api_addr),
        http: reqwest::Client::new(),
        sent: Default::default(),
    };
    (running, hooks)
}

/// A signed inbound SMS delivered twice (Twilio's retry, or a replay by whoever captured the
/// request) is acted on once: the daemon remembers its MessageSid.
async fn a_repeated_inbound_sms_is_acted_on_once(backend: Backend) {
    let (prefix, url, _dir, store) = database_with(backend, CUSTOMERS).await;
    let mut settings = test_settings(&prefix, &url);
    settings.channels.sms.auth_token = Secret::new(TOKEN);
    let (running, hooks) = start(&settings).await;
    let event = br#"{"v":1,"event_id":"r1","fault_id":"W-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","cause":"storm","devices":["TS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/W-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    wait_events(&store, 1).await;
    let reports = || {
        let store = store.clone();
        async move { store.report_counts(&["W-1".to_owned()]).await.unwrap() }
    };

    let out = [
        ("From", "+4915100000011"),
        ("Body", "OUT"),
        ("To", "+4915000000000"),
        ("MessageSid", "SM00000000000000000000000000000001"),
    ];
    let (status, first) = hooks.post("inbound", &out, Some("good")).await;
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("<Message>"), "{first}");
    let (status, again) = hooks.post("inbound", &out, Some("good")).await;
    assert_eq!(status, 200, "{again}");
    assert!(
        again.contains("<Response></Response>"),
        "the repeat is not answered again: {again}"
    );
    assert_eq!(reports().await, vec![("W-1".to_owned(), 1)], "counted once");

    // The same words in a new message are a new report.
    let mut next = out;
    next[3].1 = "SM00000000000000000000000000000002";
    let (status, second) = hooks.post("inbound", &next, Some("good")).await;
    assert_eq!(status, 200, "{second}");
    assert!(second.contains("<Message>"), "{second}");
    assert_eq!(reports().await, vec![("W-1".to_owned(), 2)]);

    // Without a MessageSid a message cannot be told from its repeat: refused, not counted.
    let (status, why) = hooks.post("inbound", &out[..3], Some("good")).await;
    assert_eq!(status, 400, "{why}");
    assert!(why.contains("MessageSid"), "{why}");
    assert_eq!(reports().await, vec![("W-1".to_owned(), 2)]);
    running.shutdown().await;
}

both_backends!(
    receipts_and_replies,
    staff_answer_their_dispatch_by_sms,
    a_repeated_inbound_sms_is_acted_on_once
);
