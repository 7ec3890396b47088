//! An in-process MQTT broker (rumqttd) for a single box and the demo.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid mqtt.url for the embedded broker: {0}")]
    BadUrl(String),
    #[error("no free port for the embedded broker: {0}")]
    NoPort(std::io::Error),
    #[error("the embedded broker did not start listening on {0}")]
    NotListening(SocketAddr),
}

/// Starts a broker on loopback at the port of `url`, or on a free port when that one is taken
/// (say, by a system Mosquitto). Returns the URL clients should use.
pub fn start_embedded(url: &str) -> Result<String, BrokerError> {
    let parsed = url::Url::parse(url).map_err(|_| BrokerError::BadUrl(url.to_owned()))?;
    let wanted = parsed.port().unwrap_or(1883);
    let port = match TcpListener::bind(("127.0.0.1", wanted)) {
        Ok(_) => wanted,
        Err(_) => TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(BrokerError::NoPort)?
            .port(),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut broker = Broker::new(config(addr));
    // rumqttd runs its own threads and offers no stop: it ends with the process.
    std::thread::Builder::new()
        .name("embedded-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(BrokerError::NoPort)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::NotListening(addr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!("mqtt://127.0.0.1:{port}"))
}

fn config(addr: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 2 * 1024 * 1024,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_owned(), server)])),
        ..Default::default()
    }
}
