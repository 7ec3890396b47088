//! Push (a wiremock server speaking FCM HTTP v1, error bodies included), e-mail (a real SMTP
//! server) and the generic webhook, with each channel's permanent errors falling back to the
//! customer's next channel and marking the bad contact.

mod common;

use std::time::Duration;

use common::fcm::{fcm, SEND};
use common::smtp::SmtpServer;
use common::*;
use faultline::app::App;
use faultline::clock::Clock;
use faultline::config::Secret;
use hmac::{Hmac, Mac};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// P1 push works; P2's push token is dead (falls back to e-mail); P3's mailbox bounces (falls
/// back to SMS, carried by the webhook); P4's webhook call fails once with 503 (retried); P5's
/// mail server defers once with 451 (retried).
const CUSTOMERS: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    P1,A. Push,11.80,53.40,,p1@example.net,tok-good,de,push|email,,Europe/Berlin,,TS-1,TS-1 Bus 1\n\
    P2,B. Dead,11.80,53.40,,p2@example.net,tok-dead,en,push|email,,Europe/Berlin,,TS-1,TS-1 Bus 2\n\
    P3,C. Bounce,11.80,53.40,+4915100000003,bounce@example.net,,ru,email|sms,,Europe/Berlin,,TS-1,TS-1 Bus 3\n\
    P4,D. Hook,11.80,53.40,+4915100000004,,,zh,sms,,Europe/Berlin,,TS-1,TS-1 Bus 4\n\
    P5,E. Later,11.80,53.40,,later@example.net,,fr,email,,Europe/Berlin,,TS-1,TS-1 Bus 5\n";

async fn hook() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("+4915100000004"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202).set_body_json(serde_json::json!({"id": "hook-1"})))
        .with_priority(5)
        .mount(&server)
        .await;
    server
}

async fn push_email_webhook(backend: Backend) {
    let (push, webhook, smtp) = (fcm().await, hook().await, SmtpServer::start());
    let (prefix, url, _dir, store) = database_with(backend, CUSTOMERS).await;
    let mut settings = test_settings(&prefix, &url);
    settings.channels.push.base_url = push.uri();
    settings.channels.push.project_id = "grid-app".into();
    settings.channels.push.token = Secret::new("fcm-token");
    settings.channels.email.host = "127.0.0.1".into();
    settings.channels.email.port = smtp.port;
    settings.channels.email.tls = "none".into();
    settings.channels.email.from = "Grid Notices <outages@utility.example>".into();
    settings.channels.email.unsubscribe_url =
        "https://utility.example/unsubscribe/{customer_id}".into();
    settings.channels.webhook.url = format!("{}/notices", webhook.uri());
    settings.channels.webhook.secret = Secret::new("hook-secret");
    settings.notify.poll_ms = 50;
    settings.notify.retry_base_ms = 100;
    let mut running = App::build(settings.clone(), Clock::System)
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let event = br#"{"v":1,"event_id":"c1","fault_id":"C-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["TS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/C-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    wait_for_notices(&store, "C-1", "outage", "sent", 5).await;
    running.shutdown().await;

    let notice = |id: &'static str| {
        let store = store.clone();
        async move { store.notices_of(id, "outage").await.unwrap().remove(0) }
    };
    let p1 = notice("P1").await;
    assert_eq!(p1.channel.as_deref(), Some("push"));
    assert!(p1
        .provider_id
        .unwrap()
        .starts_with("projects/grid-app/messages/"));
    let p2 = notice("P2").await;
    assert_eq!(
        (p2.channel.as_deref(), p2.failed_channels.as_str()),
        (Some("email"), "push")
    );
    let p3 = notice("P3").await;
    assert_eq!(
        (p3.channel.as_deref(), p3.failed_channels.as_str()),
        (Some("sms"), "email")
    );
    assert_eq!(p3.provider_id.as_deref(), Some("hook-1"));
    let p4 = notice("P4").await;
    assert_eq!(
        (p4.channel.as_deref(), p4.attempts),
        (Some("sms"), 2),
        "503 retried"
    );
    let p5 = notice("P5").await;
    assert_eq!(
        (p5.channel.as_deref(), p5.attempts),
        (Some("email"), 2),
        "SMTP 451 retried"
    );

    // Bad contacts are remembered: P2's dead token is forgotten, P3's mailbox is marked.
    let contacts = store
        .contacts(&["P2".to_owned(), "P3".to_owned()])
        .await
        .unwrap();
    let p2c = contacts.iter().find(|c| c.customer_id == "P2").unwrap();
    assert_eq!(p2c.push_token, None);
    let p3c = contacts.iter().find(|c| c.customer_id == "P3").unwrap();
    assert_eq!(
        p3c.email, None,
        "the bounced address is skipped from now on"
    );

    check_fcm_request(&push).await;
    check_emails(&smtp, p2.id);
    check_webhook(&webhook, p4.id).await;
}

