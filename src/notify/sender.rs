//! The sending half of the delivery worker: a sliding window of requests, refilled by
//! transactions that record what finished and claim what is due next, so the window never
//! drains between batches.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::templates::sms_segments;
use super::worker::{DeliveryWorker, Job, Refilled};
use crate::channels::{ChannelError, Outbound};
use crate::domain::{Channel, FaultId};
use crate::store::{
    millis, BadContact, ClaimRequest, ClaimedNotice, NoticeOutcome, QueueKey, StagedKey, StoreError,
};

/// Results not yet written: outcomes, contacts a provider refused, and the faults they touch.
#[derive(Default)]
pub(super) struct Unrecorded {
    outcomes: Vec<NoticeOutcome>,
    bad: Vec<BadContact>,
    faults: HashSet<String>,
}

/// Where the next claim reads the queue from (see [`ClaimRequest`]): after the last notice
/// claimed, but from the front at least once per poll interval, which bounds how long a more
/// urgent notice queued behind the cursor (a new critical fault's, say) waits for its claim.
/// Staged notices (PostgreSQL) have a cursor of their own, kept the same way.
struct Cursor {
    after: Option<QueueKey>,
    after_staged: Option<StagedKey>,
    from_front: Instant,
}

impl Cursor {
    fn new() -> Self {
        Self {
            after: None,
            after_staged: None,
            from_front: Instant::now(),
        }
    }

    /// A claim of `limit` notices starting now, from where the cursor stands (`None`: the front).
    fn start(&mut self, limit: usize, every: Duration) -> ClaimRequest {
        if self.from_front.elapsed() >= every {
            self.after = None;
            self.after_staged = None;
        }
        if self.after.is_none() && self.after_staged.is_none() {
            self.from_front = Instant::now();
        }
        ClaimRequest {
            limit,
            after: self.after,
            after_staged: self.after_staged.clone(),
        }
    }

    /// A refill claimed up to `last` (and `last_staged`). Refills may end out of order; the
    /// cursor never goes back.
    fn advance(&mut self, last: Option<QueueKey>, last_staged: Option<StagedKey>) {
        self.after = self.after.max(last);
        self.after_staged = self.after_staged.take().max(last_staged);
    }
}

/// A refill in progress: how many slots it will fill at most, and what it brought.
type Refill<'a> = BoxFuture<'a, (usize, Result<Refilled, WindowError>)>;

/// Why the sending window stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum WindowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a refill was cancelled: the runtime it ran on is shutting down")]
    RefillCancelled,
}

/// A spawned refill's result. A refill that panicked panics the window too, as it did when
/// refills ran inside it.
fn joined(
    result: Result<Result<Refilled, StoreError>, tokio::task::JoinError>,
) -> Result<Refilled, WindowError> {
    match result {
        Ok(refilled) => Ok(refilled?),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(WindowError::RefillCancelled),
    }
}

