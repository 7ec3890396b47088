//! The delivery worker: claim due notices, choose a channel, render, send, record. Written as
//! one step ([`DeliveryWorker::step`]) and a loop around it ([`DeliveryWorker::run`], with the
//! sliding window of `sender`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::pause::ClaimPause;
use super::plan::{choose, quiet_until, Choice, Contact};
use super::sender::Unrecorded;
use super::supersede::{self, Facts, Notice};
use super::templates::{Context, Dispatch, Templates};
use crate::channels::email::BuiltEmail;
use crate::channels::{ChannelError, Outbound, Transports};
use crate::clock::Clock;
use crate::domain::{Channel, Email, FaultId, Phone};
use crate::shared::SharedBook;
use crate::store::{
    from_millis, millis, Claim, ClaimRequest, ClaimedNotice, ContactRow, Dependency, NoticeOutcome,
    QueueKey, StagedKey, Store, StoreError,
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
    /// The most notices one claim takes.
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
    /// The runtime the window's refills run on (`None`: the one the worker runs on). The
    /// daemon runs the worker on a thread of its own and its refills on the shared runtime;
    /// see [`DeliveryWorker::deliver`] for why.
    pub refills_on: Option<tokio::runtime::Handle>,
}

/// A claimed notice and the message rendered for it.
pub(super) struct Job {
    pub claim: ClaimedNotice,
    pub message: Outbound,
    /// Its e-mail, built ahead of the send (see [`crate::channels::Transports::build_email`]).
    pub email: Option<Result<BuiltEmail, ChannelError>>,
}

/// What one refill brought: how many notices it claimed, the last of them in queue order (and
/// among staged notices), and those of them to send.
pub(super) struct Refilled {
    pub claimed: usize,
    pub last: Option<QueueKey>,
    pub last_staged: Option<StagedKey>,
    pub jobs: Vec<Job>,
}

/// Notices whose fate depends on another notice of the same customer and episode (see
/// [`supersede::reason`]). Only momentary restorations depend on their outage notice: the
/// lookup would cost every refill of a large restoration a query for nothing.
const DEPENDS: [Dependency; 3] = [
    Dependency {
        kind: "etr_update",
        variant: None,
        on: "outage",
    },
    Dependency {
        kind: "planned_cancelled",
        variant: None,
        on: "planned",
    },
    Dependency {
        kind: "restored",
        variant: Some(super::intents::MOMENTARY),
        on: "outage",
    },
];

impl DeliveryWorker {
    /// Runs until `stop`: on `stop` the requests in flight finish and are recorded; notices
    /// not claimed yet stay queued.
    pub async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        // A crash may have left notices `sending`: settle them before anything else (later
        // ones are the retry sweeper's job).
        if let Err(e) =
            super::jobs::fail_stale_sends(&this.store, this.clock.now(), this.stale_sending).await
        {
            tracing::error!(error = %e, "cannot check for interrupted notices");
        }
        while let Err(e) = this.deliver(&stop).await {
            tracing::error!(error = %e, "sending notices failed; will retry");
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(this.poll) => {}
            }
        }
        tracing::info!("delivery worker stopped");
    }

    /// One batch, claimed and sent to the end: returns how many notices it claimed.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let claim = ClaimRequest {
            limit: self.batch_size.max(1),
            ..ClaimRequest::default()
        };
        let refilled = self.refill(Vec::new(), claim).await?;
        let mut done = Unrecorded::default();
        self.send_all(refilled.jobs, &mut done).await;
        self.record(&mut done).await?;
        Ok(refilled.claimed)
    }

    /// One refill (see [`Store::refill`]): records `finished`, claims the due notices `claim`
    /// asks for and prepares them; notices that end without a send are recorded in the same
    /// transaction, and their faults reported.
    pub(super) async fn refill(
        &self,
        finished: Vec<NoticeOutcome>,
        claim: ClaimRequest,
    ) -> Result<Refilled, StoreError> {
        let enabled = self.transports.carries();
        let now = millis(self.clock.now());
        let (refilled, faults) = self
            .store
            .refill(&finished, claim, &DEPENDS, now, |claim| {
                self.prepare_claim(claim, &enabled)
            })
            .await?;
        self.report_dirty(faults);
        Ok(refilled)
    }

    /// Prepares what a refill claimed: the jobs to send, and the outcomes of the notices that
    /// end here (with their faults).
    fn prepare_claim(
        &self,
        claim: Claim,
        enabled: &[Channel],
    ) -> (Vec<NoticeOutcome>, (Refilled, HashSet<String>)) {
        let contacts: HashMap<String, Contact> = claim
            .contacts
            .into_iter()
            .map(|c| (c.customer_id.clone(), contact(c)))
            .collect();
        let mut related = Related::new();
        for r in claim.related {
            let key = (r.customer_id, r.episode_started_at, r.kind);
            related.entry(key).or_default().push(r.state);
        }
        let claimed = claim.notices.len();
        // The queue's cursor follows notices claimed from the queue only: a staged notice's
        // key (a fresh id) lies past every queued notice of its priority, and a cursor there
        // made each claim read past the queue's end before reading it from the front.
        let last = claim
            .notices
            .iter()
            .filter(|n| n.staged.is_none())
            .map(ClaimedNotice::key)
            .max();
        let last_staged = claim
            .notices
            .iter()
            .filter_map(ClaimedNotice::staged_key)
            .max();
        let mut jobs = Vec::with_capacity(claimed);
        let mut ended = Vec::new();
        let mut faults = HashSet::new();
        for notice in claim.notices {
            let contact = contacts.get(&notice.customer_id);
            match self.try_prepare(&notice, contact, siblings(&related, &notice), enabled) {
                Ok(message) => jobs.push(Job {
                    claim: notice,
                    message,
                    email: None,
                }),
                Err(outcome) => {
                    faults.insert(notice.fault_id);
                    ended.push(*outcome);
                }
            }
        }
        let refilled = Refilled {
            claimed,
            last,
            last_staged,
            jobs,
        };
        (ended, (refilled, faults))
    }

    /// The message for a notice, or the outcome that ends it without sending.
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
            etr_announced: fault.and_then(|f| f.etr_announced),
            starts_at: fault.and_then(|f| f.starts_at),
            ends_at: fault.and_then(|f| f.ends_at),
            until: fault.map(|f| f.restored_at.unwrap_or_else(|| self.clock.now())),
        }
    }
}

/// States of related notices by (customer, episode, kind).
type Related = HashMap<(String, i64, String), Vec<String>>;

/// The states of the notices `notice` depends on (see [`DEPENDS`]).
fn siblings<'r>(related: &'r Related, notice: &ClaimedNotice) -> &'r [String] {
    DEPENDS
        .iter()
        .find(|d| d.applies_to(&notice.kind, &notice.variant))
        .and_then(|d| {
            let key = (
                notice.customer_id.clone(),
                notice.episode_started_at,
                d.on.to_owned(),
            );
            related.get(&key)
        })
        .map_or(&[], Vec::as_slice)
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
