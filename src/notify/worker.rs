//! The delivery worker: claim due notices, choose a channel, render, send, record. Written as
//! one step ([`DeliveryWorker::step`]) and a loop around it ([`DeliveryWorker::run`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::plan::{choose, quiet_until, Choice, Contact};
use super::supersede::{self, Facts, Notice};
use super::templates::{sms_segments, Context, Templates};
use crate::channels::{ChannelError, Outbound, Transports};
use crate::clock::Clock;
use crate::domain::{Channel, Email, FaultId, Phone};
use crate::shared::SharedBook;
use crate::store::{
    from_millis, millis, BadContact, ClaimedNotice, ContactRow, NoticeOutcome, Store, StoreError,
};

/// Sends the outbox.
pub struct DeliveryWorker {
    pub store: Store,
    pub book: SharedBook,
    /// Shared so that several workers of one daemon share the rate limits.
    pub transports: Arc<Transports>,
    pub templates: Templates,
    pub critical_override: bool,
    /// Transient failures tolerated per channel before falling back to the next one.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub batch_size: usize,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// How long a notice may stay `sending` before it counts as interrupted by a crash.
    pub stale_sending: Duration,
    pub poll: Duration,
    pub clock: Clock,
    /// Wakes the worker before its next poll (quiet hours ended, a receipt asked for a
    /// fallback).
    pub wake: Arc<Notify>,
    /// Faults whose notice counts changed (their status documents are republished).
    pub dirty: Option<mpsc::UnboundedSender<FaultId>>,
}

impl DeliveryWorker {
    /// Runs until `stop`; the batch in hand is finished first.
    pub async fn run(self, stop: CancellationToken) {
        // A crash may have left notices `sending`: settle them before anything else (later
        // ones are the retry sweeper's job).
        if let Err(e) =
            super::jobs::fail_stale_sends(&self.store, self.clock.now(), self.stale_sending).await
        {
            tracing::error!(error = %e, "cannot check for interrupted notices");
        }
        while !stop.is_cancelled() {
            let busy = match self.step().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::error!(error = %e, "delivery step failed; will retry");
                    false
                }
            };
            if busy {
                continue; // more may be due: no pause while a fan-out is running
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
        tracing::info!("delivery worker stopped");
    }

