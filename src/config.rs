//! Layered configuration: built-in defaults, `config/default.toml`, an optional file, then
//! `FAULTLINE__SECTION__KEY` environment variables. Validation names the offending key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shipped, documented defaults. Compiled in so the binary runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// More HTTP/2 connections than this to one provider would be HTTP/1.1 by another name.
const MAX_HTTP2_CONNECTIONS: u32 = 64;

/// What a QoS 1 publish holds besides its payload, at most: the topic (up to 65,535 bytes)
/// with its length, and the packet id.
const MQTT_PUBLISH_OVERHEAD: usize = 2 + 65_535 + 2;

/// The largest packet MQTT can express (its remaining length field tops out here).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// Why configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// A value that must never be printed: `Debug` and `Serialize` show `***` when it is set.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The real value, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// The whole effective configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub mqtt: MqttSettings,
    pub ingest: IngestSettings,
    pub mapping: MappingSettings,
    pub status: StatusSettings,
    pub api: ApiSettings,
    pub notify: NotifySettings,
    pub retention: RetentionSettings,
    pub schedule: ScheduleSettings,
    pub channels: ChannelsSettings,
    pub staffing: crate::staffing::settings::StaffingSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseSettings {
    /// Holds a password for PostgreSQL, hence a secret as a whole; `config` prints it masked.
    pub url: Secret,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MqttSettings {
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// PEM file of a client certificate (and its chain) for `mqtts://`; empty: none.
    pub client_cert: String,
    /// PEM file of that certificate's private key.
    pub client_key: String,
    pub client_id: String,
    pub topic: String,
    pub deadletter_topic: String,
    pub status_topic: String,
    pub embedded: bool,
    pub keep_alive_secs: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Largest MQTT packet the daemon reads or writes; well above `ingest.max_payload_bytes`,
    /// so that an oversized event is read and rejected instead of breaking the connection.
    pub max_packet_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IngestSettings {
    pub max_payload_bytes: usize,
    pub max_vertices: usize,
    pub batch_size: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MappingSettings {
    pub reload_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StatusSettings {
    pub min_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiSettings {
    pub bind: String,
    pub public_url: String,
    /// Self-service requests a second per client address (public, unauthenticated routes).
    pub public_rate_per_sec: f64,
    /// Self-service requests a client may make at once before the rate applies.
    pub public_burst: f64,
    /// Largest request body (customer CSV uploads are the large ones).
    pub max_body_bytes: usize,
    /// Largest request body of the public self-service routes (a preference change).
    pub public_max_body_bytes: usize,
    /// Map tiles for the console, `{z}/{x}/{y}` template; empty: no tiles (works offline).
    pub tile_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NotifySettings {
    pub momentary_delay_secs: u64,
    pub critical_momentary_delay_secs: u64,
    pub late_event_wait_secs: u64,
    pub critical_override_opt_out: bool,
    pub poll_ms: u64,
    pub batch_size: usize,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub concurrency: usize,
    pub stale_sending_secs: u64,
    pub etr_change_minutes: u64,
    pub planned_offsets_hours: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RetentionSettings {
    pub days: u32,
}

/// Cron expressions (with seconds) of the scheduled jobs.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ScheduleSettings {
    pub planned_notices: String,
    pub quiet_hours_release: String,
    pub etr_followups: String,
    pub retry_sweeper: String,
    pub retention_purge: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ChannelsSettings {
    pub sms: SmsSettings,
    pub push: PushSettings,
    pub email: EmailSettings,
    pub webhook: WebhookSettings,
    pub log: LogChannelSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PushSettings {
    pub base_url: String,
    pub project_id: String,
    pub token: Secret,
    pub service_account_file: String,
    pub timeout_secs: u64,
    pub max_per_second: f64,
    /// 0: HTTP/1.1; above 0: HTTP/2 over that many connections (`channels::http::Clients`).
    pub http2_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: String,
    pub username: String,
    pub password: Secret,
    pub from: String,
    pub unsubscribe_url: String,
    pub pool_size: u32,
    pub timeout_secs: u64,
    pub max_per_second: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: Secret,
    pub timeout_secs: u64,
    pub max_per_second: f64,
    /// 0: HTTP/1.1; above 0: HTTP/2 over that many connections (`channels::http::Clients`).
    pub http2_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SmsSettings {
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: String,
    pub status_callback: String,
    pub timeout_secs: u64,
    pub max_per_second: f64,
    /// 0: HTTP/1.1; above 0: HTTP/2 over that many connections (`channels::http::Clients`).
    pub http2_connections: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogChannelSettings {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    pub filter: String,
    pub format: String,
}

impl Settings {
    /// Loads every layer. `file` is the `--config`/`FAULTLINE_CONFIG` file, if any.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(
                config::File::new("config/default.toml", config::FileFormat::Toml).required(false),
            );
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("FAULTLINE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The built-in defaults alone: the starting point of tests and the demo.
    pub fn defaults() -> Self {
        let parsed: Result<Settings, _> = toml::from_str(DEFAULT_TOML);
        // The file is compiled in and covered by a unit test, so this cannot fail at run time.
        parsed.unwrap_or_else(|e| unreachable!("config/default.toml is invalid: {e}"))
    }

    /// Checks what serde cannot: URL schemes, ranges, topic syntax.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let db = self.database.url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite: or postgres://",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        let mqtt = url::Url::parse(&self.mqtt.url)
            .map_err(|e| invalid("mqtt.url", &format!("not a URL: {e}")))?;
        if !matches!(mqtt.scheme(), "mqtt" | "mqtts" | "tcp") || mqtt.host_str().is_none() {
            return Err(invalid(
                "mqtt.url",
                "must look like mqtt://host:port or mqtts://host:port",
            ));
        }
        if self.mqtt.client_cert.is_empty() != self.mqtt.client_key.is_empty() {
            return Err(invalid(
                "mqtt.client_key",
                "set mqtt.client_cert and mqtt.client_key together",
            ));
        }
        if !self.mqtt.client_cert.is_empty() && mqtt.scheme() != "mqtts" {
            return Err(invalid("mqtt.client_cert", "needs an mqtts:// url"));
        }
        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 128 {
            return Err(invalid("mqtt.client_id", "must be 1 to 128 characters"));
        }
        if self.mqtt.topic.is_empty() {
            return Err(invalid("mqtt.topic", "must not be empty"));
        }
        for (key, topic) in [
            ("mqtt.deadletter_topic", &self.mqtt.deadletter_topic),
            ("mqtt.status_topic", &self.mqtt.status_topic),
        ] {
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Err(invalid(key, "must be a topic name without wildcards"));
            }
        }
        if self.mqtt.reconnect_min_ms == 0
            || self.mqtt.reconnect_min_ms > self.mqtt.reconnect_max_ms
        {
            return Err(invalid(
                "mqtt.reconnect_min_ms",
                "must be above 0 and at most reconnect_max_ms",
            ));
        }
        if self.mqtt.keep_alive_secs < 5 {
            return Err(invalid("mqtt.keep_alive_secs", "must be at least 5"));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.ingest.max_payload_bytes) {
            return Err(invalid(
                "ingest.max_payload_bytes",
                "must be between 1 KiB and 16 MiB",
            ));
        }
        self.validate_packet_size()?;
        if self.ingest.max_vertices < 4 {
            return Err(invalid("ingest.max_vertices", "must be at least 4"));
        }
        if !(1..=10_000).contains(&self.ingest.batch_size) {
            return Err(invalid("ingest.batch_size", "must be between 1 and 10000"));
        }
        if self.mapping.reload_secs == 0 {
            return Err(invalid("mapping.reload_secs", "must be at least 1"));
        }
        self.api
            .bind
            .parse::<SocketAddr>()
            .map_err(|e| invalid("api.bind", &format!("not an address:port: {e}")))?;
        if !(self.api.public_rate_per_sec > 0.0 && self.api.public_burst >= 1.0) {
            return Err(invalid(
                "api.public_rate_per_sec",
                "must be above 0, with api.public_burst at least 1",
            ));
        }
        if self.api.max_body_bytes < 64 * 1024 {
            return Err(invalid("api.max_body_bytes", "must be at least 64 KiB"));
        }
        if !(1024..=64 * 1024).contains(&self.api.public_max_body_bytes) {
            return Err(invalid(
                "api.public_max_body_bytes",
                "must be between 1 KiB and 64 KiB",
            ));
        }
        let tiles = &self.api.tile_url;
        if !(tiles.is_empty() || tiles.starts_with("https://") || tiles.starts_with("http://")) {
            return Err(invalid("api.tile_url", "must be an http(s) URL template"));
        }
        if !self.channels.sms.base_url.is_empty() {
            url::Url::parse(&self.channels.sms.base_url)
                .map_err(|e| invalid("channels.sms.base_url", &format!("not a URL: {e}")))?;
            if self.channels.sms.account_sid.is_empty() || self.channels.sms.auth_token.is_empty() {
                return Err(invalid(
                    "channels.sms.account_sid",
                    "and channels.sms.auth_token are required with base_url",
                ));
            }
            if self.channels.sms.from.is_empty() {
                return Err(invalid("channels.sms.from", "is required with base_url"));
            }
        }
        self.validate_channels()?;
        self.validate_notify()?;
        if self.notify.max_attempts == 0 {
            return Err(invalid("notify.max_attempts", "must be at least 1"));
        }
        if self.notify.poll_ms == 0 || !(1..=10_000).contains(&self.notify.batch_size) {
            return Err(invalid(
                "notify.batch_size",
                "must be 1 to 10000 (and notify.poll_ms above 0)",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be `text` or `json`"));
        }
        Ok(())
    }

    /// A packet must hold the largest accepted payload with its topic, or such an event could
    /// not even be read; MQTT itself allows no more than 256 MiB.
    fn validate_packet_size(&self) -> Result<(), ConfigError> {
        let least = self.ingest.max_payload_bytes + MQTT_PUBLISH_OVERHEAD;
        if !(least..=MQTT_MAX_PACKET).contains(&self.mqtt.max_packet_bytes) {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                &format!(
                    "must be at least ingest.max_payload_bytes + {MQTT_PUBLISH_OVERHEAD} \
                     ({least}) and at most {MQTT_MAX_PACKET}"
                ),
            ));
        }
        Ok(())
    }

    fn validate_channels(&self) -> Result<(), ConfigError> {
        let c = &self.channels;
        for (key, url) in [
            ("channels.push.base_url", &c.push.base_url),
            ("channels.webhook.url", &c.webhook.url),
            ("api.public_url", &self.api.public_url),
        ] {
            if !url.is_empty() {
                url::Url::parse(url).map_err(|e| invalid(key, &format!("not a URL: {e}")))?;
            }
        }
        let push_auth = !c.push.token.is_empty() || !c.push.service_account_file.is_empty();
        if !c.push.base_url.is_empty() && (c.push.project_id.is_empty() || !push_auth) {
            return Err(invalid(
                "channels.push.project_id",
                "and channels.push.token or .service_account_file are required with base_url",
            ));
        }
        if !c.email.host.is_empty() {
            if !matches!(c.email.tls.as_str(), "none" | "starttls" | "tls") {
                return Err(invalid(
                    "channels.email.tls",
                    "must be none, starttls or tls",
                ));
            }
            if c.email.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(invalid(
                    "channels.email.from",
                    "must be an address, e.g. \"Grid <outages@utility.example>\"",
                ));
            }
        }
        for (key, rate) in [
            ("channels.sms.max_per_second", c.sms.max_per_second),
            ("channels.push.max_per_second", c.push.max_per_second),
            ("channels.email.max_per_second", c.email.max_per_second),
            ("channels.webhook.max_per_second", c.webhook.max_per_second),
        ] {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(invalid(key, "must be 0 (unlimited) or a positive rate"));
            }
        }
        for (key, connections) in [
            ("channels.sms.http2_connections", c.sms.http2_connections),
            ("channels.push.http2_connections", c.push.http2_connections),
            (
                "channels.webhook.http2_connections",
                c.webhook.http2_connections,
            ),
        ] {
            if connections > MAX_HTTP2_CONNECTIONS {
                return Err(invalid(
                    key,
                    "must be 0 (HTTP/1.1) or between 1 and 64 HTTP/2 connections",
                ));
            }
        }
        Ok(())
    }

    fn validate_notify(&self) -> Result<(), ConfigError> {
        let n = &self.notify;
        // A longer wait for critical customers would tell them "back" (a trip between the two
        // windows is not momentary) without ever having told them "out".
        if n.critical_momentary_delay_secs > n.momentary_delay_secs {
            return Err(invalid(
                "notify.critical_momentary_delay_secs",
                "must not exceed notify.momentary_delay_secs",
            ));
        }
        if n.stale_sending_secs == 0 {
            return Err(invalid("notify.stale_sending_secs", "must be at least 1"));
        }
        if !(1..=1024).contains(&n.concurrency) {
            return Err(invalid("notify.concurrency", "must be between 1 and 1024"));
        }
        if n.planned_offsets_hours.is_empty() || n.planned_offsets_hours.contains(&0) {
            return Err(invalid(
                "notify.planned_offsets_hours",
                "must list at least one offset above 0",
            ));
        }
        self.staffing
            .validate()
            .map_err(|(key, msg)| invalid(key, &msg))?;
        if self.retention.days == 0 {
            return Err(invalid("retention.days", "must be at least 1"));
        }
        let s = &self.schedule;
        for (key, expr) in [
            ("schedule.planned_notices", &s.planned_notices),
            ("schedule.quiet_hours_release", &s.quiet_hours_release),
            ("schedule.etr_followups", &s.etr_followups),
            ("schedule.retry_sweeper", &s.retry_sweeper),
            ("schedule.retention_purge", &s.retention_purge),
        ] {
            let parsed = tokio_cron_scheduler::Job::new(expr.as_str(), |_, _| {});
            if expr.split_whitespace().count() != 6 || parsed.is_err() {
                return Err(invalid(
                    key,
                    "must be a cron expression with six fields (sec min hour dom month dow)",
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        // The database URL is only partly secret: show it with the password masked.
        shown.database.url = Secret(mask_url_password(self.database.url.expose()));
        toml::to_string_pretty(&ShowAll(&shown)).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    pub fn momentary_delay(&self) -> Duration {
        Duration::from_secs(self.notify.momentary_delay_secs)
    }
}

fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.to_owned(),
    }
}

/// Serializes `Settings` with the database URL in clear (already masked by the caller).
struct ShowAll<'a>(&'a Settings);

impl Serialize for ShowAll<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(self.0).map_err(serde::ser::Error::custom)?;
        value["database"]["url"] = serde_json::Value::String(self.0.database.url.0.clone());
        value.serialize(s)
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_parse_and_validate() {
        let s = Settings::defaults();
        s.validate().unwrap();
        assert_eq!(s.notify.momentary_delay_secs, 300);
        assert_eq!(s.mqtt.topic, "faultline/v1/events/#");
    }

    #[test]
    fn validation_names_the_key() {
        let mut s = Settings::defaults();
        s.mqtt.status_topic = "a/#".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.status_topic"), "{err}");
        type Breaker = fn(&mut Settings);
        let cases: [(&str, Breaker); 14] = [
            ("mqtt.client_key", |s| {
                s.mqtt.client_cert = "client.pem".into()
            }),
            ("mqtt.client_cert", |s| {
                s.mqtt.client_cert = "client.pem".into();
                s.mqtt.client_key = "client.key".into();
            }),
            ("api.public_rate_per_sec", |s| {
                s.api.public_rate_per_sec = 0.0
            }),
            ("api.max_body_bytes", |s| s.api.max_body_bytes = 1024),
            ("api.public_max_body_bytes", |s| {
                s.api.public_max_body_bytes = 32 * 1024 * 1024
            }),
            ("api.tile_url", |s| {
                s.api.tile_url = "tiles/{z}/{x}/{y}.png".into()
            }),
            ("staffing.rules", |s| {
                s.staffing.rules[0].slots = vec!["lineworker:9".into()]
            }),
            ("staffing.road_factor", |s| s.staffing.road_factor = 0.5),
            ("schedule.retention_purge", |s| {
                s.schedule.retention_purge = "0 61 * * * *".into()
            }),
            ("channels.email.tls", |s| {
                s.channels.email.host = "smtp.example".into();
                s.channels.email.tls = "ssl".into();
            }),
            ("channels.push.project_id", |s| {
                s.channels.push.base_url = "https://fcm.googleapis.com".into()
            }),
            ("notify.planned_offsets_hours", |s| {
                s.notify.planned_offsets_hours = vec![48, 0]
            }),
            ("channels.webhook.http2_connections", |s| {
                s.channels.webhook.http2_connections = 65
            }),
            ("notify.critical_momentary_delay_secs", |s| {
                s.notify.critical_momentary_delay_secs = 301
            }),
        ];
        for (key, break_it) in cases {
            let mut s = Settings::defaults();
            break_it(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn packets_must_hold_the_largest_payload() {
        let mut s = Settings::defaults();
        assert!(s.mqtt.max_packet_bytes >= 8 * s.ingest.max_payload_bytes);
        s.ingest.max_payload_bytes = s.mqtt.max_packet_bytes;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.max_packet_bytes"), "{err}");
        s.ingest.max_payload_bytes = 1 << 20;
        s.mqtt.max_packet_bytes = 300 << 20;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("at most 268435455"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut s = Settings::defaults();
        s.mqtt.password = Secret::new("hunter2");
        s.database.url = Secret::new("postgres://app:s3cret@db:5432/faultline");
        let shown = s.to_masked_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(
            shown.contains("postgres://app:***@db:5432/faultline"),
            "{shown}"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
