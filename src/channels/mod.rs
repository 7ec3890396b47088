//! Channels: the wire formats. A new channel is one new file here and one variant of
//! [`Transport`].

pub mod log;

use crate::domain::Channel;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Worth retrying later (timeouts, 429, 5xx, SMTP 4xx).
    #[error("transient: {0}")]
    Transient(String),
    /// This contact will not work on this channel (fall back to the next one).
    #[error("permanent: {0}")]
    Permanent(String),
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

/// The configured ways of sending.
#[derive(Debug)]
pub enum Transport {
    /// JSON lines to a file or stdout, standing in for every customer channel.
    Log(log::LogChannel),
}

impl Transport {
    /// Customer channels this transport can carry.
    pub fn carries(&self) -> Vec<Channel> {
        match self {
            Self::Log(_) => vec![Channel::Push, Channel::Sms, Channel::Email],
        }
    }

    /// Sends a batch; one result per notice, in order: the provider's id, or the error.
    pub async fn send_all(&self, batch: &[Outbound]) -> Vec<Result<String, ChannelError>> {
        match self {
            Self::Log(log) => log.send_all(batch).await,
        }
    }
}
