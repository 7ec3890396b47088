//! The MQTT link. One task owns rumqttc's event loop (it must be polled for anything to move);
//! everyone else holds a cloned [`AsyncClient`]. Incoming events go to the engine unacknowledged:
//! the engine acknowledges each after its commit.

use std::time::Duration;

use rand::Rng;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS, StateError,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::MqttSettings;

/// Why the MQTT link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("invalid mqtt.url `{0}`")]
    BadUrl(String),
    #[error("mqtts: {0}")]
    Tls(String),
}

/// A message for the engine, not yet acknowledged.
#[derive(Debug)]
pub struct Inbound {
    pub topic: String,
    pub payload: Vec<u8>,
    /// The broker's message, kept to acknowledge it after the commit; `None` for events that
    /// did not come over MQTT.
    pub receipt: Option<Publish>,
    /// Told what became of the event once it is committed (events posted over HTTP).
    pub reply: Option<oneshot::Sender<Verdict>>,
}

/// What became of one event: its status in the event log and, unless applied, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: crate::store::EventStatus,
    pub reason: Option<String>,
}

/// Broker options from configuration: QoS 1 subscribers need a persistent session (clean
/// session off) so that events published while we are down wait for us, and manual acks so
/// that the broker keeps an event until we have committed it.
pub fn options(
    settings: &MqttSettings,
    client_id: &str,
    persistent: bool,
) -> Result<MqttOptions, MqttError> {
    let url =
        url::Url::parse(&settings.url).map_err(|_| MqttError::BadUrl(settings.url.clone()))?;
    let host = url
        .host_str()
        .ok_or_else(|| MqttError::BadUrl(settings.url.clone()))?;
    let tls = url.scheme() == "mqtts";
    let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(settings.keep_alive_secs))
        .set_clean_session(!persistent)
        .set_manual_acks(persistent)
        .set_max_packet_size(settings.max_packet_bytes, settings.max_packet_bytes)
        .set_request_channel_capacity(1024)
        .set_inflight(100);
    if !settings.username.is_empty() {
        opts.set_credentials(
            settings.username.clone(),
            settings.password.expose().to_owned(),
        );
    }
    if tls {
        opts.set_transport(Transport::tls_with_config(tls_config(settings)?.into()));
    }
    Ok(opts)
}

/// TLS to the broker: the system's trust store (where a utility adds its own CA), and ring
/// named as the provider rather than left for rustls to guess from crate features; a client
/// certificate when one is configured.
fn tls_config(settings: &MqttSettings) -> Result<rustls::ClientConfig, MqttError> {
    let native = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        let why = native.errors.first().map(ToString::to_string);
        return Err(MqttError::Tls(format!(
            "no trusted CA certificates on this system ({})",
            why.unwrap_or_else(|| "the trust store is empty".into())
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    if settings.client_cert.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let (chain, key) = client_identity(&settings.client_cert, &settings.client_key)?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| MqttError::Tls(format!("mqtt.client_cert and mqtt.client_key: {e}")))
}

/// The client certificate's chain and private key, from their PEM files.
fn client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), MqttError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| MqttError::Tls(format!("mqtt.client_cert `{cert}`: {e}")))?;
    if chain.is_empty() {
        return Err(MqttError::Tls(format!(
            "mqtt.client_cert `{cert}` holds no certificate"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| MqttError::Tls(format!("mqtt.client_key `{key}`: {e}")))?;
    Ok((chain, key))
}

/// The running link: a client to publish and acknowledge with, and the event loop's task.
pub struct Link {
    pub client: AsyncClient,
    pub task: JoinHandle<()>,
    /// Becomes `true` once the subscription is acknowledged (after every reconnect).
    pub subscribed: watch::Receiver<bool>,
}

/// Connects and subscribes to `filter`, forwarding publishes to `inbound`.
///
/// The channel to the engine is unbounded on purpose: a bounded one could block this loop while
/// the engine waits for this loop to carry its acks, a deadlock. Memory stays bounded anyway,
/// because the broker sends at most its in-flight window of unacknowledged QoS 1 messages.
pub fn spawn_subscriber(
    settings: &MqttSettings,
    filter: String,
    inbound: mpsc::UnboundedSender<Inbound>,
    stop: CancellationToken,
) -> Result<Link, MqttError> {
    let opts = options(settings, &settings.client_id, true)?;
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let (ready_tx, ready_rx) = watch::channel(false);
    let backoff = Backoff::new(settings.reconnect_min_ms, settings.reconnect_max_ms);
    let task = tokio::spawn(drive(
        eventloop,
        client.clone(),
        filter,
        inbound,
        ready_tx,
        backoff,
        stop,
    ));
    Ok(Link {
        client,
        task,
        subscribed: ready_rx,
    })
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filter: String,
    inbound: mpsc::UnboundedSender<Inbound>,
    ready: watch::Sender<bool>,
    mut backoff: Backoff,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            // The app stops us only after the engine has sent its last acks and we had a
            // moment to carry them; see `App::shutdown`.
            _ = stop.cancelled() => break,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                backoff.reset();
                // Subscribing again is harmless with a kept session and needed without one.
                if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "cannot subscribe");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                tracing::info!(filter = %filter, "subscribed");
                let _ = ready.send(true);
            }
            Ok(Event::Incoming(Packet::Publish(mut p))) => {
                // The receipt needs the packet id only: the payload moves to the engine rather
                // than being held twice (an oversized one is megabytes).
                let payload = std::mem::take(&mut p.payload);
                let msg = Inbound {
                    topic: p.topic.clone(),
                    payload: Vec::from(payload),
                    receipt: Some(p),
                    reply: None,
                };
                // After the engine has stopped, a message is simply not taken: unacknowledged,
                // the broker keeps it for the next start. The loop itself keeps running so the
                // engine's last acks and the final status documents still go out.
                let _ = inbound.send(msg);
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = ready.send(false);
                let wait = backoff.next_delay();
                explain_oversized(&e);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
}

/// Says what to do about a message too large to read: the broker redelivers it at every
/// reconnect, and every later event waits behind it, until one of the limits changes.
fn explain_oversized(e: &ConnectionError) {
    let ConnectionError::MqttState(StateError::Deserialization(decoding)) = e else {
        return;
    };
    if let rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size) = decoding {
        tracing::error!(
            size,
            "a message larger than mqtt.max_packet_bytes cannot be read, and the broker will \
             deliver it again at every reconnect: raise mqtt.max_packet_bytes, or have the broker \
             refuse such messages (docs/OPERATIONS.md)"
        );
    }
}

