//! The scheduled jobs of notification (run by tokio-cron-scheduler on the schedules of
//! `[schedule]`): each is one step a test can call directly on a controlled clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

use super::pause::ClaimPause;
use super::supersede::EtrUpdate;
use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::FaultId;
use crate::outage::{FaultState, OutageBook};
use crate::shared::SharedBook;
use crate::store::{millis, NoticeIntent, Store, StoreError};

/// State and settings the jobs share.
pub struct Jobs {
    pub store: Store,
    pub book: SharedBook,
    pub clock: Clock,
    /// Wakes the delivery worker.
    pub wake: Arc<Notify>,
    /// Held while a large set of notices is written (the worker does not claim meanwhile).
    pub claims: ClaimPause,
    /// Advance-notice offsets, hours before a planned start, largest first.
    pub planned_offsets_hours: Vec<u32>,
    pub retention_days: u32,
    /// How long a notice may stay `sending` before it counts as interrupted.
    pub stale_sending: Duration,
    /// How long an erasure waits before it completes (see [`erasure_grace`]).
    pub erasure_grace: Duration,
    /// (fault, start or ETR, variant) already turned into notices by this process: the outbox's
    /// unique key makes repeating them harmless, this only saves the work.
    done: Mutex<HashSet<(FaultId, i64, String)>>,
}

impl Jobs {
    pub fn new(
        s: &Settings,
        store: Store,
        book: SharedBook,
        clock: Clock,
        wake: Arc<Notify>,
        claims: ClaimPause,
    ) -> Self {
        let mut offsets = s.notify.planned_offsets_hours.clone();
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        offsets.dedup();
        Self {
            store,
            book,
            clock,
            wake,
            claims,
            planned_offsets_hours: offsets,
            retention_days: s.retention.days,
            stale_sending: Duration::from_secs(s.notify.stale_sending_secs),
            erasure_grace: erasure_grace(s.mapping.reload_secs),
            done: Mutex::new(HashSet::new()),
        }
    }

    /// Advance notices of planned outages: for each planned fault, the nearest offset already
    /// reached (a plan announced 3 h ahead gets the 2 h notice, not a late 48 h one). Returns
    /// how many notices were created.
    pub async fn planned_notices(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let due: Vec<(FaultId, i64, String, Vec<NoticeIntent>)> = {
            let book = self.book.read();
            book.faults()
                .filter(|f| f.state == FaultState::Planned)
                .filter_map(|f| {
                    let starts = f.starts_at.filter(|&s| s > now)?;
                    let hours = self
                        .planned_offsets_hours
                        .iter()
                        .copied()
                        .filter(|&h| now >= starts - chrono::Duration::hours(h.into()))
                        .min()?;
                    let variant = format!("{hours}h");
                    let intents = intents(
                        &book,
                        &f.id,
                        &f.affected,
                        "planned",
                        &variant,
                        |_| Some(millis(starts)),
                        millis(now),
                    );
                    Some((f.id.clone(), millis(starts), variant, intents))
                })
                .collect()
        };
        self.create(due).await
    }

    /// "Still working on it" for customers still out when their fault's ETR has passed.
    pub async fn etr_followups(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let due: Vec<(FaultId, i64, String, Vec<NoticeIntent>)> = {
            let book = self.book.read();
            book.faults()
                .filter(|f| f.state == FaultState::Active)
                .filter_map(|f| {
                    let etr = f.etr.filter(|&e| e <= now)?;
                    let variant = EtrUpdate::Passed(millis(etr)).variant(None);
                    let intents = intents(
                        &book,
                        &f.id,
                        &f.affected,
                        "etr_update",
                        &variant,
                        |c| book.episode_of(c).map(millis),
                        millis(now),
                    );
                    Some((f.id.clone(), millis(etr), variant, intents))
                })
                .collect()
        };
        self.create(due).await
    }

    async fn create(
        &self,
        due: Vec<(FaultId, i64, String, Vec<NoticeIntent>)>,
    ) -> Result<u64, StoreError> {
        let mut created = 0;
        for (fault, at, variant, intents) in due {
            let key = (fault, at, variant);
            if self.done.lock().await.contains(&key) {
                continue;
            }
            let write = self
                .store
                .create_notices(&intents, millis(self.clock.now()));
            created += self.claims.around(intents.len(), write).await?;
            self.done.lock().await.insert(key);
        }
        if created > 0 {
            self.wake.notify_one();
        }
        Ok(created)
    }

    /// Notices that waited for the end of quiet hours are due now: wake the worker rather than
    /// leave them to its next poll.
    pub fn release_quiet_hours(&self) {
        self.wake.notify_one();
    }

