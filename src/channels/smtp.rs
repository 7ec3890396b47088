//! SMTP connections kept open between messages, built on lettre's `AsyncSmtpConnection`.
//!
//! lettre's own pool costs an e-mail more round trips than the message needs. It tests every
//! connection it hands out with a `NOOP`: one round trip in five per message, during a fan-out
//! when the connection was in use a moment ago. It also connects without `TCP_NODELAY`, so the
//! closing `.` (a write of its own after the body) waits for the relay to acknowledge the body.
//! The relay has nothing to say yet, so it waits out its delayed-ACK timer. This pool tests
//! only connections that sat idle for a while, and it sets `TCP_NODELAY` on plain and STARTTLS
//! connections. Implicit TLS goes through lettre's own connect, whose socket we cannot reach.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};

/// Why a message did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The relay refused, or the conversation failed (lettre tells transient from permanent).
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("cannot reach the SMTP relay: {0}")]
    Connect(#[from] std::io::Error),
    #[error("the SMTP relay did not answer in time")]
    TimedOut,
}

/// A connection used within this long is handed out without a test: a relay does not drop a
/// connection seconds after a reply (Postfix waits 300 s, RFC 5321 asks for at least 5 min).
const FRESH: Duration = Duration::from_secs(5);
/// A connection idle this long is closed rather than tested.
const STALE: Duration = Duration::from_secs(120);

/// How the connection is secured.
#[derive(Clone)]
pub enum Security {
    /// Plain SMTP: a relay on the same host, or a test server.
    None,
    /// `STARTTLS` after the greeting, required.
    StartTls(TlsParameters),
    /// TLS from the first byte (SMTPS).
    Implicit(TlsParameters),
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub credentials: Option<Credentials>,
    /// Bounds each whole message, connecting included.
    pub timeout: Duration,
}

/// An idle connection and when it was last used.
struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// Connections to one relay, at most `max_idle` kept between messages.
pub struct SmtpPool {
    relay: Relay,
    hello: ClientId,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl SmtpPool {
    pub fn new(relay: Relay, max_idle: usize) -> Self {
        Self {
            relay,
            hello: ClientId::default(),
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one message (`raw`: the formatted e-mail). Like lettre, a connection whose
    /// transaction failed in any way is closed, not reused (the relay may be mid-transaction).
    pub async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), SmtpError> {
        let work = async {
            let (mut conn, reused) = self.checkout().await?;
            let mut mailed = conn.command(mail_from(envelope, raw)).await;
            // A relay drops connections it held idle or that carried its limit of messages
            // (421 to MAIL); lettre's NOOP before every message found those. Nothing was
            // accepted yet, so once more on a fresh connection.
            if reused && mailed.as_ref().is_err_and(|e| !e.is_permanent()) {
                conn.abort().await;
                conn = self.connect().await?;
                mailed = conn.command(mail_from(envelope, raw)).await;
            }
            let sent = match mailed {
                Ok(_) => deliver(&mut conn, envelope, raw).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => self.checkin(conn),
                Err(_) => conn.abort().await,
            }
            Ok(sent?)
        };
        tokio::time::timeout(self.relay.timeout, work)
            .await
            .unwrap_or(Err(SmtpError::TimedOut))
    }

    /// A pooled connection (tested first if it sat idle) and `true`, or a new one and `false`.
    async fn checkout(&self) -> Result<(AsyncSmtpConnection, bool), SmtpError> {
        loop {
            let idle = self.lock().pop();
            let Some(Idle { mut conn, since }) = idle else {
                return Ok((self.connect().await?, false));
            };
            let age = since.elapsed();
            if age < FRESH || (age < STALE && conn.test_connected().await) {
                return Ok((conn, true));
            }
            conn.abort().await;
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A panic while holding the lock cannot leave the list half-changed (push and pop only).
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connects, reads the greeting and says EHLO, secures the connection, authenticates.
    /// Only [`SmtpPool::send`] calls it, inside its timeout for the whole message.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpError> {
        let relay = &self.relay;
        let mut conn = match &relay.security {
            Security::Implicit(tls) => {
                let server = (relay.host.as_str(), relay.port);
                AsyncSmtpConnection::connect_tokio1(
                    server,
                    Some(relay.timeout),
                    &self.hello,
                    Some(tls.clone()),
                    None,
                )
                .await?
            }
            Security::None | Security::StartTls(_) => {
                let tcp = tokio::net::TcpStream::connect((relay.host.as_str(), relay.port)).await?;
                tcp.set_nodelay(true)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?
            }
        };
        if let Security::StartTls(tls) = &relay.security {
            conn.starttls(tls.clone(), &self.hello).await?;
        }
        if let Some(credentials) = &relay.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(conn)
    }
}

/// `MAIL FROM` with the parameters the message needs (as lettre's own `send` adds them).
fn mail_from(envelope: &Envelope, raw: &[u8]) -> Mail {
    let mut parameters = Vec::new();
    let non_ascii = |a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii();
    if envelope.from().is_some_and(non_ascii) || envelope.to().iter().any(non_ascii) {
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !raw.is_ascii() {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Mail::new(envelope.from().cloned(), parameters)
}

/// The rest of the transaction after `MAIL FROM`: recipients, `DATA`, the message.
async fn deliver(
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    raw: &[u8],
) -> Result<(), lettre::transport::smtp::Error> {
    for to in envelope.to() {
        conn.command(Rcpt::new(to.clone(), Vec::new())).await?;
    }
    conn.command(Data).await?;
    conn.message(raw).await?;
    Ok(())
}
