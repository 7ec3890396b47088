//! `faultline publish`: send event files to the broker, as an operator's system would.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};

use super::mqtt::{events_topic_base, options, topic_level, MqttError};
use crate::config::MqttSettings;
use crate::domain::{FaultId, Region};

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
/// when it has one (the topic is informational, the payload authoritative). A region or a
/// fault id that is not a valid id (empty, over 128 characters, or holding a control
/// character) is `unknown`: the topic is written to the event log, to dead letters and to log
/// lines, where a raw value could forge a line or weigh a megabyte.
pub fn event_topic(filter: &str, region: &str, payload: &[u8]) -> String {
    let fault = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("fault_id")
                .and_then(|f| f.as_str())
                .and_then(|f| FaultId::parse(f).ok())
        })
        .map_or_else(|| String::from("unknown"), |f| topic_level(f.as_str()));
    let region =
        Region::parse(region).map_or_else(|_| String::from("unknown"), |r| topic_level(r.as_str()));
    format!("{}/{region}/{fault}", events_topic_base(filter))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_take_valid_ids_only() {
        let filter = "faultline/v1/events/#";
        let good = br#"{"fault_id":"F-1/2"}"#;
        assert_eq!(
            event_topic(filter, "north", good),
            "faultline/v1/events/north/F-1%2F2"
        );
        let forged = "{\"fault_id\":\"F-1\\r\\nINFO forged\"}";
        assert_eq!(
            event_topic(filter, "north\r\nINFO forged", forged.as_bytes()),
            "faultline/v1/events/unknown/unknown"
        );
    }
}
