//! `mqtts://`: the real binary publishes over TLS to a Mosquitto of the test's own, which has a
//! TLS listener with a certificate from a CA made by the test (openssl), and a plain listener
//! the test subscribes on. The binary trusts the system's store; `SSL_CERT_FILE` points that
//! store at the test's CA.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// A Mosquitto child process with a plain and a TLS listener, killed on drop.
struct TlsBroker {
    child: Child,
    plain: u16,
    tls: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a certificate it signed for localhost and 127.0.0.1.
fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=faultline test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-nodes"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn tls_broker() -> TlsBroker {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (plain, tls) = (free_port(), free_port());
    let d = dir.path().display();
    // Run as root, Mosquitto would switch to its own user, who cannot read the test's files.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}per_listener_settings false\nallow_anonymous true\npersistence false\n\
         listener {plain} 127.0.0.1\n\
         listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    );
    std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.path().join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed");
    let broker = TlsBroker {
        child,
        plain,
        tls,
        ca: dir.path().join("ca.pem"),
        _dir: dir,
    };
    eventually("the test's Mosquitto listens", || async {
        [plain, tls]
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
    })
    .await;
    broker
}

fn publish(broker: &TlsBroker, topic: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.env(
        "FAULTLINE__MQTT__URL",
        format!("mqtts://localhost:{}", broker.tls),
    )
    .env("FAULTLINE__MQTT__TOPIC", topic)
    .env_remove("RUST_LOG")
    .env_remove("SSL_CERT_DIR")
    .args(["publish", "samples/events/detected-radius.json"]);
    cmd
}

#[tokio::test]
async fn publish_over_mqtts_trusts_the_system_store_and_refuses_an_unknown_ca() {
    let broker = tls_broker().await;
    let prefix = unique_prefix();
    let topic = format!("{prefix}/faultline/v1/events/#");
    let mut received = subscribe_at(&format!("mqtt://127.0.0.1:{}", broker.plain), &topic).await;

    // The store trusts the test's CA: the event arrives.
    let out = publish(&broker, &topic)
        .env("SSL_CERT_FILE", &broker.ca)
        .output()
        .unwrap();
    sample_event_arrives(&out, &mut received).await;

    // A store that does not know the CA: a clear error, no panic, nothing published.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let out = publish(&broker, &topic)
        .env("SSL_CERT_FILE", other.path().join("ca.pem"))
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
