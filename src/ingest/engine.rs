//! The ingest engine: takes a batch of inbound payloads, applies them to the outage book,
//! commits the batch in one transaction, and only then acknowledges, dead-letters and announces.
//! Written as one step ([`Engine::process_batch`]) and a loop around it ([`Engine::run`]).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, QoS};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::event::{parse_event, FaultEvent, Limits, Rejection};
use super::mqtt::{Backoff, Inbound, Verdict};
use crate::clock::Clock;
use crate::domain::FaultId;
use crate::notify::pause::ClaimPause;
use crate::outage::{Applied, OutageBook, OutageChange};
use crate::shared::SharedBook;
use crate::store::{
    millis, BatchWrite, EventRecord, EventStatus, FaultRow, MemberOp, Store, StoreError,
};

/// What the engine needs besides the store and the book.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    pub batch_size: usize,
    pub deadletter_topic: String,
    pub reload_every: Duration,
    /// An ETR move at least this large is announced (`notify.etr_change_minutes`).
    pub etr_change: Duration,
}

/// Outputs of the engine, for the status publisher and whoever else listens.
#[derive(Debug, Clone)]
pub struct EngineOutputs {
    /// Faults whose status document should be republished.
    pub dirty: mpsc::UnboundedSender<FaultId>,
    /// Every committed change.
    pub changes: broadcast::Sender<Arc<OutageChange>>,
    /// Held while a batch writes a large set of notice rows: the delivery worker waits for
    /// the commit instead of walking uncommitted rows.
    pub claims: ClaimPause,
}

/// Counts of one batch, by what became of each payload.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: usize,
    pub stale: usize,
    pub ignored: usize,
    pub duplicate: usize,
    pub rejected: usize,
}

/// The ingest engine.
pub struct Engine {
    store: Store,
    book: SharedBook,
    client: Option<AsyncClient>,
    config: EngineConfig,
    out: EngineOutputs,
    clock: Clock,
    customers_seen_ms: i64,
    last_tick: DateTime<Utc>,
    /// Set by a failed commit: the book is ahead of the database until rebuilt.
    book_dirty: bool,
}

/// What a batch will write, built while applying it to the book.
#[derive(Default)]
struct Pending {
    etr_change: chrono::Duration,
    write: BatchWrite,
    touched: Vec<FaultId>,
    changes: Vec<OutageChange>,
    dead_letters: Vec<(Vec<u8>, String, Rejection)>,
    outcome: BatchOutcome,
    /// One per message of the batch, in order.
    verdicts: Vec<Verdict>,
}

impl Engine {
    pub fn new(
        store: Store,
        book: SharedBook,
        client: Option<AsyncClient>,
        config: EngineConfig,
        out: EngineOutputs,
        clock: Clock,
        customers_seen_ms: i64,
    ) -> Self {
        let last_tick = clock.now();
        Self {
            store,
            book,
            client,
            config,
            out,
            clock,
            customers_seen_ms,
            last_tick,
            book_dirty: false,
        }
    }

    /// Runs until `stop`, then finishes the batch in hand and returns. Messages still queued
    /// are left unacknowledged: the broker redelivers them to our persistent session.
    pub async fn run(
        mut self,
        mut inbound: mpsc::UnboundedReceiver<Inbound>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut reload = tokio::time::interval(self.config.reload_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                first = inbound.recv() => {
                    let Some(first) = first else { break };
                    let mut batch = vec![first];
                    while batch.len() < self.config.batch_size {
                        match inbound.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    self.process_until_committed(batch, &stop).await;
                }
                _ = tick.tick() => log_failure("tick", self.tick().await),
                _ = reload.tick() => log_failure("customer reload", self.reload_customers().await),
            }
        }
        tracing::info!("ingest engine stopped");
    }