async fn check_fcm_request(push: &MockServer) {
    let requests = push.received_requests().await.unwrap();
    let good = requests
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
        .find(|b| b["message"]["token"] == "tok-good")
        .expect("a push to P1");
    assert_eq!(good["message"]["android"]["priority"], "high");
    assert_eq!(good["message"]["data"]["fault_id"], "C-1");
    assert_eq!(good["message"]["data"]["kind"], "outage");
    assert_eq!(
        good["message"]["notification"]["title"],
        "Stromausfall an Ihrer Adresse"
    );
}

fn check_emails(smtp: &SmtpServer, p2_notice: i64) {
    let mails = smtp.received();
    let to_p2 = mails
        .iter()
        .find(|m| m.to.iter().any(|t| t.contains("p2@example.net")))
        .expect("P2's fallback e-mail");
    let data = &to_p2.data;
    assert!(
        data.contains(&format!("Message-ID: <notice-{p2_notice}@utility.example>")),
        "{data}"
    );
    assert!(
        data.contains("List-Unsubscribe: <https://utility.example/unsubscribe/P2>"),
        "{data}"
    );
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(
        data.contains("text/plain") && data.contains("text/html"),
        "{data}"
    );
    assert!(data.contains("Content-Language: en"), "{data}");
    assert!(
        data.contains("Subject: Power outage at your address"),
        "{data}"
    );
    let to_p5 = mails
        .iter()
        .find(|m| m.to.iter().any(|t| t.contains("later@example.net")))
        .expect("P5's e-mail after the 451");
    assert!(
        to_p5.data.contains("Content-Language: en"),
        "fr falls back to en"
    );
    assert!(!mails
        .iter()
        .any(|m| m.to.iter().any(|t| t.contains("bounce"))));
}

async fn check_webhook(webhook: &MockServer, p4_notice: i64) {
    let requests = webhook.received_requests().await.unwrap();
    let to_p4: Vec<_> = requests
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("+4915100000004"))
        .collect();
    assert_eq!(to_p4.len(), 2, "one 503, one accepted");
    for r in &to_p4 {
        assert_eq!(
            r.headers.get("idempotency-key").unwrap().to_str().unwrap(),
            p4_notice.to_string(),
            "the same key on the retry"
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"hook-secret").unwrap();
        mac.update(&r.body);
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            r.headers
                .get("x-faultline-signature")
                .unwrap()
                .to_str()
                .unwrap(),
            format!("sha256={want}")
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&to_p4[1].body).unwrap();
    assert_eq!(
        (body["channel"].as_str(), body["language"].as_str()),
        (Some("sms"), Some("zh"))
    );
}

/// Push with a Google service account: the daemon signs a JWT with the account's key (checked
/// here with the public half), exchanges it for a token once, and uses it for every send.
async fn push_with_a_service_account(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "minted-1", "expires_in": 3600, "token_type": "Bearer"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(header("authorization", "Bearer minted-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"name": "projects/grid-app/messages/1"})),
        )
        .mount(&server)
        .await;
    let (prefix, url, dir, store) = database_with(backend, CUSTOMERS).await;
    let token_uri = format!("{}/token", server.uri());
    let key_file = dir.path().join("service-account.json");
    let fixture = include_str!("fixtures/fcm-test-service-account.json");
    std::fs::write(
        &key_file,
        fixture.replace("TOKEN_URI_SET_BY_TEST", &token_uri),
    )
    .unwrap();
    let mut settings = test_settings(&prefix, &url);
    settings.channels.push.base_url = server.uri();
    settings.channels.push.project_id = "grid-app".into();
    settings.channels.push.service_account_file = key_file.display().to_string();
    settings.channels.log.path = dir.path().join("other.jsonl").display().to_string();
    settings.notify.poll_ms = 50;
    let mut running = App::build(settings.clone(), Clock::System)
        .await
        .unwrap()
        .start()
        .unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let event = br#"{"v":1,"event_id":"sa1","fault_id":"SA-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["TS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/SA-1");
    faultline::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.to_vec())])
        .await
        .unwrap();
    wait_for_notices(&store, "SA-1", "outage", "sent", 5).await;
    running.shutdown().await;
    assert_eq!(
        store.notices_of("P2", "outage").await.unwrap()[0]
            .channel
            .as_deref(),
        Some("push"),
        "tok-dead is fine for this server"
    );

    let requests = server.received_requests().await.unwrap();
    let grants: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/token")
        .collect();
    assert_eq!(grants.len(), 1, "one token for every send");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&grants[0].body)
        .into_owned()
        .collect();
    let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;
    let public =
        jsonwebtoken::DecodingKey::from_rsa_pem(include_bytes!("fixtures/fcm-test-public.pem"))
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[token_uri.as_str()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(assertion, &public, &validation)
        .unwrap()
        .claims;
    assert_eq!(
        claims["iss"],
        "faultline-test@grid-app.iam.gserviceaccount.com"
    );
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
}

both_backends!(push_email_webhook, push_with_a_service_account);
