//! A real SMTP server for tests (mailin-embedded, on its own thread and port 0). It keeps every
//! message it accepts and refuses recipients whose address starts with `bounce` (550) or
//! `later` (451, once per address).

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use mailin_embedded::response::{INTERNAL_ERROR, NO_MAILBOX, OK};
use mailin_embedded::{Handler, Response, Server, SslConfig};

/// A message as received: envelope recipients and the raw RFC 5322 text.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<Received>>>,
    deferred: Arc<Mutex<HashSet<String>>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Sink {
    fn rcpt(&mut self, to: &str) -> Response {
        if to.starts_with("bounce") {
            return NO_MAILBOX;
        }
        if to.starts_with("later") && self.deferred.lock().unwrap().insert(to.to_owned()) {
            return INTERNAL_ERROR;
        }
        OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.received.lock().unwrap().push(Received {
            to: std::mem::take(&mut self.to),
            data: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
        });
        OK
    }
}

/// A running SMTP server.
pub struct SmtpServer {
    pub port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        Self::start_with(SslConfig::None)
    }

    /// A server that offers STARTTLS with the certificate `cert` (key `key`, CA chain `chain`).
    pub fn start_tls(cert: &Path, key: &Path, chain: &Path) -> SmtpServer {
        // mailin-embedded builds its rustls config with the process default provider, which
        // rustls cannot choose by itself here: the test build has both ring and aws-lc (the
        // latter from mailin-embedded's own rustls features). An Err only means a provider
        // was installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let path = |p: &Path| p.display().to_string();
        Self::start_with(SslConfig::Trusted {
            cert_path: path(cert),
            key_path: path(key),
            chain_path: path(chain),
        })
    }

    fn start_with(ssl: SslConfig) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = Sink::default();
        let received = sink.received.clone();
        let mut server = Server::new(sink);
        server
            .with_name("smtp.test")
            .with_ssl(ssl)
            .unwrap()
            .with_num_threads(4)
            .with_tcp_listener(listener);
        // The thread ends with the test process.
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer { port, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}
