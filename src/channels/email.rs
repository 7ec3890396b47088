//! E-mail over SMTP (lettre): text and HTML parts, a Message-ID derived from the notice id,
//! List-Unsubscribe.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use lettre::Message;

use super::smtp::{Relay, Security, SmtpError, SmtpPool};
use super::{ChannelError, Outbound};
use crate::config::EmailSettings;

/// Why the e-mail channel cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum EmailSetupError {
    #[error("channels.email.from: {0}")]
    From(#[from] lettre::address::AddressError),
    #[error("channels.email.host: {0}")]
    Relay(#[from] lettre::transport::smtp::Error),
}

/// An SMTP sender with a connection pool.
#[derive(Clone)]
pub struct EmailChannel {
    relay: Arc<SmtpPool>,
    from: Mailbox,
    /// Right-hand side of Message-IDs: the sender's domain.
    domain: String,
    unsubscribe_url: String,
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    pub fn new(s: &EmailSettings) -> Result<Self, EmailSetupError> {
        let from: Mailbox = s.from.parse()?;
        let security = match s.tls.as_str() {
            "tls" => Security::Implicit(TlsParameters::new(s.host.clone())?),
            "starttls" => Security::StartTls(TlsParameters::new(s.host.clone())?),
            _ => Security::None,
        };
        let relay = Relay {
            host: s.host.clone(),
            port: s.port,
            security,
            credentials: (!s.username.is_empty())
                .then(|| Credentials::new(s.username.clone(), s.password.expose().to_owned())),
            timeout: Duration::from_secs(s.timeout_secs.max(1)),
        };
        let domain = from.email.domain().to_owned();
        let unsubscribe_url = if s.unsubscribe_url.is_empty() {
            format!("mailto:{}?subject=unsubscribe", from.email)
        } else {
            s.unsubscribe_url.clone()
        };
        Ok(Self {
            // Each SMTP transaction is several round trips on one connection; keeping as many
            // connections as the pool size keeps e-mail from holding back a fan-out's window.
            relay: Arc::new(SmtpPool::new(relay, s.pool_size as usize)),
            from,
            domain,
            unsubscribe_url,
        })
    }

    /// The Message-ID of a notice: the same for every attempt, so a resend is recognisable.
    pub fn message_id(&self, notice_id: i64) -> String {
        format!("<notice-{notice_id}@{}>", self.domain)
    }

    /// Sends one e-mail; its Message-ID on success.
    pub async fn send(&self, n: &Outbound) -> Result<String, ChannelError> {
        let built = self.build(n)?;
        self.send_built(&built).await
    }

    /// Builds a notice's e-mail, MIME and all, ready to send: a fan-out builds them on the
    /// refills' runtime, off the thread that keeps the window's connections going.
    pub fn build(&self, n: &Outbound) -> Result<BuiltEmail, ChannelError> {
        let message = self.message(n)?;
        Ok(BuiltEmail {
            notice_id: n.notice_id,
            envelope: message.envelope().clone(),
            formatted: message.formatted(),
        })
    }

    /// Sends an e-mail [`Self::build`] made; its Message-ID on success.
    pub async fn send_built(&self, built: &BuiltEmail) -> Result<String, ChannelError> {
        match self.relay.send(&built.envelope, &built.formatted).await {
            Ok(()) => Ok(self.message_id(built.notice_id)),
            Err(SmtpError::Smtp(e)) => Err(classify(&e)),
            Err(e) => Err(ChannelError::transient(format!("SMTP: {e}"))),
        }
    }

    fn message(&self, n: &Outbound) -> Result<Message, ChannelError> {
        let to: Mailbox = n
            .address
            .parse()
            .map_err(|e| ChannelError::DeadContact(format!("e-mail address unusable: {e}")))?;
        let unsubscribe = self
            .unsubscribe_url
            .replace("{customer_id}", &n.customer_id);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.title.clone())
            .message_id(Some(self.message_id(n.notice_id)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{unsubscribe}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Content-Language"),
                n.language.clone(),
            ))
            .multipart(MultiPart::alternative_plain_html(
                n.body.clone(),
                html(&n.language, &n.title, &n.body),
            ))
            .map_err(|e| ChannelError::Permanent(format!("cannot build the e-mail: {e}")))
    }
}

/// A notice's e-mail as it goes on the wire.
pub struct BuiltEmail {
    notice_id: i64,
    envelope: lettre::address::Envelope,
    formatted: Vec<u8>,
}

// The envelope and the message name the recipient: never in a log.
impl std::fmt::Debug for BuiltEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltEmail")
            .field("notice_id", &self.notice_id)
            .field("bytes", &self.formatted.len())
            .finish_non_exhaustive()
    }
}

/// SMTP 4xx and connection trouble are worth retrying; 5xx is permanent, and a 5xx about the
/// mailbox (550, 551, 553) marks the address bad.
fn classify(e: &lettre::transport::smtp::Error) -> ChannelError {
    let code = e.status().map(|c| c.to_string());
    if e.is_permanent() {
        let reason = format!("SMTP {}: {e}", code.as_deref().unwrap_or("5xx"));
        return match code.as_deref() {
            Some("550" | "551" | "553") => ChannelError::DeadContact(reason),
            _ => ChannelError::Permanent(reason),
        };
    }
    ChannelError::transient(format!("SMTP: {e}"))
}

/// The HTML part: the same words as the text part, escaped, one paragraph per line.
fn html(language: &str, title: &str, body: &str) -> String {
    let paragraphs: String = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("<p>{}</p>", escape(l)))
        .collect();
    format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><h1>{}</h1>{paragraphs}</body></html>",
        escape(language),
        escape(title),
        escape(title)
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_part_is_escaped() {
        let page = html("en", "Power <out>", "A & B\n\nsecond");
        assert!(page.contains("<h1>Power &lt;out&gt;</h1>"));
        assert!(page.contains("<p>A &amp; B</p><p>second</p>"));
        assert!(page.contains("lang=\"en\""));
    }
}
