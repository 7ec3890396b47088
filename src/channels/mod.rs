//! Channels: the wire formats. A new channel is one new file here and one variant of
//! [`Transport`].

pub mod log;
pub mod sms;

use crate::domain::Channel;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Worth retrying later (timeouts, 429, 5xx, SMTP 4xx), not before `retry_after` when the
    /// provider said so.
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<std::time::Duration>,
    },
    /// This contact will not work on this channel (fall back to the next one).
    #[error("permanent: {0}")]
    Permanent(String),
}

impl ChannelError {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// One notice ready to go out.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub notice_id: i64,
    pub customer_id: String,
    pub fault_id: String,
    pub kind: String,
    pub channel: Channel,
    /// Phone, e-mail address or push token: never logged unmasked.
    pub address: String,
    pub language: String,
    pub title: String,
    pub body: String,
}

/// The configured ways of sending. The log channel, when configured, stands in for every
/// customer channel that has no transport of its own.
#[derive(Debug, Default)]
pub struct Transports {
    pub sms: Option<sms::SmsChannel>,
    pub log: Option<log::LogChannel>,
}

impl Transports {
    pub fn is_empty(&self) -> bool {
        self.sms.is_none() && self.log.is_none()
    }

    /// Customer channels that can be sent on.
    pub fn carries(&self) -> Vec<Channel> {
        [Channel::Push, Channel::Sms, Channel::Email]
            .into_iter()
            .filter(|&c| self.log.is_some() || (c == Channel::Sms && self.sms.is_some()))
            .collect()
    }

    /// Sends a batch; one result per notice, in order: the provider's id, or the error.
    pub async fn send_all(&self, batch: &[Outbound]) -> Vec<Result<String, ChannelError>> {
        let mut results: Vec<Option<Result<String, ChannelError>>> =
            batch.iter().map(|_| None).collect();
        let mut to_log = Vec::new();
        for (i, n) in batch.iter().enumerate() {
            match (&self.sms, n.channel) {
                (Some(sms), Channel::Sms) => results[i] = Some(sms.send(n).await),
                _ => to_log.push(i),
            }
        }
        if !to_log.is_empty() {
            let lines: Vec<Outbound> = to_log.iter().map(|&i| batch[i].clone()).collect();
            let logged = match &self.log {
                Some(log) => log.send_all(&lines).await,
                None => lines
                    .iter()
                    .map(|_| Err(ChannelError::Permanent("channel not configured".into())))
                    .collect(),
            };
            for (i, r) in to_log.into_iter().zip(logged) {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ChannelError::transient("not attempted"))))
            .collect()
    }
}
