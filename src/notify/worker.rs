//! The delivery worker: claim due notices, choose a channel, render, send, record. Written as
//! one step ([`DeliveryWorker::step`]) and a loop around it ([`DeliveryWorker::run`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::pause::ClaimPause;
use super::plan::{choose, quiet_until, Choice, Contact};
use super::supersede::{self, Facts, Notice};
use super::templates::{Context, Dispatch, Templates};
use crate::channels::{Outbound, Transports};
use crate::clock::Clock;
use crate::domain::{Channel, Email, FaultId, Phone};
use crate::shared::SharedBook;
use crate::store::{
    from_millis, millis, ClaimedNotice, ContactRow, NoticeOutcome, Store, StoreError,
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
    /// Held while this daemon writes a large set of notices; no claim is made meanwhile.
    pub claims: ClaimPause,
    /// Faults whose notice counts changed (their status documents are republished).
    pub dirty: Option<mpsc::UnboundedSender<FaultId>>,
}

/// A claimed notice and the message rendered for it.
pub(super) struct Job {
    pub claim: ClaimedNotice,
    pub message: Outbound,
}

impl DeliveryWorker {
    /// Runs until `stop`. Claiming and preparing the next batch overlaps with sending the
    /// current one (one prepared batch waits in between at most), so a fan-out's window of
    /// requests stays full across batch boundaries. On `stop` the requests in flight finish and
    /// claims not yet sent go back in the queue.
    pub async fn run(self, stop: CancellationToken) {
        // A crash may have left notices `sending`: settle them before anything else (later
        // ones are the retry sweeper's job).
        if let Err(e) =
            super::jobs::fail_stale_sends(&self.store, self.clock.now(), self.stale_sending).await
        {
            tracing::error!(error = %e, "cannot check for interrupted notices");
        }
        let (tx, mut rx) = mpsc::channel(1);
        let send = async {
            while let Err(e) = self.deliver(&mut rx, &stop).await {
                tracing::error!(error = %e, "sending notices failed; will retry");
                tokio::time::sleep(self.poll).await;
            }
        };
        tokio::join!(self.feed(tx, &stop), send);
        tracing::info!("delivery worker stopped");
    }

    /// The claiming half: claims, prepares and hands over batches until `stop`.
    async fn feed(&self, tx: mpsc::Sender<Vec<Job>>, stop: &CancellationToken) {
        // After a pause the first claim is one window's worth, so the first notices leave
        // without waiting for a whole batch to be read and rendered.
        let first = self.concurrency.clamp(1, self.batch_size.max(1));
        let mut size = first;
        while !stop.is_cancelled() {
            if self.claims.is_held() {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    _ = self.claims.released() => {}
                }
            }
            let jobs = match self.claim_batch(size).await {
                Ok(Some((_, jobs))) => jobs,
                Ok(None) => {
                    size = first;
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "claiming notices failed; will retry");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(self.poll) => {}
                    }
                    continue;
                }
            };
            size = self.batch_size.max(1);
            if jobs.is_empty() {
                continue; // the whole batch ended without sending (suppressed, waiting, …)
            }
            // Stop first: once the sender has stopped, nobody reads the channel.
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    if let Err(e) = self.release(&jobs).await {
                        tracing::error!(error = %e, "cannot release unsent claims; the sweeper will");
                    }
                    break;
                }
                permit = tx.reserve() => match permit {
                    Ok(permit) => permit.send(jobs),
                    Err(_) => break,
                },
            }
        }
    }

    /// One batch, claimed and sent to the end: returns how many notices it handled.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let Some((n, jobs)) = self.claim_batch(self.batch_size).await? else {
            return Ok(0);
        };
        let (tx, mut rx) = mpsc::channel(1);
        let _ = tx.send(jobs).await;
        drop(tx);
        self.deliver(&mut rx, &CancellationToken::new()).await?;
        Ok(n)
    }

    /// Claims up to `limit` due notices and prepares them. Notices that end without a send
    /// (suppressed, waiting for quiet hours, unreachable) are recorded here; the rest are
    /// returned to be sent, with how many were claimed. `None` when nothing was due.
    async fn claim_batch(&self, limit: usize) -> Result<Option<(usize, Vec<Job>)>, StoreError> {
        let now = millis(self.clock.now());
        let claimed = self.store.claim_due_notices(now, limit as i64).await?;
        if claimed.is_empty() {
            return Ok(None);
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
        let mut outcomes = Vec::new();
        let mut faults = HashSet::new();
        let count = claimed.len();
        let mut jobs = Vec::with_capacity(count);
        for notice in claimed {
            let key = (notice.customer_id.clone(), notice.episode_started_at);
            let related = siblings.get(&key).map_or(&[][..], Vec::as_slice);
            match self.prepare(
                &notice,
                contacts.get(&notice.customer_id),
                related,
                &enabled,
            ) {
                Prepared::Send(message) => jobs.push(Job {
                    claim: notice,
                    message,
                }),
                Prepared::Done(outcome) => {
                    faults.insert(notice.fault_id);
                    outcomes.push(outcome);
                }
            }
        }
        if !outcomes.is_empty() {
            self.store
                .finish_notices(&outcomes, millis(self.clock.now()))
                .await?;
            if let Some(dirty) = &self.dirty {
                for id in faults.iter().filter_map(|f| FaultId::parse(f).ok()) {
                    let _ = dirty.send(id);
                }
            }
        }
        Ok(Some((count, jobs)))
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
        // A staff dispatch names the slot (its variant, `skill#index`) and the fault's place.
        let place = if n.kind == "dispatch" {
            self.place_of(&n.fault_id)
        } else {
            String::new()
        };
        let ctx = Context {
            name: &contact.name,
            timezone: contact.timezone,
            since: from_millis(n.episode_started_at).unwrap_or_else(|_| self.clock.now()),
            until,
            etr: facts.etr,
            cause: &facts.cause,
            dispatch: (n.kind == "dispatch").then(|| Dispatch {
                fault: &n.fault_id,
                skill: n.variant.split('#').next().unwrap_or_default(),
                place: &place,
            }),
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

    /// Where a fault is, `lat,lon` (the centre of its customers out).
    fn place_of(&self, fault_id: &str) -> String {
        let book = self.book.read();
        FaultId::parse(fault_id)
            .ok()
            .and_then(|id| crate::staffing::service::fault_centre(&book, &id))
            .map_or_else(String::new, |c| format!("{:.5},{:.5}", c.lat, c.lon))
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