    /// Retries a batch until it commits or we are told to stop. After a failed commit the book
    /// is rebuilt from the database, because it already holds the batch's uncommitted effects.
    async fn process_until_committed(&mut self, batch: Vec<Inbound>, stop: &CancellationToken) {
        let mut backoff = Backoff::new(200, 10_000);
        loop {
            match self.process(&batch).await {
                Ok((_, verdicts)) => {
                    for (msg, verdict) in batch.into_iter().zip(verdicts) {
                        if let Some(reply) = msg.reply {
                            let _ = reply.send(verdict);
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, events = batch.len(), "batch not committed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// After a failed commit the book holds effects the database does not: rebuild it before
    /// anything else is applied, or a retry would apply a batch on top of itself.
    async fn ensure_clean_book(&mut self) -> Result<(), StoreError> {
        if self.book_dirty {
            self.reload_book().await?;
            self.book_dirty = false;
        }
        Ok(())
    }

    async fn reload_book(&mut self) -> Result<(), StoreError> {
        let delay = self
            .book
            .read()
            .momentary_delay()
            .to_std()
            .unwrap_or_default();
        let (book, seen) = crate::shared::load_book(&self.store, delay).await?;
        *self.book.write() = book;
        self.customers_seen_ms = seen;
        Ok(())
    }

    /// One step: parse, dedupe, apply, commit, then acknowledge and announce.
    pub async fn process_batch(&mut self, batch: &[Inbound]) -> Result<BatchOutcome, StoreError> {
        Ok(self.process(batch).await?.0)
    }

    async fn process(
        &mut self,
        batch: &[Inbound],
    ) -> Result<(BatchOutcome, Vec<Verdict>), StoreError> {
        self.ensure_clean_book().await?;
        let now = self.clock.now();
        let parsed: Vec<Result<FaultEvent, Rejection>> = batch
            .iter()
            .map(|m| parse_event(&m.payload, self.config.limits))
            .collect();
        let ids: Vec<String> = parsed
            .iter()
            .flatten()
            .map(|e| e.event_id.as_str().to_owned())
            .collect();
        let mut seen = self.store.accepted_event_ids(&ids).await?;
        let mut pending = Pending::new(self.config.etr_change);
        for (msg, parsed) in batch.iter().zip(parsed) {
            match parsed {
                Err(rejection) => pending.reject(msg, rejection, now),
                Ok(event) => {
                    // `insert` is false for an id accepted before, or earlier in this batch.
                    let (status, reason) = if seen.insert(event.event_id.as_str().to_owned()) {
                        self.apply(&event, &mut pending)
                    } else {
                        (
                            EventStatus::Duplicate,
                            Some("event_id already received".to_owned()),
                        )
                    };
                    pending.record(msg, &event, status, reason, now);
                }
            }
        }
        let outcome = pending.outcome;
        let verdicts = std::mem::take(&mut pending.verdicts);
        let started = std::time::Instant::now();
        self.commit(pending, batch).await?;
        tracing::debug!(
            events = batch.len(),
            commit_ms = started.elapsed().as_millis() as u64,
            "batch committed"
        );
        Ok((outcome, verdicts))
    }

    fn apply(
        &mut self,
        event: &FaultEvent,
        pending: &mut Pending,
    ) -> (EventStatus, Option<String>) {
        let applied = self.book.write().apply(event);
        match applied {
            Applied::Stale { last_seq } => (
                EventStatus::Stale,
                Some(format!("seq not above {last_seq}")),
            ),
            Applied::Ignored(why) => (EventStatus::Ignored, Some(why.to_owned())),
            Applied::Changed(change) => {
                pending.add_change(change, &self.book.read());
                (EventStatus::Applied, None)
            }
        }
    }

    async fn commit(&mut self, pending: Pending, acks: &[Inbound]) -> Result<(), StoreError> {
        let faults: Vec<FaultRow> = {
            let book = self.book.read();
            let mut ids = pending.touched.clone();
            ids.sort();
            ids.dedup();
            ids.iter()
                .filter_map(|id| book.fault(id))
                .map(FaultRow::from_fault)
                .collect()
        };
        let mut write = pending.write;
        write.faults = faults;
        write.now = crate::store::millis(self.clock.now());
        let rows = write.notices.len();
        if let Err(e) = self
            .out
            .claims
            .around(rows, self.store.commit_batch(&write))
            .await
        {
            self.book_dirty = true;
            return Err(e);
        }
        // Committed: from here on a crash redelivers and the event_id check makes it a no-op.
        if let Some(client) = &self.client {
            for receipt in acks.iter().filter_map(|m| m.receipt.as_ref()) {
                if let Err(e) = client.ack(receipt).await {
                    tracing::warn!(error = %e, "cannot acknowledge; the broker will redeliver");
                }
            }
            for (payload, topic, rejection) in &pending.dead_letters {
                let letter = dead_letter(payload, topic, rejection);
                if let Err(e) = client
                    .publish(
                        self.config.deadletter_topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        letter,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "cannot publish dead letter (it is stored)");
                }
            }
        }
        for (_, topic, r) in &pending.dead_letters {
            tracing::warn!(code = r.code, reason = %r.reason, topic = %topic, "event rejected");
        }
        for id in pending.touched {
            let _ = self.out.dirty.send(id);
        }
        for change in pending.changes {
            let _ = self.out.changes.send(Arc::new(change));
        }
        Ok(())
    }

    /// Starts due planned outages and republishes faults leaving the momentary window.
    pub async fn tick(&mut self) -> Result<(), StoreError> {
        self.ensure_clean_book().await?;
        let now = self.clock.now();
        let (changes, leaving_pending) = {
            let mut book = self.book.write();
            let changes = book.tick(now);
            let delay = book.momentary_delay();
            let leaving: Vec<FaultId> = book
                .faults()
                .filter(|f| {
                    f.detected_at
                        .is_some_and(|d| d + delay > self.last_tick && d + delay <= now)
                })
                .map(|f| f.id.clone())
                .collect();
            (changes, leaving)
        };
        self.last_tick = now;
        for id in leaving_pending {
            let _ = self.out.dirty.send(id);
        }
        self.commit_changes(changes).await
    }

    /// Picks up customers imported since the last look and remaps them into open faults.
    pub async fn reload_customers(&mut self) -> Result<(), StoreError> {
        self.ensure_clean_book().await?;
        let (customers, newest) = self
            .store
            .mapped_customers_since(self.customers_seen_ms)
            .await?;
        if customers.is_empty() {
            return Ok(());
        }
        let count = customers.len();
        let changes = self.book.write().remap(customers, self.clock.now());
        self.commit_changes(changes).await?;
        self.customers_seen_ms = newest;
        tracing::debug!(count, "customers reloaded");
        Ok(())
    }

    async fn commit_changes(&mut self, changes: Vec<OutageChange>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut pending = Pending::new(self.config.etr_change);
        {
            let book = self.book.read();
            for change in changes {
                pending.add_change(change, &book);
            }
        }
        self.commit(pending, &[]).await
    }
}

fn log_failure(what: &str, result: Result<(), StoreError>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "{what} failed; will retry");
    }
}

impl Pending {
    fn reject(&mut self, msg: &Inbound, rejection: Rejection, now: DateTime<Utc>) {
        self.count(EventStatus::Rejected);
        self.verdicts.push(Verdict {
            status: EventStatus::Rejected,
            reason: Some(format!("{}: {}", rejection.code, rejection.reason)),
        });
        self.write.events.push(EventRecord {
            event_id: rejection.event_id.clone(),
            fault_id: rejection.fault_id.clone(),
            kind: None,
            seq: None,
            topic: msg.topic.clone(),
            payload: msg.payload.clone(),
            received_at: now,
            status: EventStatus::Rejected,
            reason: Some(format!("{}: {}", rejection.code, rejection.reason)),
        });
        self.dead_letters
            .push((msg.payload.clone(), msg.topic.clone(), rejection));
    }

    fn record(
        &mut self,
        msg: &Inbound,
        event: &FaultEvent,
        status: EventStatus,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) {
        self.count(status);
        self.verdicts.push(Verdict {
            status,
            reason: reason.clone(),
        });
        self.write.events.push(EventRecord {
            event_id: Some(event.event_id.as_str().to_owned()),
            fault_id: Some(event.fault_id.as_str().to_owned()),
            kind: Some(event.kind.as_str().to_owned()),
            seq: event.seq.map(|s| s as i64),
            topic: msg.topic.clone(),
            payload: msg.payload.clone(),
            received_at: now,
            status,
            reason,
        });
    }

    fn count(&mut self, status: EventStatus) {
        let o = &mut self.outcome;
        match status {
            EventStatus::Applied => o.applied += 1,
            EventStatus::Stale => o.stale += 1,
            EventStatus::Ignored => o.ignored += 1,
            EventStatus::Duplicate => o.duplicate += 1,
            EventStatus::Rejected => o.rejected += 1,
        }
    }

    fn add_change(&mut self, change: OutageChange, book: &OutageBook) {
        let ids = |list: &[u32]| -> Vec<String> {
            list.iter()
                .map(|&c| book.index().get(c).id.as_str().to_owned())
                .collect()
        };
        let fault_id = change.fault_id.as_str().to_owned();
        let at = millis(change.at);
        if change.activated {
            self.write.members.push(MemberOp::Activate {
                fault_id: fault_id.clone(),
                at,
            });
        }
        if !change.joined.is_empty() {
            let customers = ids(&change.joined);
            self.write.members.push(MemberOp::Join {
                fault_id: fault_id.clone(),
                customers,
                state: change.joined_state.as_str(),
                at,
            });
        }
        let state = change.left_state.as_str();
        if !change.state.is_open() {
            // Every member left: one statement, however large the fault.
            self.write.members.push(MemberOp::Close {
                fault_id,
                state,
                at,
            });
        } else if !change.left.is_empty() {
            let customers = ids(&change.left);
            self.write.members.push(MemberOp::Leave {
                fault_id,
                customers,
                state,
                at,
            });
        }
        crate::notify::intents::plan(&change, book, self.etr_change, &mut self.write);
        self.touched.push(change.fault_id.clone());
        self.changes.push(change);
    }
}

impl Pending {
    fn new(etr_change: Duration) -> Self {
        Self {
            etr_change: chrono::Duration::from_std(etr_change).unwrap_or(chrono::Duration::MAX),
            ..Self::default()
        }
    }
}

/// The dead-letter document: the payload unchanged (as text when it is UTF-8, else base64),
/// wrapped with the reason, so MQTT 3.1.1 brokers can carry it too.
pub fn dead_letter(payload: &[u8], topic: &str, r: &Rejection) -> Vec<u8> {
    let body = match std::str::from_utf8(payload) {
        Ok(text) => json!({ "payload": text }),
        Err(_) => {
            json!({ "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload) })
        }
    };
    let mut doc = json!({
        "reason": r.reason,
        "code": r.code,
        "topic": topic,
        "event_id": r.event_id,
        "fault_id": r.fault_id,
        "rejected_at": Utc::now().to_rfc3339(),
    });
    if let (Some(doc), Some(body)) = (doc.as_object_mut(), body.as_object()) {
        doc.extend(body.clone());
    }
    doc.to_string().into_bytes()
}
