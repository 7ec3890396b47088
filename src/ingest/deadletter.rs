//! Dead letters, published from the event log. A rejected payload is a row of its batch's
//! transaction first; after the commit this task publishes the row's letter and marks the row
//! once the broker has acknowledged the letter (PUBACK). A crash in between leaves the row
//! unmarked, and the next start publishes it: no letter is lost, and one is published twice only
//! when its PUBACK was lost with the connection (its `id` tells a subscriber it is a repeat).
//!
//! The letters have an MQTT connection of their own (clean session, client id
//! `{mqtt.client_id}-deadletters`): every PUBACK on it answers a letter. On the shared link,
//! which carries status documents and acknowledgements from several tasks, a PUBACK could not
//! be told apart.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::mqtt::{options, Backoff, MqttError};
use crate::config::MqttSettings;
use crate::store::{Store, StoredEvent};

/// Letters in flight at once: well within the client's in-flight window (100), so that packet
/// ids never repeat inside one window.
const WINDOW: i64 = 32;
/// How often the log is read without being woken: a second chance after a failed read.
const RESCAN: Duration = Duration::from_secs(10);
/// How long a stopping daemon waits for the broker to acknowledge the letters in flight.
const DRAIN: Duration = Duration::from_secs(2);
/// Bytes kept of a payload over `ingest.max_payload_bytes` (stored and published with
/// `"truncated": true`), and of one whose letter would not fit in a packet.
pub const HEAD_BYTES: usize = 4096;

/// The first `max` bytes of a payload, shortened so as not to split a UTF-8 character (a text
/// payload stays text in its letter).
pub fn payload_head(payload: &[u8], max: usize) -> &[u8] {
    let head = &payload[..payload.len().min(max)];
    match std::str::from_utf8(head) {
        // Only the cut is wrong: the end of a character is missing.
        Err(e) if e.error_len().is_none() => &head[..e.valid_up_to()],
        _ => head,
    }
}

/// What publishes the dead letters.
pub struct DeadLetters {
    pub store: Store,
    /// `mqtt.deadletter_topic`.
    pub topic: String,
    /// Notified by the engine after a commit that stored a rejection.
    pub wake: Arc<Notify>,
}

impl DeadLetters {
    /// Connects and runs until `stop`. The rows this daemon takes up are marked with its
    /// `mqtt.client_id` (each daemon of a cluster has its own), so no other daemon publishes them.
    pub fn spawn(
        self,
        settings: &MqttSettings,
        stop: CancellationToken,
    ) -> Result<JoinHandle<()>, MqttError> {
        let client_id = format!("{}-deadletters", settings.client_id);
        let (client, eventloop) = AsyncClient::new(options(settings, &client_id, false)?, 64);
        // A letter must fit in a packet with its topic, or it could never be sent.
        let max_letter = settings
            .max_packet_bytes
            .saturating_sub(self.topic.len() + 16);
        let publisher = Publisher {
            letters: self,
            owner: settings.client_id.clone(),
            client,
            max_letter,
            window: Window::default(),
        };
        let backoff = Backoff::new(settings.reconnect_min_ms, settings.reconnect_max_ms);
        Ok(tokio::spawn(publisher.run(eventloop, backoff, stop)))
    }
}

struct Publisher {
    letters: DeadLetters,
    owner: String,
    client: AsyncClient,
    max_letter: usize,
    window: Window,
}

/// What an event of the connection means for the loop.
enum Link {
    Up,
    Down,
    Same,
}