/// Exponential backoff with full jitter, so that a fleet of daemons does not reconnect in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    current_ms: u64,
}

impl Backoff {
    pub fn new(min_ms: u64, max_ms: u64) -> Self {
        Self {
            min_ms,
            max_ms,
            current_ms: min_ms,
        }
    }

    pub fn reset(&mut self) {
        self.current_ms = self.min_ms;
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current_ms;
        self.current_ms = (self.current_ms * 2).min(self.max_ms);
        Duration::from_millis(
            rand::rng().random_range(self.min_ms / 2..=ceiling.max(self.min_ms / 2 + 1)),
        )
    }
}

/// The topic prefix publishers use, from the subscription filter:
/// `$share/g/faultline/v1/events/#` → `faultline/v1/events`.
pub fn events_topic_base(filter: &str) -> String {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or(rest, |(_, f)| f),
        None => filter,
    };
    filter
        .trim_end_matches('#')
        .trim_end_matches('/')
        .to_owned()
}

/// A topic level from an id: MQTT wildcards and separators are percent-encoded.
pub fn topic_level(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        match c {
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(
            events_topic_base("$share/faultline/faultline/v1/events/#"),
            "faultline/v1/events"
        );
        assert_eq!(
            events_topic_base("t1/faultline/v1/events/#"),
            "t1/faultline/v1/events"
        );
        assert_eq!(topic_level("a/b+c#%"), "a%2Fb%2Bc%23%25");
    }

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let mut b = Backoff::new(100, 1000);
        for _ in 0..10 {
            assert!(b.next_delay() <= Duration::from_millis(1000));
        }
        assert_eq!(b.current_ms, 1000);
        b.reset();
        assert_eq!(b.current_ms, 100);
    }

    #[test]
    fn mqtts_urls_get_a_tls_transport() {
        let mut s = crate::config::Settings::defaults().mqtt;
        s.url = "mqtts://broker.example:8884".into();
        let opts = options(&s, "t", true).unwrap();
        assert_eq!(opts.broker_address(), ("broker.example".to_owned(), 8884));
        assert!(matches!(opts.transport(), Transport::Tls(_)));
    }

    #[test]
    fn a_missing_client_certificate_is_a_clear_error() {
        let mut s = crate::config::Settings::defaults().mqtt;
        s.url = "mqtts://broker.example".into();
        s.client_cert = "/nonexistent/client.pem".into();
        s.client_key = "/nonexistent/client.key".into();
        let err = options(&s, "t", true).unwrap_err().to_string();
        assert!(
            err.contains("mqtt.client_cert `/nonexistent/client.pem`"),
            "{err}"
        );
    }
}