    /// Notices left `sending` by a crash may have gone out; at most once means they are marked
    /// failed, not resent. Returns how many.
    pub async fn sweep_interrupted(&self) -> Result<u64, StoreError> {
        let n = fail_stale_sends(&self.store, self.clock.now(), self.stale_sending).await?;
        self.wake.notify_one();
        Ok(n)
    }

    /// Erases message bodies of notices older than `retention.days`. Returns how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let cutoff = self.clock.now() - chrono::Duration::days(self.retention_days.into());
        self.store.purge_notice_bodies(millis(cutoff)).await
    }

    /// Completes the erasures requested at least `erasure_grace` ago whose notices have all
    /// settled (docs/DATA.md, "Erasure"). Returns how many.
    pub async fn complete_erasures(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let grace = chrono::Duration::from_std(self.erasure_grace).unwrap_or_default();
        let n = self
            .store
            .complete_erasures(millis(now - grace), millis(now))
            .await?;
        if n > 0 {
            tracing::info!(customers = n, "erasures completed");
        }
        Ok(n)
    }
}

/// How long an erasure waits before it completes: until every daemon's customer reload
/// (`mapping.reload_secs`) has dropped the customer from its book, several times over and at
/// least a minute, so that nothing is written under their id after the completion.
fn erasure_grace(reload_secs: u64) -> Duration {
    Duration::from_secs(reload_secs.saturating_mul(3).max(60))
}

/// Marks notices `sending` for longer than `stale_sending` failed (see
/// [`Jobs::sweep_interrupted`]).
pub async fn fail_stale_sends(
    store: &Store,
    now: chrono::DateTime<chrono::Utc>,
    stale_sending: Duration,
) -> Result<u64, StoreError> {
    let stale = now - chrono::Duration::from_std(stale_sending).unwrap_or_default();
    let n = store
        .fail_interrupted_notices(millis(now), millis(stale))
        .await?;
    if n > 0 {
        tracing::warn!(
            count = n,
            "notices interrupted while sending were not resent"
        );
    }
    Ok(n)
}

/// One intent of `kind` per customer of the fault that has an episode key.
fn intents(
    book: &OutageBook,
    fault: &FaultId,
    customers: &[crate::mapping::CustomerIdx],
    kind: &'static str,
    variant: &str,
    episode: impl Fn(crate::mapping::CustomerIdx) -> Option<i64>,
    now: i64,
) -> Vec<NoticeIntent> {
    customers
        .iter()
        .filter_map(|&c| {
            let customer = book.index().get(c);
            Some(NoticeIntent {
                customer_id: customer.id.as_str().to_owned(),
                episode_started_at: episode(c)?,
                kind,
                variant: variant.to_owned(),
                fault_id: fault.as_str().to_owned(),
                priority: if customer.critical { 0 } else { 2 },
                due_at: now,
            })
        })
        .collect()
}

/// Starts the scheduler with every job on its configured schedule.
pub async fn schedule(jobs: Arc<Jobs>, s: &Settings) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let sc = &s.schedule;
    let entries: [(&str, &String, Step); 5] = [
        ("planned notices", &sc.planned_notices, Step::Planned),
        ("quiet-hours release", &sc.quiet_hours_release, Step::Quiet),
        ("ETR follow-ups", &sc.etr_followups, Step::Etr),
        ("retry sweeper", &sc.retry_sweeper, Step::Sweep),
        ("retention purge", &sc.retention_purge, Step::Purge),
    ];
    for (name, expr, step) in entries {
        let jobs = jobs.clone();
        // A run still going when the next is due is skipped, not stacked.
        let running = Arc::new(Mutex::new(()));
        let job = Job::new_async(expr.as_str(), move |_, _| {
            let (jobs, running) = (jobs.clone(), running.clone());
            Box::pin(async move {
                let Ok(_guard) = running.try_lock() else {
                    return;
                };
                if let Err(e) = step.run(&jobs).await {
                    tracing::error!(job = name, error = %e, "scheduled job failed");
                }
            })
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    Ok(scheduler)
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Planned,
    Quiet,
    Etr,
    Sweep,
    Purge,
}

impl Step {
    async fn run(self, jobs: &Jobs) -> Result<(), StoreError> {
        match self {
            Step::Planned => jobs.planned_notices().await.map(drop),
            Step::Quiet => {
                jobs.release_quiet_hours();
                Ok(())
            }
            Step::Etr => jobs.etr_followups().await.map(drop),
            // Erasures wait for their notices in flight, which this sweep may settle.
            Step::Sweep => {
                jobs.sweep_interrupted().await?;
                jobs.complete_erasures().await.map(drop)
            }
            Step::Purge => {
                let n = jobs.purge().await?;
                tracing::info!(notices = n, "retention purge erased old message bodies");
                Ok(())
            }
        }
    }
}