impl Publisher {
    async fn run(
        mut self,
        mut eventloop: EventLoop,
        mut backoff: Backoff,
        stop: CancellationToken,
    ) {
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected = false;
        loop {
            let idle = connected && self.window.is_empty();
            tokio::select! {
                _ = stop.cancelled() => break,
                event = eventloop.poll() => match self.handle(event).await {
                    Link::Up => {
                        connected = true;
                        backoff.reset();
                    }
                    Link::Down => {
                        connected = false;
                        tokio::select! {
                            _ = tokio::time::sleep(backoff.next_delay()) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                    Link::Same => {}
                },
                _ = self.letters.wake.notified(), if idle => self.refill().await,
                _ = rescan.tick(), if idle => self.refill().await,
            }
        }
        if connected {
            self.drain(&mut eventloop).await;
        }
    }

    async fn handle(&mut self, event: Result<Event, ConnectionError>) -> Link {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // A clean session: what was in flight went with the old connection.
                self.finish().await;
                self.refill().await;
                Link::Up
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                self.window.sent(pkid);
                Link::Same
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if self.window.acked(ack.pkid) {
                    self.finish().await;
                    self.refill().await;
                }
                Link::Same
            }
            Ok(_) => Link::Same,
            Err(e) => {
                self.finish().await;
                tracing::warn!(error = %e, "dead-letter connection lost; reconnecting");
                Link::Down
            }
        }
    }

