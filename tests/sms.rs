//! SMS through a wiremock server that speaks the Twilio Messages API, including its error
//! bodies: accepted messages keep their sid; 429 with Retry-After is retried; an invalid number
//! (21211) falls back to the customer's next channel.

mod common;

use std::time::Duration;

use common::*;
use faultline::app::App;
use faultline::clock::Clock;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MESSAGES: &str = "/2010-04-01/Accounts/AC123/Messages.json";

const CUSTOMERS: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    S1,A. Accept,11.80,53.40,+4915100000001,s1@example.net,,de,sms|email,,Europe/Berlin,,TS-1,TS-1 Bus 1\n\
    S2,B. Bad,11.80,53.40,+4915100000002,s2@example.net,,en,sms|email,,Europe/Berlin,,TS-1,TS-1 Bus 2\n\
    S3,C. Busy,11.80,53.40,+4915100000003,,,ru,sms,,Europe/Berlin,,TS-1,TS-1 Bus 3\n";

async fn twilio() -> MockServer {
    let server = MockServer::start().await;
    let to = |n: &str| body_string_contains(format!("To=%2B491510000000{n}"));
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(to("2"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "code": 21211, "message": "The 'To' number +4915100000002 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(to("3"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(serde_json::json!({
            "code": 20429, "message": "Too Many Requests", "status": 429})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        // HTTP Basic auth with account_sid:auth_token ("AC123:secret-token").
        .and(header("authorization", "Basic QUMxMjM6c2VjcmV0LXRva2Vu"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(serde_json::json!({"sid": "SM0001", "status": "queued"})),
        )
        .with_priority(5)
        .mount(&server)
        .await;
    server
}

async fn sms_retries_and_falls_back(backend: Backend) {
    let server = twilio().await;
    let (prefix, url, dir, store) = database_with(backend, CUSTOMERS).await;
    let mut settings = test_settings(&prefix, &url);
    settings.channels.sms.base_url = server.uri();
    settings.channels.sms.account_sid = "AC123".into();
    settings.channels.sms.auth_token = faultline::config::Secret::new("secret-token");
    settings.channels.sms.from = "+4915000000000".into();
    settings.channels.log.path = dir
        .path()
        .join("other-channels.jsonl")
        .display()
        .to_string();
    settings.notify.poll_ms = 50;
    settings.notify.retry_base_ms = 100;
    let mut running = App::build(settings.clone(), Clock::System)
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let event = br#"{"v":1,"event_id":"s1","fault_id":"S-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["TS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/S-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    wait_for_notices(&store, "S-1", "outage", "sent", 3).await;
    running.shutdown().await;

    let s1 = &store.notices_of("S1", "outage").await.unwrap()[0];
    assert_eq!(
        (
            s1.channel.as_deref(),
            s1.provider_id.as_deref(),
            s1.attempts
        ),
        (Some("sms"), Some("SM0001"), 1)
    );
    let s2 = &store.notices_of("S2", "outage").await.unwrap()[0];
    assert_eq!(
        (s2.channel.as_deref(), s2.failed_channels.as_str()),
        (Some("email"), "sms"),
        "fell back to e-mail"
    );
    let s3 = &store.notices_of("S3", "outage").await.unwrap()[0];
    assert_eq!(
        (s3.channel.as_deref(), s3.attempts),
        (Some("sms"), 2),
        "retried after 429"
    );

    let requests = server.received_requests().await.unwrap();
    let to_s3: Vec<_> = requests
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("To=%2B4915100000003"))
        .collect();
    assert_eq!(to_s3.len(), 2);
    let body = String::from_utf8_lossy(&requests[0].body).to_string();
    assert!(
        body.contains("From=%2B4915000000000") && body.contains("Body="),
        "{body}"
    );
    let logged = std::fs::read_to_string(dir.path().join("other-channels.jsonl")).unwrap();
    assert!(logged.contains("\"customer_id\":\"S2\"") && logged.contains("\"channel\":\"email\""));
    assert!(!logged.contains("s2@example.net"), "the address is masked");
}

both_backends!(sms_retries_and_falls_back);
