//! TLS to the broker and to the SMTP relay, with certificates from a CA made by the test
//! (openssl). The real binary trusts the system's store; `SSL_CERT_FILE` points that store at
//! the test's CA, or at another one that the server's certificate does not chain to.
//!
//! `mqtts://`: `faultline publish` to a Mosquitto of the test's own with a TLS listener, and a
//! plain listener the test subscribes on. E-mail: `faultline run` sends an outage notice by
//! STARTTLS to a real SMTP server (mailin-embedded) holding the test CA's certificate; the
//! webhook: the same notice posted to an HTTPS endpoint of the test's. PostgreSQL: `sslmode`.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::smtp::SmtpServer;
use common::tls::{certificates, https_endpoint};
use common::*;

/// A Mosquitto child process with a plain and a TLS listener, killed on drop.
struct TlsBroker {
    _child: KillOnDrop,
    plain: u16,
    tls: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// With `client_certs`, the TLS listener requires a client certificate from the test's CA.
async fn tls_broker(client_certs: bool) -> TlsBroker {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    // A free port can be taken again before Mosquitto binds it; it then exits, and we retry.
    for _ in 0..3 {
        let (plain, tls) = (free_port(), free_port());
        let mut child = spawn_mosquitto(dir.path(), plain, tls, client_certs);
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let listening = [plain, tls]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if listening {
                return TlsBroker {
                    _child: KillOnDrop(child),
                    plain,
                    tls,
                    ca: dir.path().join("ca.pem"),
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("the test's Mosquitto did not start");
}

/// Mosquitto with a plain listener on `plain` and a TLS one on `tls`, certificates from `dir`.
fn spawn_mosquitto(dir: &std::path::Path, plain: u16, tls: u16, client_certs: bool) -> Child {
    let d = dir.display();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // Run as root, Mosquitto would switch to its own user, who cannot read the test's files.
    let user = if root { "user root\n" } else { "" };
    let require = if client_certs {
        "require_certificate true\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}per_listener_settings false\nallow_anonymous true\npersistence false\n\
         listener {plain} 127.0.0.1\n\
         listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n{require}"
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed")
}

/// `faultline publish` of the sample event over `mqtts://` to `broker`, trusting `ca`.
fn publish(broker: &TlsBroker, topic: &str, ca: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.env(
        "FAULTLINE__MQTT__URL",
        format!("mqtts://localhost:{}", broker.tls),
    )
    .env("FAULTLINE__MQTT__TOPIC", topic)
    .env("SSL_CERT_FILE", ca)
    .env_remove("SSL_CERT_DIR")
    .env_remove("RUST_LOG")
    .args(["publish", "samples/events/detected-radius.json"]);
    cmd
}

/// A topic filter of the test's own, subscribed to on the broker's plain listener.
async fn subscribed(broker: &TlsBroker) -> (String, Received) {
    let topic = format!("{}/faultline/v1/events/#", unique_prefix());
    let url = format!("mqtt://127.0.0.1:{}", broker.plain);
    let received = subscribe_at(&url, &topic).await;
    (topic, received)
}

type Received = tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>;

#[tokio::test]
async fn publish_over_mqtts_trusts_the_system_store_and_refuses_an_unknown_ca() {
    let broker = tls_broker(false).await;
    let (topic, mut received) = subscribed(&broker).await;

    // The store trusts the test's CA: the event arrives.
    let out = publish(&broker, &topic, &broker.ca).output().unwrap();
    sample_event_arrives(&out, &mut received).await;

    // A store that does not know the CA: a clear error, no panic, nothing published.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let out = publish(&broker, &topic, &other.path().join("ca.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("MQTT connection failed"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "nothing arrives over an untrusted connection"
    );
}

#[tokio::test]
async fn a_broker_that_asks_for_a_client_certificate_gets_the_configured_one() {
    let broker = tls_broker(true).await;
    let (topic, mut received) = subscribed(&broker).await;

    let out = publish(&broker, &topic, &broker.ca).output().unwrap();
    assert!(!out.status.success(), "no client certificate, no session");

    let dir = broker.ca.parent().unwrap();
    let out = publish(&broker, &topic, &broker.ca)
        .env("FAULTLINE__MQTT__CLIENT_CERT", dir.join("client.pem"))
        .env("FAULTLINE__MQTT__CLIENT_KEY", dir.join("client.key"))
        .output()
        .unwrap();
    sample_event_arrives(&out, &mut received).await;
}

/// One customer, told by e-mail only, on feeder TLS-1.
const EMAIL_CUSTOMER: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    M00001,Mail Customer,11.80,53.40,,mail.customer@example.net,,en,email,,Europe/Berlin,,TLS-1,TLS-1 Bus 1\n";

/// The channel settings that send e-mail by STARTTLS to `smtp` (at `localhost`).
fn starttls_to(smtp: &SmtpServer) -> Vec<(&'static str, String)> {
    vec![
        ("FAULTLINE__CHANNELS__EMAIL__HOST", "localhost".into()),
        ("FAULTLINE__CHANNELS__EMAIL__PORT", smtp.port.to_string()),
        ("FAULTLINE__CHANNELS__EMAIL__TLS", "starttls".into()),
        (
            "FAULTLINE__CHANNELS__EMAIL__FROM",
            "Grid <outages@utility.example>".into(),
        ),
    ]
}

/// Runs the daemon with the channel settings `channels` while trusting `ca`, against a fresh
/// database of the e-mail customer, and publishes a fault on the customer's feeder until its
/// outage notice has settled; returns the notice's (state, reason).
async fn outage_notice_via(
    channels: &[(&'static str, String)],
    ca: &std::path::Path,
) -> (String, String) {
    let (prefix, url, _dir, store) = database_with(Backend::Sqlite, EMAIL_CUSTOMER).await;
    let settings = test_settings(&prefix, &url);
    let daemon = daemon_command(&settings)
        .envs(channels.iter().map(|(k, v)| (k, v)))
        .env("FAULTLINE__NOTIFY__MAX_ATTEMPTS", "1")
        .env("FAULTLINE__NOTIFY__POLL_MS", "50")
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR")
        .spawn()
        .expect("the faultline binary starts");
    let daemon = KillOnDrop(daemon);
    // Long past: the momentary delay is over, the notice goes out at once.
    let event = br#"{"v":1,"event_id":"tls","fault_id":"TLS-1","kind":"detected","occurred_at":"2026-11-23T14:00:00Z","devices":["TLS-1"]}"#;
    let topic = format!("{prefix}/faultline/v1/events/test/TLS-1");
    let settled = || async {
        let q = faultline::store::NoticeQuery {
            fault_id: Some("TLS-1".into()),
            limit: 10,
            ..Default::default()
        };
        let rows = store.search_notices(&q).await.unwrap();
        rows.into_iter()
            .find(|n| !["queued", "claimed", "sending"].contains(&n.state.as_str()))
            .map(|n| (n.state, n.reason.unwrap_or_default()))
    };
    eventually("the outage notice has settled", || async {
        // Until the daemon has subscribed, an event is lost; its id makes repeats harmless.
        let _ = faultline::ingest::publish::publish_all(
            &settings.mqtt,
            vec![(topic.clone(), event.to_vec())],
        )
        .await;
        settled().await.is_some()
    })
    .await;
    drop(daemon);
    settled().await.unwrap()
}

#[tokio::test]
async fn email_by_starttls_trusts_the_system_store_and_refuses_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let pem = |name: &str| dir.path().join(name);
    let smtp = SmtpServer::start_tls(&pem("server.pem"), &pem("server.key"), &pem("ca.pem"));

    let (state, reason) = outage_notice_via(&starttls_to(&smtp), &pem("ca.pem")).await;
    assert_eq!(state, "sent", "{reason}");
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, vec!["mail.customer@example.net".to_owned()]);

    // The relay's certificate does not chain to what the store trusts: nothing is sent.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let (state, reason) =
        outage_notice_via(&starttls_to(&smtp), &other.path().join("ca.pem")).await;
    assert_eq!(state, "failed", "{reason}");
    assert!(
        reason.starts_with("every channel failed (tried: email); last error: "),
        "{reason}"
    );
    assert!(reason.contains("certificate"), "{reason}");
    assert_eq!(smtp.received().len(), 1, "nothing more reached the relay");
}

/// The test server's URL with `sslmode` set.
fn pg_url_with_sslmode(mode: &str) -> String {
    let mut url = url::Url::parse(&pg_admin_url()).unwrap();
    url.query_pairs_mut().append_pair("sslmode", mode);
    url.to_string()
}

#[tokio::test]
async fn postgres_with_sslmode_is_encrypted_and_verified_or_refused() {
    let admin = sqlx::PgPool::connect(&pg_admin_url())
        .await
        .expect("PostgreSQL reachable (scripts/test.sh starts it)");
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&admin)
        .await
        .unwrap();
    let required = faultline::store::Store::connect(&pg_url_with_sslmode("require"), 1).await;
    if ssl != "on" {
        // A server without TLS: `require` refuses rather than falling back to plain text.
        assert!(required.is_err(), "require must not connect in plain text");
        return;
    }
    let Ok(faultline::store::Store::Postgres(pool)) = required else {
        panic!("sslmode=require connects: {:?}", required.err());
    };
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(encrypted, "the connection is encrypted");
    // Debian's clusters serve a self-signed "snakeoil" certificate, which the system store
    // does not trust: verification refuses it.
    let verified = faultline::store::Store::connect(&pg_url_with_sslmode("verify-full"), 1).await;
    let Err(error) = verified else {
        panic!("an untrusted server certificate is refused");
    };
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test]
async fn the_webhook_over_https_trusts_the_system_store_too() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (port, bodies) = https_endpoint(dir.path()).await;
    // The only transport: it carries the customer's e-mail channel.
    let webhook = vec![(
        "FAULTLINE__CHANNELS__WEBHOOK__URL",
        format!("https://localhost:{port}/notices"),
    )];

    let (state, reason) = outage_notice_via(&webhook, &dir.path().join("ca.pem")).await;
    assert_eq!(state, "sent", "{reason}");
    let posted = bodies.lock().unwrap().clone();
    assert_eq!(posted.len(), 1);
    let notice: serde_json::Value = serde_json::from_str(&posted[0]).unwrap();
    assert_eq!(notice["customer_id"], "M00001");
    assert_eq!(notice["kind"], "outage");

    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let (state, reason) = outage_notice_via(&webhook, &other.path().join("ca.pem")).await;
    assert_eq!(state, "failed", "{reason}");
    assert!(reason.contains("certificate"), "{reason}");
    assert_eq!(bodies.lock().unwrap().len(), 1, "nothing more was posted");
}