    /// Publishes the next letters due, up to a window.
    async fn refill(&mut self) {
        let rows = match self
            .letters
            .store
            .claim_dead_letters(&self.owner, WINDOW)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the dead letters due; will retry");
                return;
            }
        };
        for row in rows {
            let body = letter(&row, self.max_letter);
            let topic = self.letters.topic.clone();
            if let Err(e) = self
                .client
                .publish(topic, QoS::AtLeastOnce, false, body)
                .await
            {
                tracing::warn!(error = %e, "cannot publish a dead letter; will retry");
                break;
            }
            self.window.push(row.id);
        }
    }

    /// Marks the letters the broker acknowledged and empties the window; the others are
    /// published again by a later refill.
    async fn finish(&mut self) {
        let acked = self.window.take_acked();
        if acked.is_empty() {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        if let Err(e) = self.letters.store.mark_dead_letters(&acked, now).await {
            // The broker has them: they go out once more, a repeat of their `id`.
            tracing::warn!(error = %e, letters = acked.len(), "cannot mark dead letters sent");
        }
    }

    /// On stop: publishes what is due and waits a moment for the acknowledgements, so a clean
    /// shutdown leaves nothing for the next start; then disconnects.
    async fn drain(&mut self, eventloop: &mut EventLoop) {
        if self.window.is_empty() {
            self.refill().await;
        }
        let deadline = tokio::time::sleep(DRAIN);
        tokio::pin!(deadline);
        while !self.window.is_empty() {
            tokio::select! {
                _ = &mut deadline => break,
                event = eventloop.poll() => match event {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => self.window.sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if self.window.acked(ack.pkid) {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                },
            }
        }
        self.finish().await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
    }
}

/// Letters published and not yet acknowledged, in the order they were published: (row, packet
/// id once the event loop has sent it, acknowledged).
#[derive(Default)]
struct Window(Vec<(i64, Option<u16>, bool)>);

impl Window {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn push(&mut self, row: i64) {
        self.0.push((row, None, false));
    }

    /// The event loop sends publishes in the order they were asked for, and nothing else
    /// publishes on this connection: the packet id belongs to the first letter without one.
    fn sent(&mut self, pkid: u16) {
        if let Some(slot) = self.0.iter_mut().find(|slot| slot.1.is_none()) {
            slot.1 = Some(pkid);
        }
    }

    /// Records a PUBACK; `true` when every letter of the window is acknowledged.
    fn acked(&mut self, pkid: u16) -> bool {
        if let Some(slot) = self.0.iter_mut().find(|slot| slot.1 == Some(pkid)) {
            slot.2 = true;
        }
        !self.0.is_empty() && self.0.iter().all(|slot| slot.2)
    }

    /// The rows whose letters were acknowledged; empties the window.
    fn take_acked(&mut self) -> Vec<i64> {
        self.0
            .drain(..)
            .filter(|slot| slot.2)
            .map(|slot| slot.0)
            .collect()
    }
}

/// The dead-letter document of a stored rejection: the reason, where the payload came from, and
/// the payload as stored (as text when it is UTF-8, else base64), so that MQTT 3.1.1 brokers can
/// carry the reason too. A letter that would not fit in `max_bytes` carries the payload's head.
pub fn letter(row: &StoredEvent, max_bytes: usize) -> Vec<u8> {
    let stored = row.reason.as_deref().unwrap_or_default();
    let (code, reason) = stored.split_once(": ").unwrap_or(("invalid", stored));
    // A payload over the size limit was stored by its head only.
    let full = document(row, code, reason, &row.payload, code == "too_large");
    if full.len() <= max_bytes {
        return full;
    }
    document(
        row,
        code,
        reason,
        payload_head(&row.payload, HEAD_BYTES),
        true,
    )
}

fn document(row: &StoredEvent, code: &str, reason: &str, payload: &[u8], cut: bool) -> Vec<u8> {
    let mut doc = Map::new();
    doc.insert("id".into(), row.id.into());
    doc.insert("reason".into(), reason.into());
    doc.insert("code".into(), code.into());
    doc.insert("topic".into(), row.topic.clone().into());
    doc.insert("event_id".into(), row.event_id.clone().into());
    doc.insert("fault_id".into(), row.fault_id.clone().into());
    doc.insert("rejected_at".into(), row.received_at.to_rfc3339().into());
    match std::str::from_utf8(payload) {
        Ok(text) => doc.insert("payload".into(), text.into()),
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
            doc.insert("payload_base64".into(), encoded.into())
        }
    };
    if cut {
        doc.insert("truncated".into(), true.into());
    }
    Value::Object(doc).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(reason: &str, payload: &[u8]) -> StoredEvent {
        StoredEvent {
            id: 7,
            event_id: Some("evt-bad-2".into()),
            fault_id: None,
            topic: "faultline/v1/events/north/F-9".into(),
            payload: payload.to_vec(),
            received_at: chrono::DateTime::from_timestamp(1_795_442_701, 0).unwrap(),
            status: "rejected".into(),
            reason: Some(reason.into()),
        }
    }

    #[test]
    fn a_letter_carries_the_stored_rejection() {
        let doc: Value =
            serde_json::from_slice(&letter(&row("bad_kind: `kind` is wrong", b"{}"), 1 << 20))
                .unwrap();
        assert_eq!(doc["id"], 7);
        assert_eq!(doc["code"], "bad_kind");
        assert_eq!(doc["reason"], "`kind` is wrong");
        assert_eq!(doc["payload"], "{}");
        assert_eq!(doc["event_id"], "evt-bad-2");
        assert_eq!(doc["fault_id"], Value::Null);
        assert_eq!(doc["rejected_at"], "2026-11-23T14:05:01+00:00");
        assert!(doc.get("truncated").is_none());
        let binary: Value =
            serde_json::from_slice(&letter(&row("invalid_json: no", &[0xff, 0]), 1 << 20)).unwrap();
        assert_eq!(binary["payload_base64"], "/wA=");
    }

    #[test]
    fn oversized_payloads_travel_by_their_head() {
        let big = "é".repeat(10_000).into_bytes();
        let doc: Value =
            serde_json::from_slice(&letter(&row("bad_note: long", &big), 8192)).unwrap();
        assert_eq!(doc["truncated"], true);
        let text = doc["payload"].as_str().unwrap();
        assert_eq!(text.len(), HEAD_BYTES, "cut between characters");
        let stored: Value =
            serde_json::from_slice(&letter(&row("too_large: 5 MB", b"{\"v\":1"), 1 << 20)).unwrap();
        assert_eq!(stored["truncated"], true, "stored by its head already");
        assert_eq!(payload_head(&[b'a', 0xc3, 0xa9], 2), b"a");
    }

    #[test]
    fn a_window_completes_when_every_letter_is_acknowledged() {
        let mut w = Window::default();
        w.push(10);
        w.push(11);
        w.sent(5);
        w.sent(6);
        assert!(!w.acked(6));
        assert!(!w.acked(99), "a stray acknowledgement changes nothing");
        assert!(w.acked(5));
        assert_eq!(w.take_acked(), vec![10, 11]);
        assert!(w.is_empty() && !w.acked(5));
        w.push(12);
        w.push(13);
        w.sent(7);
        w.acked(7);
        assert_eq!(w.take_acked(), vec![12], "13 was never acknowledged");
    }
}
