//! The ingest engine: takes a batch of inbound payloads, applies them to the outage book,
//! commits the batch in one transaction, and only then acknowledges and announces. Rejected
//! payloads are rows of the batch; their dead letters go out from those rows
//! ([`super::deadletter`]).
//! Written as one step ([`Engine::process_batch`]) and a loop around it ([`Engine::run`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::AsyncClient;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::deadletter::{payload_head, HEAD_BYTES};
use super::event::{parse_event, FaultEvent, Limits, Rejection};
use super::mqtt::{Backoff, Inbound, Verdict};
use crate::clock::Clock;
use crate::domain::FaultId;
use crate::notify::intents::Delays;
use crate::notify::pause::ClaimPause;
use crate::outage::{Applied, OutageBook, OutageChange};
use crate::shared::SharedBook;
use crate::store::{
    millis, payload_digest, BatchWrite, EventRecord, EventStatus, FaultRow, MemberOp, Store,
    StoreError,
};

/// What the engine needs besides the store and the book.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    pub batch_size: usize,
    pub reload_every: Duration,
    /// When outage notices fall due, besides the book's momentary delay.
    pub delays: Delays,
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
    /// Wakes the dead-letter publisher after a commit that stored a rejection.
    pub dead_letters: Arc<Notify>,
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
    delays: Delays,
    /// When the daemon learned of what the batch applies (see [`crate::notify::intents`]).
    now: DateTime<Utc>,
    write: BatchWrite,
    touched: Vec<FaultId>,
    changes: Vec<OutageChange>,
    /// (topic, rejection) of the payloads rejected, for the log after the commit.
    rejected: Vec<(String, Rejection)>,
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
        let rules = self.book.read().rules();
        let (book, seen) = crate::shared::load_book(&self.store, rules).await?;
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
        // A rejection comes with its digest, computed once: it finds a redelivery of the
        // payload among those rejected before, and is stored with the row.
        let parsed: Vec<Result<FaultEvent, (Rejection, String)>> = batch
            .iter()
            .map(|m| {
                parse_event(&m.payload, self.config.limits).map_err(|r| {
                    let digest = payload_digest(&m.topic, &stored_reason(&r), kept(&m.payload, &r));
                    (r, digest)
                })
            })
            .collect();
        let ids: Vec<String> = parsed
            .iter()
            .flatten()
            .map(|e| e.event_id.as_str().to_owned())
            .collect();
        let mut seen = self.store.accepted_event_ids(&ids).await?;
        let mut known = self.rejected_before(batch, &parsed).await?;
        let mut pending = Pending::new(self.config.delays, now);
        for (msg, parsed) in batch.iter().zip(parsed) {
            match parsed {
                Err((rejection, digest)) => pending.reject(msg, rejection, digest, &mut known, now),
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

    /// The digests of this batch's rejections over MQTT that were rejected before: the broker
    /// delivering them again (see [`Pending::reject`]).
    async fn rejected_before(
        &self,
        batch: &[Inbound],
        parsed: &[Result<FaultEvent, (Rejection, String)>],
    ) -> Result<HashSet<String>, StoreError> {
        let digests: Vec<String> = batch
            .iter()
            .zip(parsed)
            .filter(|(msg, _)| msg.receipt.is_some())
            .filter_map(|(_, parsed)| Some(parsed.as_ref().err()?.1.clone()))
            .collect();
        if digests.is_empty() {
            return Ok(HashSet::new());
        }
        self.store.rejected_digests(&digests).await
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
        }
        for (topic, r) in &pending.rejected {
            tracing::warn!(code = r.code, reason = %r.reason, topic = %topic, "event rejected");
        }
        if !pending.rejected.is_empty() {
            // The rows are committed: their letters go out from them, once each.
            self.out.dead_letters.notify_one();
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
        let mut pending = Pending::new(self.config.delays, self.clock.now());
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
    /// Records a rejected payload; its dead letter goes out from the stored row after the
    /// commit. A payload over the size limit is kept by its head only. One the broker delivers
    /// again (its acknowledgement was lost, or the daemon stopped before sending it) is found
    /// among `known` (rejected before, or earlier in this batch) by its digest, and recorded as
    /// a duplicate: without a second copy of the payload, and without a second letter.
    fn reject(
        &mut self,
        msg: &Inbound,
        rejection: Rejection,
        digest: String,
        known: &mut HashSet<String>,
        now: DateTime<Utc>,
    ) {
        let reason = stored_reason(&rejection);
        let payload = kept(&msg.payload, &rejection);
        // Only a broker redelivers: a post over HTTP is answered, and rejected, every time.
        if msg.receipt.is_some() && !known.insert(digest.clone()) {
            self.rejected_again(msg, rejection, &reason, now);
            return;
        }
        self.count(EventStatus::Rejected);
        self.verdicts.push(Verdict {
            status: EventStatus::Rejected,
            reason: Some(reason.clone()),
        });
        self.write.events.push(EventRecord {
            event_id: rejection.event_id.clone(),
            fault_id: rejection.fault_id.clone(),
            kind: None,
            seq: None,
            topic: msg.topic.clone(),
            payload: payload.to_vec(),
            received_at: now,
            status: EventStatus::Rejected,
            reason: Some(reason),
            digest: Some(digest),
        });
        self.rejected.push((msg.topic.clone(), rejection));
    }

    fn rejected_again(
        &mut self,
        msg: &Inbound,
        rejection: Rejection,
        reason: &str,
        now: DateTime<Utc>,
    ) {
        let reason = format!("rejected before: {reason}");
        self.count(EventStatus::Duplicate);
        self.verdicts.push(Verdict {
            status: EventStatus::Duplicate,
            reason: Some(reason.clone()),
        });
        self.write.events.push(EventRecord {
            event_id: rejection.event_id,
            fault_id: rejection.fault_id,
            kind: None,
            seq: None,
            topic: msg.topic.clone(),
            payload: Vec::new(),
            received_at: now,
            status: EventStatus::Duplicate,
            reason: Some(reason),
            digest: None,
        });
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
            // The first copy is stored with its accepted row; a redelivery would only repeat it.
            payload: if status == EventStatus::Duplicate {
                Vec::new()
            } else {
                msg.payload.clone()
            },
            received_at: now,
            status,
            reason,
            digest: None,
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
        crate::notify::intents::plan(&change, book, self.delays, self.now, &mut self.write);
        self.touched.push(change.fault_id.clone());
        self.changes.push(change);
    }
}

impl Pending {
    fn new(delays: Delays, now: DateTime<Utc>) -> Self {
        Self {
            delays,
            now,
            ..Self::default()
        }
    }
}

/// A rejection's reason as stored, answered and digested: `code: reason`.
fn stored_reason(r: &Rejection) -> String {
    format!("{}: {}", r.code, r.reason)
}

/// What is stored of a rejected payload: all of it, but only the head of one over the size
/// limit (storing and republishing megabytes is what the limit is there to prevent).
fn kept<'a>(payload: &'a [u8], r: &Rejection) -> &'a [u8] {
    if r.code == "too_large" {
        payload_head(payload, HEAD_BYTES)
    } else {
        payload
    }
}