impl DeliveryWorker {
    /// Sends until `stop`; then the requests in flight finish and are recorded.
    ///
    /// Freed slots are refilled by one transaction that records the outcomes finished so far
    /// and claims the next notices straight into `sending` (see [`crate::store::Store::refill`]).
    /// The transaction runs while the requests in flight go on (what frees up meanwhile is the
    /// next refill), so neither the database nor the providers wait for the other. PostgreSQL
    /// runs two refills at once on two connections (a refill there is mostly waiting on round
    /// trips); SQLite has one writer, so one. A refill claims only the slots free when it starts,
    /// less those a pending refill will fill: at most one window of notices is ever `sending`,
    /// which bounds what a crash leaves in doubt.
    pub(super) async fn deliver(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> Result<(), WindowError> {
        let window = self.concurrency.max(1);
        let refills = match self.store {
            crate::store::Store::Postgres(_) => 2,
            crate::store::Store::Sqlite(_) => 1,
        };
        // A refill is a transaction, paid for per refill: its statements, its commit, and on
        // SQLite every page it touches written to the WAL again (a page holds some fifteen
        // notices, and each notice is changed by two refills). So a refill waits until it can
        // fill many slots, yet never so many that the window runs low: with every refill
        // pending, half of the window is still in flight (docs/performance-history.md).
        let refill = (window / (2 * refills)).max(1);
        let mut in_flight = FuturesUnordered::new();
        let mut marking: FuturesUnordered<Refill<'_>> = FuturesUnordered::new();
        let mut promised = 0;
        let mut done = Unrecorded::default();
        // The last claim found fewer notices due than it asked for: the next one waits for a
        // wake-up or the next poll.
        let mut drained = false;
        let mut poll_at = Instant::now();
        let mut cursor = Cursor::new();
        loop {
            let stopping = stop.is_cancelled();
            let paused = self.claims.is_held();
            let free = window.saturating_sub(in_flight.len() + promised);
            let idle = in_flight.is_empty() && marking.is_empty();
            if !stopping
                && !paused
                && !drained
                && marking.len() < refills
                && free > 0
                && (free >= refill || idle)
            {
                let n = free.min(self.batch_size.max(1));
                let claim = cursor.start(n, self.poll);
                let outcomes = std::mem::take(&mut done.outcomes);
                let faults = std::mem::take(&mut done.faults);
                promised += n;
                let task = self.spawn_refill(outcomes, faults, claim);
                marking.push(Box::pin(async move { (n, joined(task.await)) }));
                continue;
            }
            if idle {
                // Nothing in flight and nothing to claim yet: record what finished.
                self.record(&mut done).await?;
                if stopping {
                    return Ok(());
                }
            }
            let waiting = drained && !paused;
            tokio::select! {
                Some((n, refilled)) = marking.next() => {
                    promised -= n;
                    let Refilled { claimed, last, last_staged, jobs } = refilled?;
                    cursor.advance(last, last_staged);
                    if claimed < n {
                        drained = true;
                        poll_at = Instant::now() + self.poll;
                    }
                    let (logged, direct) = self.split_logged(jobs);
                    in_flight.extend(direct.into_iter().map(|job| self.send_job(job)));
                    self.send_logged(logged, &mut done).await;
                }
                Some((job, result)) = in_flight.next() => self.settle(job, result, &mut done),
                _ = self.wake.notified(), if waiting => drained = false,
                _ = tokio::time::sleep_until(poll_at), if waiting => drained = false,
                _ = self.claims.released(), if paused => {}
                _ = stop.cancelled(), if !stopping => {}
            }
        }
    }

    /// Starts a refill (recording `outcomes`, then claiming what `claim` asks for) on the
    /// refills' runtime, reporting `faults` once it committed.
    ///
    /// A refill is a chain of statements, and each waits for a poll from its thread before the
    /// next one goes out. On the delivery thread every such poll waited behind the window's
    /// hundreds of connection tasks: a refill of 256 notices took 22.6 ms, 8.8 ms of them the
    /// database's own work, and for a third of the fan-out the window ran below a quarter full
    /// waiting for it. On the daemon's shared runtime, otherwise idle during a fan-out, the
    /// same refill takes 13–15 ms (docs/performance-history.md), and the rendering of what it claimed
    /// leaves the delivery thread as well.
    fn spawn_refill(
        self: &Arc<Self>,
        outcomes: Vec<NoticeOutcome>,
        faults: HashSet<String>,
        claim: ClaimRequest,
    ) -> tokio::task::JoinHandle<Result<Refilled, StoreError>> {
        let this = Arc::clone(self);
        let refill = async move {
            let mut refilled = this.refill(outcomes, claim).await;
            if let Ok(refilled) = &mut refilled {
                this.report_dirty(faults);
                // Building an e-mail (MIME, encoding) took a twelfth of the delivery thread's
                // time in a fan-out, for a tenth of the notices; here it is off that thread.
                for job in &mut refilled.jobs {
                    job.email = this.transports.build_email(&job.message);
                }
            }
            refilled
        };
        match &self.refills_on {
            Some(runtime) => runtime.spawn(refill),
            None => tokio::spawn(refill),
        }
    }

    /// Sends `jobs` to the end, at most a window's worth at once (a [`DeliveryWorker::step`]).
    pub(super) async fn send_all(&self, jobs: Vec<Job>, done: &mut Unrecorded) {
        let (logged, direct) = self.split_logged(jobs);
        self.send_logged(logged, done).await;
        let mut results = futures_util::stream::iter(direct)
            .map(|job| self.send_job(job))
            .buffer_unordered(self.concurrency.max(1));
        while let Some((job, result)) = results.next().await {
            self.settle(job, result, done);
        }
    }

    /// Jobs for the log channel (sent in batches) apart from the rest (sent one by one).
    fn split_logged(&self, jobs: Vec<Job>) -> (Vec<Job>, Vec<Job>) {
        jobs.into_iter()
            .partition(|j| self.transports.is_logged(j.message.channel))
    }

    /// Sends one job on its channel, timing the request.
    async fn send_job(&self, mut job: Job) -> (Job, Result<String, ChannelError>) {
        let started = std::time::Instant::now();
        let result = match job.email.take() {
            Some(built) => self.transports.send_built_email(built).await,
            None => self.transports.send_one(&job.message).await,
        };
        crate::telemetry::metrics::SEND_LATENCY.observe(started.elapsed().as_secs_f64());
        (job, result)
    }

    /// Sends messages for the log channel in waves of a window (one write and fsync each).
    async fn send_logged(&self, jobs: Vec<Job>, done: &mut Unrecorded) {
        let mut pending = jobs.into_iter().peekable();
        while pending.peek().is_some() {
            let wave: Vec<Job> = pending.by_ref().take(self.concurrency.max(1)).collect();
            let messages: Vec<Outbound> = wave.iter().map(|j| j.message.clone()).collect();
            let results = self.transports.send_logged(&messages).await;
            for (job, result) in wave.into_iter().zip(results) {
                self.settle(job, result, done);
            }
        }
    }

    /// Writes the unrecorded outcomes and bad contacts.
    pub(super) async fn record(&self, done: &mut Unrecorded) -> Result<(), StoreError> {
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

    /// Tells the status publisher which faults' notice counts changed.
    pub(super) fn report_dirty(&self, faults: HashSet<String>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64) -> QueueKey {
        QueueKey {
            priority: 1,
            due_at: 0,
            id,
        }
    }

    fn refilled() -> Refilled {
        Refilled {
            claimed: 3,
            last: Some(key(7)),
            last_staged: None,
            jobs: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_spawned_refill_comes_back_as_it_ended() {
        let ok = tokio::spawn(async { Ok(refilled()) }).await;
        assert_eq!(joined(ok).unwrap().claimed, 3);

        let failed = tokio::spawn(async { Err(StoreError::Corrupt("bad row".into())) }).await;
        assert!(matches!(
            joined(failed),
            Err(WindowError::Store(StoreError::Corrupt(_)))
        ));

        // The runtime the refills run on is shutting down: an error to retry, not a panic.
        let stuck = tokio::spawn(std::future::pending::<Result<Refilled, StoreError>>());
        stuck.abort();
        assert!(matches!(
            joined(stuck.await),
            Err(WindowError::RefillCancelled)
        ));

        let panicked = tokio::spawn(async {
            if true {
                panic!("refill bug");
            }
            Ok(refilled())
        })
        .await;
        let resumed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| joined(panicked)));
        assert!(resumed.is_err(), "a refill's panic reaches the window");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cursor_reads_from_the_front_once_per_poll() {
        let poll = Duration::from_millis(200);
        let mut cursor = Cursor::new();
        let at = |c: &mut Cursor| {
            let request = c.start(5, poll);
            (request.after, request.after_staged.map(|k| k.batch))
        };
        assert_eq!(
            at(&mut cursor),
            (None, None),
            "the first claim reads from the front"
        );
        let staged = |batch| StagedKey {
            batch,
            customer_id: "C1".into(),
        };
        cursor.advance(Some(key(10)), Some(staged(3)));
        // A refill that started earlier ends later with smaller keys: no step back.
        cursor.advance(Some(key(4)), Some(staged(2)));
        cursor.advance(None, None);
        tokio::time::advance(Duration::from_millis(150)).await;
        assert_eq!(at(&mut cursor), (Some(key(10)), Some(3)));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(at(&mut cursor), (None, None), "a poll interval has passed");
        cursor.advance(Some(key(20)), None);
        assert_eq!(at(&mut cursor), (Some(key(20)), None));
    }
}
