//! The HTTP channels over HTTP/2 (`http2_connections`), against wiremock servers that speak
//! Twilio's and FCM's APIs (wiremock serves HTTP/2 without TLS to a client that speaks it from
//! the first byte), behind a TCP proxy that counts the connections asked of it. Requests in
//! flight share the configured connections; HTTP/1.1, the default, opens one per request in
//! flight; a connection the network cuts is replaced.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fcm::{fcm, MESSAGE_NAME};
use common::{notice, Proxy};
use faultline::channels::push::PushChannel;
use faultline::channels::sms::SmsChannel;
use faultline::channels::ChannelError;
use faultline::config::{Secret, Settings};
use faultline::domain::Channel;
use tokio::task::JoinSet;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MESSAGES: &str = "/2010-04-01/Accounts/AC123/Messages.json";
/// Requests sent at once. The mocks hold every answer long enough that all are in flight
/// together, so HTTP/1.1 cannot reuse a connection among them.
const IN_FLIGHT: i64 = 24;
const HOLD: Duration = Duration::from_millis(800);

async fn twilio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        // HTTP Basic auth with account_sid:auth_token ("AC123:secret-token").
        .and(header("authorization", "Basic QUMxMjM6c2VjcmV0LXRva2Vu"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(serde_json::json!({"sid": "SM0001", "status": "queued"}))
                .set_delay(HOLD),
        )
        .mount(&server)
        .await;
    server
}

/// The SMS channel for the Twilio account `AC123` at `base_url`.
fn sms_at(base_url: String, http2_connections: u32) -> SmsChannel {
    let mut s = Settings::defaults().channels.sms;
    s.base_url = base_url;
    s.account_sid = "AC123".into();
    s.auth_token = Secret::new("secret-token");
    s.from = "+4915000000000".into();
    s.http2_connections = http2_connections;
    SmsChannel::new(&s).unwrap()
}

/// The SMS channel through `proxy`.
fn sms(proxy: &Proxy, http2_connections: u32) -> SmsChannel {
    sms_at(format!("http://{}", proxy.addr), http2_connections)
}

/// Sends `IN_FLIGHT` SMS at once; their sids.
async fn send_all(channel: SmsChannel) -> Vec<String> {
    let mut sends = JoinSet::new();
    for id in 1..=IN_FLIGHT {
        let channel = channel.clone();
        sends.spawn(async move {
            channel
                .send(&notice(id, Channel::Sms, "+4915100000001"))
                .await
        });
    }
    let mut sids = Vec::new();
    while let Some(sent) = sends.join_next().await {
        sids.push(sent.unwrap().unwrap());
    }
    sids
}

#[tokio::test]
async fn http2_carries_the_requests_in_flight_over_the_configured_connections() {
    let server = twilio().await;
    let proxy = Proxy::to(server.address().to_string()).await;
    let sids = send_all(sms(&proxy, 2)).await;
    assert_eq!(sids.len() as i64, IN_FLIGHT);
    assert!(sids.iter().all(|sid| sid == "SM0001"), "{sids:?}");
    assert_eq!(proxy.connections(), 2, "two connections, taken in turn");
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len() as i64, IN_FLIGHT);
    // The form arrived whole over HTTP/2 as over HTTP/1.1.
    let body = String::from_utf8_lossy(&received[0].body).into_owned();
    assert!(body.contains("To=%2B4915100000001"), "{body}");
    assert!(body.contains("Body=Notice+number"), "{body}");
}

#[tokio::test]
async fn http1_the_default_opens_a_connection_per_request_in_flight() {
    let server = twilio().await;
    let proxy = Proxy::to(server.address().to_string()).await;
    assert_eq!(Settings::defaults().channels.sms.http2_connections, 0);
    let sids = send_all(sms(&proxy, 0)).await;
    assert_eq!(sids.len() as i64, IN_FLIGHT);
    assert_eq!(proxy.connections() as i64, IN_FLIGHT);
}

#[tokio::test]
async fn push_over_http2_reads_fcm_answers_and_its_error_bodies() {
    let server = fcm().await;
    let proxy = Proxy::to(server.address().to_string()).await;
    let mut s = Settings::defaults().channels.push;
    s.base_url = format!("http://{}", proxy.addr);
    s.project_id = "grid-app".into();
    s.token = Secret::new("fcm-token");
    s.http2_connections = 1;
    let push = Arc::new(PushChannel::new(&s).unwrap());

    let name = push
        .send(&notice(1, Channel::Push, "tok-good"))
        .await
        .unwrap();
    assert_eq!(name, MESSAGE_NAME);
    let dead = push.send(&notice(2, Channel::Push, "tok-dead")).await;
    assert!(
        matches!(&dead, Err(ChannelError::DeadContact(_))),
        "{dead:?}"
    );
    assert_eq!(proxy.connections(), 1, "both requests on one connection");
}

#[tokio::test]
async fn http2_to_a_server_that_speaks_only_http1_is_a_transient_failure_that_says_so() {
    // A bare HTTP/1.1 server: it answers the HTTP/2 preface as a bad request and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
                )
                .await;
        }
    });
    let failed = sms_at(format!("http://{addr}"), 1)
        .send(&notice(1, Channel::Sms, "+4915100000001"))
        .await;
    let Err(ChannelError::Transient { reason, .. }) = &failed else {
        panic!("{failed:?}")
    };
    assert!(reason.starts_with("SMS provider unreachable: "), "{reason}");
    assert!(!reason.contains("AC123"), "{reason}");
}

#[tokio::test]
async fn a_cut_http2_connection_is_replaced() {
    let server = twilio().await;
    let proxy = Proxy::to(server.address().to_string()).await;
    let channel = sms(&proxy, 1);
    let first = channel
        .send(&notice(1, Channel::Sms, "+4915100000001"))
        .await;
    assert_eq!(first.unwrap(), "SM0001");
    assert_eq!(proxy.connections(), 1);

    // The network drops the connection between two sends (a provider's GOAWAY or a firewall
    // ends connections the same way for us). The next send opens another: at worst it meets
    // the dead one first and fails as transient, which delivery retries.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let sent = channel
            .send(&notice(2, Channel::Sms, "+4915100000001"))
            .await;
        let done = sent.is_ok();
        attempts.push(sent);
        if done {
            break;
        }
    }
    let last = attempts.last().unwrap();
    assert_eq!(last.as_deref().ok(), Some("SM0001"), "{attempts:?}");
    if let [Err(e), _] = attempts.as_slice() {
        assert!(matches!(e, ChannelError::Transient { .. }), "{e:?}");
    }
    assert_eq!(proxy.connections(), 2, "a new connection after the cut");
}