    /// One batch: returns how many notices it handled.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let now = millis(self.clock.now());
        let claimed = self
            .store
            .claim_due_notices(now, self.batch_size as i64)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = claimed.iter().map(|n| n.customer_id.clone()).collect();
        let contacts: HashMap<String, Contact> = self
            .store
            .contacts(&ids)
            .await?
            .into_iter()
            .map(|c| (c.customer_id.clone(), contact(c)))
            .collect();
        let enabled = self.transports.carries();
        let siblings = self.siblings(&claimed).await?;
        let mut outcomes = Vec::with_capacity(claimed.len());
        let mut outbound = Vec::new();
        for notice in &claimed {
            let key = (notice.customer_id.clone(), notice.episode_started_at);
            let related = siblings.get(&key).map_or(&[][..], Vec::as_slice);
            match self.prepare(notice, contacts.get(&notice.customer_id), related, &enabled) {
                Prepared::Send(message) => outbound.push(message),
                Prepared::Done(outcome) => outcomes.push(outcome),
            }
        }
        self.store
            .finish_notices(&outcomes, millis(self.clock.now()))
            .await?;
        let by_id: HashMap<i64, &ClaimedNotice> = claimed.iter().map(|n| (n.id, n)).collect();
        let (logged, direct): (Vec<Outbound>, Vec<Outbound>) = outbound
            .into_iter()
            .partition(|m| self.transports.is_logged(m.channel));
        let mut finished = self.send_window(direct, &by_id).await?;
        let mut pending = logged.into_iter().peekable();
        while pending.peek().is_some() {
            let wave: Vec<Outbound> = pending.by_ref().take(self.concurrency.max(1)).collect();
            finished = self.send_wave(finished, wave, &by_id).await?;
        }
        self.store
            .finish_notices(&finished, millis(self.clock.now()))
            .await?;
        if let Some(dirty) = &self.dirty {
            let faults: std::collections::HashSet<&str> =
                claimed.iter().map(|n| n.fault_id.as_str()).collect();
            for id in faults.into_iter().filter_map(|f| FaultId::parse(f).ok()) {
                let _ = dirty.send(id);
            }
        }
        Ok(claimed.len())
    }

    /// Sends through a sliding window of `concurrency` requests, so one slow request (an SMTP
    /// relay's delayed ACK) does not hold back the rest. Freed slots are refilled a quarter of
    /// the window at a time: the refill is one transaction that records the outcomes finished
    /// so far and marks the next notices `sending` (fenced, as in [`Self::send_wave`]). So a
    /// crash leaves at most 1¼ windows in doubt. Returns the outcomes not yet recorded.
    async fn send_window(
        &self,
        direct: Vec<Outbound>,
        claims: &HashMap<i64, &ClaimedNotice>,
    ) -> Result<Vec<NoticeOutcome>, StoreError> {
        let window = self.concurrency.max(1);
        let refill = (window / 4).max(1);
        let mut queue = direct.into_iter().peekable();
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut finished = Vec::new();
        let mut bad = Vec::new();
        loop {
            let free = window - in_flight.len();
            if queue.peek().is_some() && (free >= refill || in_flight.is_empty()) {
                let next: Vec<Outbound> = queue.by_ref().take(free).collect();
                let done = std::mem::take(&mut finished);
                for m in self.mark_ours(&done, next, claims).await? {
                    in_flight.push(async move {
                        let result = self.transports.send_one(&m).await;
                        (m, result)
                    });
                }
                continue;
            }
            let Some((message, result)) = futures_util::StreamExt::next(&mut in_flight).await
            else {
                break;
            };
            self.settle(claims, &message, result, &mut finished, &mut bad);
        }
        if !bad.is_empty() {
            self.store.mark_bad_contacts(&bad).await?;
        }
        Ok(finished)
    }

    /// Sends one wave of at most `concurrency` notices through the log channel (one write and
    /// fsync per wave) and returns their outcomes, to be recorded with the next wave's mark. The wave is marked `sending` just before its
    /// requests leave, in the transaction that records the previous wave's outcomes, so a crash
    /// leaves only one wave in doubt (the rest of the batch is merely `claimed` and goes back in
    /// the queue). The mark is fenced by the claim's attempt number: a notice that went stale
    /// and was claimed again by another worker is left to it.
    async fn send_wave(
        &self,
        finished: Vec<NoticeOutcome>,
        wave: Vec<Outbound>,
        claims: &HashMap<i64, &ClaimedNotice>,
    ) -> Result<Vec<NoticeOutcome>, StoreError> {
        let wave = self.mark_ours(&finished, wave, claims).await?;
        let results = self.transports.send_logged(&wave).await;
        let mut outcomes = Vec::with_capacity(wave.len());
        let mut bad = Vec::new();
        for (message, result) in wave.iter().zip(results) {
            self.settle(claims, message, result, &mut outcomes, &mut bad);
        }
        if !bad.is_empty() {
            self.store.mark_bad_contacts(&bad).await?;
        }
        Ok(outcomes)
    }

    /// Records `finished` and marks `next` `sending` in one transaction, fenced by each claim's
    /// attempt number; returns the messages that are still ours to send.
    async fn mark_ours(
        &self,
        finished: &[NoticeOutcome],
        next: Vec<Outbound>,
        claims: &HashMap<i64, &ClaimedNotice>,
    ) -> Result<Vec<Outbound>, StoreError> {
        let fence: Vec<(i64, i64)> = next
            .iter()
            .filter_map(|m| claims.get(&m.notice_id).map(|n| (n.id, n.attempts)))
            .collect();
        let now = millis(self.clock.now());
        let ours: std::collections::HashSet<i64> = self
            .store
            .advance_wave(finished, &fence, now)
            .await?
            .into_iter()
            .collect();
        Ok(next
            .into_iter()
            .filter(|m| ours.contains(&m.notice_id))
            .collect())
    }

    /// Turns one send's result into the notice's outcome, noting a contact the provider called
    /// bad.
    fn settle(
        &self,
        claims: &HashMap<i64, &ClaimedNotice>,
        message: &Outbound,
        result: Result<String, ChannelError>,
        outcomes: &mut Vec<NoticeOutcome>,
        bad: &mut Vec<BadContact>,
    ) {
        if let Err(ChannelError::DeadContact(reason)) = &result {
            bad.push(BadContact {
                customer_id: message.customer_id.clone(),
                channel: message.channel,
                reason: reason.clone(),
            });
        }
        if let Some(notice) = claims.get(&message.notice_id) {
            outcomes.push(self.outcome(notice, message, result));
        }
    }

    /// States of the notices the claimed ones depend on (see [`supersede::reason`]), by
    /// (customer, episode): one query per kind.
    async fn siblings(
        &self,
        claimed: &[ClaimedNotice],
    ) -> Result<HashMap<(String, i64), Vec<String>>, StoreError> {
        let mut out: HashMap<(String, i64), Vec<String>> = HashMap::new();
        for (kind, related) in [("etr_update", "outage"), ("planned_cancelled", "planned")] {
            let pairs: Vec<(String, i64)> = claimed
                .iter()
                .filter(|n| n.kind == kind)
                .map(|n| (n.customer_id.clone(), n.episode_started_at))
                .collect();
            if pairs.is_empty() {
                continue;
            }
            for (c, e, state) in self.store.notice_states_for(&pairs, related).await? {
                out.entry((c, e)).or_default().push(state);
            }
        }
        Ok(out)
    }

    /// The message for a notice, or the outcome that ends it without sending.
    fn prepare(
        &self,
        n: &ClaimedNotice,
        contact: Option<&Contact>,
        siblings: &[String],
        enabled: &[Channel],
    ) -> Prepared {
        match self.try_prepare(n, contact, siblings, enabled) {
            Ok(message) => Prepared::Send(message),
            Err(outcome) => Prepared::Done(*outcome),
        }
    }

    fn try_prepare(
        &self,
        n: &ClaimedNotice,
        contact: Option<&Contact>,
        siblings: &[String],
        enabled: &[Channel],
    ) -> Result<Outbound, Box<NoticeOutcome>> {
        let ends = |state, reason: &str| {
            Box::new(NoticeOutcome {
                id: n.id,
                state,
                channel: None,
                language: None,
                body: None,
                provider_id: None,
                reason: Some(reason.to_owned()),
                due_at: None,
                failed_channels: None,
                segments: None,
                refund_attempt: false,
            })
        };
        let contact = contact.ok_or_else(|| ends("failed", "customer no longer exists"))?;
        let facts = self.facts(n);
        let notice = Notice {
            kind: &n.kind,
            variant: &n.variant,
            episode_started_at: n.episode_started_at,
        };
        if let Some(why) = supersede::reason(&notice, &facts, siblings, self.clock.now()) {
            return Err(ends("suppressed", why));
        }
        if let Some(until) = quiet_until(contact, &n.kind, facts.critical_fault, self.clock.now()) {
            let mut wait = ends("queued", "waiting for the end of quiet hours");
            wait.due_at = Some(millis(until));
            wait.refund_attempt = true;
            return Err(wait);
        }
        let failed: Vec<Channel> = n
            .failed_channels
            .split('|')
            .filter_map(|c| c.parse().ok())
            .collect();
        let usable: Vec<Channel> = enabled
            .iter()
            .copied()
            .filter(|c| !failed.contains(c))
            .collect();
        let (channel, address) = match choose(contact, &usable, self.critical_override) {
            Choice::Send { channel, address } => (channel, address),
            Choice::OptedOut => return Err(ends("suppressed", "opted out")),
            Choice::Unreachable if !failed.is_empty() => {
                let why = format!("every channel failed (tried: {})", n.failed_channels);
                return Err(ends("failed", &why));
            }
            Choice::Unreachable => {
                return Err(ends("unreachable", "no enabled channel has a contact"))
            }
        };
        // For planned notices the "episode" is the planned window.
        let until = if n.kind.starts_with("planned") {
            facts.ends_at
        } else {
            facts.until
        };
        let ctx = Context {
            name: &contact.name,
            timezone: contact.timezone,
            since: from_millis(n.episode_started_at).unwrap_or_else(|_| self.clock.now()),
            until,
            etr: facts.etr,
            cause: &facts.cause,
        };
        let kind = supersede::template_kind(&notice);
        let rendered = if channel == Channel::Sms {
            self.templates.render_sms(&contact.language, kind, &ctx)
        } else {
            self.templates.render(&contact.language, kind, &ctx)
        };
        let rendered = rendered.ok_or_else(|| ends("failed", "no template for this kind"))?;
        Ok(Outbound {
            notice_id: n.id,
            customer_id: n.customer_id.clone(),
            fault_id: n.fault_id.clone(),
            kind: n.kind.clone(),
            channel,
            address,
            language: rendered.language,
            title: rendered.title,
            body: rendered.body,
        })
    }

    /// What a send's result makes of the notice: sent; back in the queue for a retry on the same
    /// channel (transient, within the budget, after a growing wait that honours Retry-After);
    /// or back in the queue at once for the next channel (permanent, or the budget is spent).
    fn outcome(
        &self,
        n: &ClaimedNotice,
        m: &Outbound,
        result: Result<String, ChannelError>,
    ) -> NoticeOutcome {
        let mut outcome = NoticeOutcome {
            id: m.notice_id,
            state: "sent",
            channel: Some(m.channel.as_str().to_owned()),
            language: Some(m.language.clone()),
            body: Some(m.body.clone()),
            provider_id: None,
            reason: None,
            due_at: None,
            failed_channels: None,
            segments: (m.channel == Channel::Sms).then(|| sms_segments(&m.body).1 as i64),
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

    /// What the notice needs to know of its fault and episode, read under one short lock and
    /// copied field by field: cloning the fault would copy its member list, which can hold a
    /// million customers, once per notice.
    fn facts(&self, n: &ClaimedNotice) -> Facts {
        let book = self.book.read();
        let fault = FaultId::parse(&n.fault_id)
            .ok()
            .and_then(|id| book.fault(&id));
        let episode_over = crate::domain::CustomerId::parse(&n.customer_id)
            .ok()
            .and_then(|id| book.index().idx_of(&id))
            .is_some_and(|idx| book.episode_of(idx).map(millis) != Some(n.episode_started_at));
        Facts {
            critical_fault: fault
                .is_some_and(|f| f.severity == crate::ingest::event::Severity::Critical),
            episode_over,
            fault_state: fault.map(|f| f.state),
            cause: fault.map_or_else(|| "unknown".to_owned(), |f| f.cause.clone()),
            etr: fault.and_then(|f| f.etr),
            starts_at: fault.and_then(|f| f.starts_at),
            ends_at: fault.and_then(|f| f.ends_at),
            until: fault.map(|f| f.restored_at.unwrap_or_else(|| self.clock.now())),
        }
    }
}

/// What to do with a claimed notice.
enum Prepared {
    Send(Outbound),
    Done(NoticeOutcome),
}

/// A stored contact, parsed. Values that no longer parse are treated as missing.
fn contact(row: ContactRow) -> Contact {
    Contact {
        customer_id: row.customer_id,
        name: row.name,
        phone: row.phone.and_then(|p| Phone::parse(&p).ok()),
        email: row.email.and_then(|e| Email::parse(&e).ok()),
        push_token: row.push_token,
        language: row.language,
        channels: row
            .channels
            .split('|')
            .filter_map(|c| c.parse().ok())
            .collect(),
        timezone: row.timezone.parse().unwrap_or(Tz::UTC),
        critical: row.critical.is_some_and(|c| !c.is_empty()),
        quiet_hours: row.quiet_hours.and_then(|q| q.parse().ok()),
    }
}
