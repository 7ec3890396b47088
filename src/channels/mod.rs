//! Channels: the wire formats. A new channel is one new file here, one field of [`Transports`]
//! and one arm of [`Transports::route`].

pub mod email;
mod http;
pub mod limit;
pub mod log;
pub mod oauth;
pub mod push;
pub mod sms;
pub mod smtp;
pub mod webhook;

use crate::config::ChannelsSettings;
use crate::domain::Channel;
use limit::RateLimit;

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
    /// This notice cannot go out on this channel (fall back to the next one); the contact itself
    /// may be fine (e.g. our credentials were refused).
    #[error("permanent: {0}")]
    Permanent(String),
    /// The contact is bad (invalid or STOP'd number, dead push token, unknown mailbox): fall back,
    /// and remember it so later notices skip it.
    #[error("bad contact: {0}")]
    DeadContact(String),
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

/// Why the channels cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot set up an HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Email(#[from] email::EmailSetupError),
    #[error("{key}: not a URL: {reason}")]
    Url { key: &'static str, reason: String },
    #[error("channels.push.service_account_file: {0}")]
    ServiceAccount(#[from] oauth::ServiceAccountError),
}

/// A transport with its rate limit.
#[derive(Debug)]
pub struct Limited<T> {
    pub transport: T,
    limit: Option<RateLimit>,
}

impl<T> Limited<T> {
    pub fn new(transport: T, max_per_second: f64) -> Self {
        Self {
            transport,
            limit: RateLimit::new(max_per_second),
        }
    }

    async fn ready(&self) -> &T {
        if let Some(limit) = &self.limit {
            limit.acquire().await;
        }
        &self.transport
    }
}

/// The configured ways of sending. A customer channel with its own transport uses it; the
/// webhook, then the log channel, stand in for channels that have none.
#[derive(Debug, Default)]
pub struct Transports {
    pub sms: Option<Limited<sms::SmsChannel>>,
    pub push: Option<Limited<push::PushChannel>>,
    pub email: Option<Limited<email::EmailChannel>>,
    pub webhook: Option<Limited<webhook::WebhookChannel>>,
    pub log: Option<log::LogChannel>,
}

/// Which transport carries a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Sms,
    Push,
    Email,
    Webhook,
    Log,
    None,
}

impl Transports {
    /// Every transport that has configuration.
    pub fn from_settings(c: &ChannelsSettings) -> Result<Self, SetupError> {
        let mut t = Self::default();
        if !c.sms.base_url.is_empty() {
            t.sms = Some(Limited::new(
                sms::SmsChannel::new(&c.sms)?,
                c.sms.max_per_second,
            ));
        }
        if !c.push.base_url.is_empty() {
            t.push = Some(Limited::new(
                push::PushChannel::new(&c.push)?,
                c.push.max_per_second,
            ));
        }
        if !c.email.host.is_empty() {
            t.email = Some(Limited::new(
                email::EmailChannel::new(&c.email)?,
                c.email.max_per_second,
            ));
        }
        if !c.webhook.url.is_empty() {
            t.webhook = Some(Limited::new(
                webhook::WebhookChannel::new(&c.webhook)?,
                c.webhook.max_per_second,
            ));
        }
        if !c.log.path.is_empty() {
            t.log = Some(log::LogChannel::new(&c.log.path));
        }
        Ok(t)
    }

    pub fn is_empty(&self) -> bool {
        Channel::ALL.iter().all(|&c| self.route(c) == Route::None)
    }

    /// Customer channels that can be sent on.
    pub fn carries(&self) -> Vec<Channel> {
        Channel::ALL
            .into_iter()
            .filter(|&c| self.route(c) != Route::None)
            .collect()
    }

    fn route(&self, channel: Channel) -> Route {
        match channel {
            Channel::Sms if self.sms.is_some() => Route::Sms,
            Channel::Push if self.push.is_some() => Route::Push,
            Channel::Email if self.email.is_some() => Route::Email,
            _ if self.webhook.is_some() => Route::Webhook,
            _ if self.log.is_some() => Route::Log,
            _ => Route::None,
        }
    }

    /// Builds the e-mail of a notice routed to the e-mail transport (see
    /// [`email::EmailChannel::build`]); `None` for any other route.
    pub fn build_email(&self, n: &Outbound) -> Option<Result<email::BuiltEmail, ChannelError>> {
        match self.route(n.channel) {
            Route::Email => self.email.as_ref().map(|e| e.transport.build(n)),
            _ => None,
        }
    }

    /// Sends an e-mail [`Self::build_email`] built, after the e-mail rate limit allows it.
    pub async fn send_built_email(
        &self,
        built: Result<email::BuiltEmail, ChannelError>,
    ) -> Result<String, ChannelError> {
        let email = self
            .email
            .as_ref()
            .ok_or_else(|| ChannelError::Permanent("channel not configured".into()))?;
        email.ready().await.send_built(&built?).await
    }

    /// Writes notices routed to the log channel as one write and one fsync; one result per
    /// notice, in order.
    pub async fn send_logged(&self, batch: &[Outbound]) -> Vec<Result<String, ChannelError>> {
        match &self.log {
            Some(log) => log.send_all(batch).await,
            None => batch
                .iter()
                .map(|_| Err(ChannelError::Permanent("channel not configured".into())))
                .collect(),
        }
    }

    /// Whether notices on `channel` go to the log channel (which takes batches, one fsync each).
    pub fn is_logged(&self, channel: Channel) -> bool {
        self.route(channel) == Route::Log
    }

    /// Sends one notice on its channel's own transport or the webhook (not the log channel),
    /// after the channel's rate limit allows it.
    pub async fn send_one(&self, n: &Outbound) -> Result<String, ChannelError> {
        let missing = || ChannelError::Permanent("channel not configured".into());
        match self.route(n.channel) {
            Route::Sms => {
                self.sms
                    .as_ref()
                    .ok_or_else(missing)?
                    .ready()
                    .await
                    .send(n)
                    .await
            }
            Route::Push => {
                self.push
                    .as_ref()
                    .ok_or_else(missing)?
                    .ready()
                    .await
                    .send(n)
                    .await
            }
            Route::Email => {
                self.email
                    .as_ref()
                    .ok_or_else(missing)?
                    .ready()
                    .await
                    .send(n)
                    .await
            }
            Route::Webhook => {
                let webhook = self.webhook.as_ref().ok_or_else(missing)?;
                webhook.ready().await.send(n).await
            }
            Route::Log | Route::None => Err(missing()),
        }
    }
}
