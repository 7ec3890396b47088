//! Certificates for TLS tests, made by the openssl command line, and an HTTPS endpoint that
//! serves with them.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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

/// A new P-256 key for each certificate: quick to make.
const EC_KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// In `dir`: a CA (`ca.pem`, `ca.key`), a certificate it signed for localhost and 127.0.0.1
/// (`server.pem`, `server.key`), and a client certificate it signed (`client.pem`,
/// `client.key`).
pub fn certificates(dir: &Path) {
    let mut ca = vec!["req", "-x509", "-nodes", "-days", "2"];
    ca.extend(EC_KEY);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=faultline test CA",
    ]);
    openssl(dir, &ca);
    signed(
        dir,
        "server",
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    );
    signed(
        dir,
        "client",
        "/CN=faultline",
        "extendedKeyUsage=clientAuth",
    );
}

/// `{name}.pem` and `{name}.key` in `dir`: a certificate for `subject` with the extension
/// `ext`, signed by the CA in `dir`.
fn signed(dir: &Path, name: &str, subject: &str, ext: &str) {
    let (key, csr, pem, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    let mut request = vec!["req", "-nodes"];
    request.extend(EC_KEY);
    request.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &request);
    std::fs::write(dir.join(&cnf), format!("{ext}\n")).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &cnf,
            "-out",
            &pem,
        ],
    );
}

/// An HTTPS endpoint on 127.0.0.1 with `dir`'s server certificate: it answers every request
/// `200` and keeps each request's body. Returns its port and the bodies.
pub async fn https_endpoint(dir: &Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    let certs = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, kept) = (acceptor.clone(), kept.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = serve(tls, kept).await;
                }
            });
        }
    });
    (port, bodies)
}

/// HTTP/1.1 with `Content-Length` bodies, keep-alive, every answer `200`.
async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    kept: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut conn = BufReader::new(tls);
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;
        kept.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        conn.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}
