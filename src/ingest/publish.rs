//! `faultline publish`: send event files to the broker, as an operator's system would.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};

use super::mqtt::{events_topic_base, options, topic_level, MqttError};
use crate::config::MqttSettings;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    #[error("MQTT connection failed: {0}")]
    Connection(#[from] rumqttc::ConnectionError),
    #[error("the broker did not acknowledge {0} of the events in time")]
    Unacknowledged(usize),
}

/// The topic an event is published on: `{base}/{region}/{fault_id}`; the payload's `fault_id`
/// when it has one (the topic is informational, the payload authoritative).
pub fn event_topic(filter: &str, region: &str, payload: &[u8]) -> String {
    let fault = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("fault_id").and_then(|f| f.as_str()).map(topic_level))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{}/{}/{}",
        events_topic_base(filter),
        topic_level(region),
        fault
    )
}

/// Publishes `(topic, payload)` pairs with QoS 1 and waits for every PUBACK.
pub async fn publish_all(
    settings: &MqttSettings,
    messages: Vec<(String, Vec<u8>)>,
) -> Result<usize, PublishError> {
    let client_id = format!(
        "faultline-publish-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let opts = options(settings, &client_id, false)?;
    let (client, mut eventloop) = AsyncClient::new(opts, messages.len().max(1) + 10);
    let total = messages.len();
    for (topic, payload) in messages {
        // Cannot fail: the request channel was sized for every message.
        let _ = client.try_publish(topic, QoS::AtLeastOnce, false, payload);
    }
    let mut acked = 0;
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while acked < total {
            if let Event::Incoming(Packet::PubAck(_)) = eventloop.poll().await? {
                acked += 1;
            }
        }
        Ok::<_, rumqttc::ConnectionError>(())
    })
    .await;
    match waited {
        Ok(result) => result?,
        Err(_) => return Err(PublishError::Unacknowledged(total - acked)),
    }
    let _ = client.disconnect().await;
    // Let the DISCONNECT go out.
    let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    Ok(acked)
}
