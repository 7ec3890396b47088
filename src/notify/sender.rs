//! The sending half of the delivery worker: a sliding window of requests fed by the claiming
//! half through a channel of prepared batches, so the window never drains at a batch boundary.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use super::templates::sms_segments;
use super::worker::{DeliveryWorker, Job};
use crate::channels::{ChannelError, Outbound};
use crate::domain::{Channel, FaultId};
use crate::store::{millis, BadContact, ClaimedNotice, NoticeOutcome, StoreError};

/// Results not yet written: outcomes, contacts a provider refused, and the faults they touch.
#[derive(Default)]
struct Unrecorded {
    outcomes: Vec<NoticeOutcome>,
    bad: Vec<BadContact>,
    faults: HashSet<String>,
}

/// A refill in progress: how many slots it will fill at most, and the jobs still ours to send.
type Refill<'a> = BoxFuture<'a, (usize, Result<Vec<Job>, StoreError>)>;

impl DeliveryWorker {
    /// Sends what the claiming half hands over until its channel closes (or `stop`: then the
    /// requests in flight finish and the claims not yet sent go back in the queue).
    ///
    /// Freed slots are refilled by one transaction that records the outcomes finished so far
    /// and marks the next notices `sending`, fenced by each claim's attempt number. The
    /// transaction runs while the requests in flight go on (what frees up meanwhile is the next
    /// refill), so neither the database nor the providers wait for the other. PostgreSQL runs
    /// two refills at once on two connections (a refill there is mostly waiting on round
    /// trips: one at a time, refills took 49 of a million-notice fan-out's 55 s); SQLite has
    /// one writer, so one. Only slots free when a refill starts, less those a pending refill
    /// will fill, are filled: at most one window of notices is ever `sending`, which bounds
    /// what a crash leaves in doubt.
    pub(super) async fn deliver(
        &self,
        rx: &mut mpsc::Receiver<Vec<Job>>,
        stop: &CancellationToken,
    ) -> Result<(), StoreError> {
        let window = self.concurrency.max(1);
        let refills = match self.store {
            crate::store::Store::Postgres(_) => 2,
            crate::store::Store::Sqlite(_) => 1,
        };
        // A refill is a transaction, paid for per refill: its statements, its commit, and on
        // SQLite every page it touches written to the WAL again (a page holds some fifteen
        // notices, and each notice is changed by two refills). So a refill waits until it can
        // fill many slots, yet never so many that the window runs low: with every refill
        // pending, half of the window is still in flight. In a million-notice fan-out on
        // SQLite, refills of at least an eighth of the window wrote 1.5 WAL pages per notice,
        // refills of half of it 0.95 (docs/PERFORMANCE.md).
        let refill = (window / (2 * refills)).max(1);
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        // Refills in progress, each with how many slots it will fill at most.
        let mut marking: FuturesUnordered<Refill<'_>> = FuturesUnordered::new();
        let mut promised = 0;
        let mut done = Unrecorded::default();
        let mut open = true;
        loop {
            let stopping = stop.is_cancelled();
            // Not while a refill is pending: a log-channel wave writes to the database too, and
            // the pending refill, not polled meanwhile, might hold SQLite's write lock.
            while open && !stopping && (refills > 1 || marking.is_empty()) && queue.len() < window {
                match rx.try_recv() {
                    Ok(jobs) => self.enqueue(jobs, &mut queue, &mut done).await?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            let free = window.saturating_sub(in_flight.len() + promised);
            if marking.len() < refills
                && !stopping
                && !queue.is_empty()
                && (free >= refill || (in_flight.is_empty() && marking.is_empty()))
            {
                let next: Vec<Job> = queue.drain(..free.min(queue.len())).collect();
                let outcomes = std::mem::take(&mut done.outcomes);
                let faults = std::mem::take(&mut done.faults);
                let n = next.len();
                promised += n;
                marking.push(Box::pin(async move {
                    (n, self.mark_ours(outcomes, faults, next).await)
                }));
            }
            if marking.is_empty() && in_flight.is_empty() {
                // Nothing in flight and nothing sendable in hand: record, then wait for more.
                self.record(&mut done).await?;
                if stopping {
                    let mut unsent: Vec<Job> = queue.drain(..).collect();
                    while let Ok(jobs) = rx.try_recv() {
                        unsent.extend(jobs);
                    }
                    return self.release(&unsent).await;
                }
                if !open {
                    return Ok(());
                }
                tokio::select! {
                    jobs = rx.recv() => match jobs {
                        Some(jobs) => self.enqueue(jobs, &mut queue, &mut done).await?,
                        None => open = false,
                    },
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            tokio::select! {
                Some((n, marked)) = marking.next() => {
                    promised -= n;
                    for job in marked? {
                        in_flight.push(async move {
                            let started = std::time::Instant::now();
                            let result = self.transports.send_one(&job.message).await;
                            crate::telemetry::metrics::SEND_LATENCY
                                .observe(started.elapsed().as_secs_f64());
                            (job, result)
                        });
                    }
                }
                Some((job, result)) = in_flight.next() => self.settle(job, result, &mut done),
            }
        }
    }

    /// Takes a prepared batch: messages for the log channel go out at once, in waves (one
    /// write and fsync each); the rest join the window's queue.
    async fn enqueue(
        &self,
        jobs: Vec<Job>,
        queue: &mut VecDeque<Job>,
        done: &mut Unrecorded,
    ) -> Result<(), StoreError> {
        let (logged, direct): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| self.transports.is_logged(j.message.channel));
        queue.extend(direct);
        let mut pending = logged.into_iter().peekable();
        while pending.peek().is_some() {
            let wave: Vec<Job> = pending.by_ref().take(self.concurrency.max(1)).collect();
            let outcomes = std::mem::take(&mut done.outcomes);
            let faults = std::mem::take(&mut done.faults);
            let wave = self.mark_ours(outcomes, faults, wave).await?;
            let messages: Vec<Outbound> = wave.iter().map(|j| j.message.clone()).collect();
            let results = self.transports.send_logged(&messages).await;
            for (job, result) in wave.into_iter().zip(results) {
                self.settle(job, result, done);
            }
        }
        Ok(())
    }

    /// Records `outcomes` and marks `next` `sending` in one transaction, fenced by each claim's
    /// attempt number (a notice that went stale and was claimed again by another worker is
    /// left to it); returns the jobs that are still ours to send.
    async fn mark_ours(
        &self,
        outcomes: Vec<NoticeOutcome>,
        faults: HashSet<String>,
        next: Vec<Job>,
    ) -> Result<Vec<Job>, StoreError> {
        let fence: Vec<(i64, i64)> = next
            .iter()
            .map(|j| (j.claim.id, j.claim.attempts))
            .collect();
        let now = millis(self.clock.now());
        let ours: HashSet<i64> = self
            .store
            .advance_wave(&outcomes, &fence, now)
            .await?
            .into_iter()
            .collect();
        self.report_dirty(faults);
        Ok(next
            .into_iter()
            .filter(|j| ours.contains(&j.claim.id))
            .collect())
    }

    /// Writes the unrecorded outcomes and bad contacts.
    async fn record(&self, done: &mut Unrecorded) -> Result<(), StoreError> {
        if !done.outcomes.is_empty() {
            self.store
                .finish_notices(&done.outcomes, millis(self.clock.now()))
                .await?;
            done.outcomes.clear();
        }
        if !done.bad.is_empty() {
            self.store.mark_bad_contacts(&done.bad).await?;
            done.bad.clear();
        }
        self.report_dirty(std::mem::take(&mut done.faults));
        Ok(())
    }

    /// Puts claims that were never sent back in the queue, their attempt not counted.
    pub(super) async fn release(&self, jobs: &[Job]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let fence: Vec<(i64, i64)> = jobs
            .iter()
            .map(|j| (j.claim.id, j.claim.attempts))
            .collect();
        self.store
            .release_claims(&fence, millis(self.clock.now()))
            .await
    }

    /// Tells the status publisher which faults' notice counts changed.
    fn report_dirty(&self, faults: HashSet<String>) {
        if let Some(dirty) = &self.dirty {
            for id in faults.iter().filter_map(|f| FaultId::parse(f).ok()) {
                let _ = dirty.send(id);
            }
        }
    }

    /// Turns one send's result into the notice's outcome, noting a contact the provider called
    /// bad.
    fn settle(&self, job: Job, result: Result<String, ChannelError>, done: &mut Unrecorded) {
        if let Err(ChannelError::DeadContact(reason)) = &result {
            done.bad.push(BadContact {
                customer_id: job.message.customer_id.clone(),
                channel: job.message.channel,
                reason: reason.clone(),
            });
        }
        if !done.faults.contains(&job.message.fault_id) {
            done.faults.insert(job.message.fault_id.clone());
        }
        done.outcomes
            .push(self.outcome(&job.claim, job.message, result));
    }

    /// What a send's result makes of the notice: sent; back in the queue for a retry on the same
    /// channel (transient, within the budget, after a growing wait that honours Retry-After);
    /// or back in the queue at once for the next channel (permanent, or the budget is spent).
    fn outcome(
        &self,
        n: &ClaimedNotice,
        m: Outbound,
        result: Result<String, ChannelError>,
    ) -> NoticeOutcome {
        let mut outcome = NoticeOutcome {
            id: m.notice_id,
            state: "sent",
            channel: Some(m.channel.as_str().to_owned()),
            segments: (m.channel == Channel::Sms).then(|| sms_segments(&m.body).1 as i64),
            language: Some(m.language),
            body: Some(m.body),
            provider_id: None,
            reason: None,
            due_at: None,
            failed_channels: None,
            refund_attempt: false,
        };
        let now = self.clock.now();
        let tried = n
            .failed_channels
            .split('|')
            .filter(|c| !c.is_empty())
            .count() as i64;
        match result {
            Ok(id) => outcome.provider_id = Some(id),
            Err(ChannelError::Transient {
                reason,
                retry_after,
            }) if n.attempts < i64::from(self.max_attempts) * (tried + 1) => {
                let wait = self
                    .backoff(n.attempts)
                    .max(retry_after.unwrap_or_default());
                outcome.state = "queued";
                outcome.due_at = Some(millis(
                    now + chrono::Duration::from_std(wait).unwrap_or_default(),
                ));
                outcome.reason = Some(reason);
            }
            Err(e) => {
                let failed = if n.failed_channels.is_empty() {
                    m.channel.as_str().to_owned()
                } else {
                    format!("{}|{}", n.failed_channels, m.channel.as_str())
                };
                outcome.state = "queued";
                outcome.due_at = Some(millis(now));
                outcome.failed_channels = Some(failed);
                outcome.reason = Some(e.to_string());
            }
        }
        outcome
    }

    /// retry_base · 2^(attempts − 1), ±25 % jitter, at most ten minutes.
    fn backoff(&self, attempts: i64) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(1 << attempts.clamp(1, 16).saturating_sub(1));
        let capped = exp.min(Duration::from_secs(600));
        capped.mul_f64(rand::Rng::random_range(&mut rand::rng(), 0.75..1.25))
    }
}
