//! The retained per-fault status document on `{status_topic}/{fault_id}`, published when a fault
//! changes, at most once per `status.min_interval_ms` per fault, and kept after it closes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::FaultId;
use crate::ingest::mqtt::topic_level;
use crate::outage::Fault;
use crate::shared::SharedBook;
use crate::store::{NoticeGroup, Store, StoreError};

/// Notice counts of a fault, by state. A notice counts for the fault that caused it: an outage
/// notice for the fault that began the customer's episode, a restoration notice for the fault
/// whose end ended it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NoticeCounts {
    pub queued: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub suppressed: u64,
}

/// One crew member on a fault (filled by the staffing capability).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CrewEntry {
    pub staff_id: String,
    pub skill: String,
    pub state: String,
    pub travel_km: f64,
}

/// The document of `docs/EVENTS.md` § status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusDoc {
    pub fault_id: String,
    pub state: &'static str,
    pub affected: usize,
    pub critical_affected: usize,
    pub restored: u64,
    pub etr: Option<DateTime<Utc>>,
    pub cause: String,
    pub severity: &'static str,
    pub momentary: bool,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub notices: NoticeCounts,
    /// Customers' own outage reports (SMS replies OUT) attributed to this fault.
    pub customer_reports: u64,
    pub crew: Vec<CrewEntry>,
    pub crew_unfilled: BTreeMap<String, u32>,
    pub updated_at: DateTime<Utc>,
}

impl StatusDoc {
    /// The fault's crew and unfilled slots, from the stored plan.
    fn set_crew(&mut self, plan: &[crate::store::AssignmentRow]) {
        for row in plan
            .iter()
            .filter(|r| r.slot.fault.as_str() == self.fault_id)
        {
            match &row.staff_id {
                Some(staff) => self.crew.push(CrewEntry {
                    staff_id: staff.as_str().to_owned(),
                    skill: row.slot.skill.as_str().to_owned(),
                    state: row.state.clone(),
                    travel_km: (row.terms.travel_m as f64 / 100.0).round() / 10.0,
                }),
                None => {
                    *self
                        .crew_unfilled
                        .entry(row.slot.skill.as_str().to_owned())
                        .or_default() += 1
                }
            }
        }
    }

    pub fn of(fault: &Fault, now: DateTime<Utc>, momentary_delay: chrono::Duration) -> Self {
        // `affected` counts customers out now because of this fault: none while it is planned.
        let out_now = fault.state == crate::outage::FaultState::Active;
        Self {
            fault_id: fault.id.as_str().to_owned(),
            state: fault.public_state(now, momentary_delay),
            affected: if out_now { fault.affected.len() } else { 0 },
            critical_affected: if out_now { fault.critical_affected } else { 0 },
            restored: fault.restored_count,
            etr: fault.etr,
            cause: fault.cause.clone(),
            severity: fault.severity.as_str(),
            momentary: fault.momentary,
            starts_at: fault.starts_at,
            ends_at: fault.ends_at,
            notices: NoticeCounts::default(),
            customer_reports: 0,
            crew: Vec::new(),
            crew_unfilled: BTreeMap::new(),
            updated_at: now,
        }
    }
}

/// The newest document of every fault this daemon published, for the HTTP API: reading them
/// costs no query, and they agree with what MQTT subscribers saw.
#[derive(Debug, Clone, Default)]
pub struct LatestDocs(Arc<RwLock<HashMap<String, Arc<StatusDoc>>>>);

impl LatestDocs {
    pub fn get(&self, fault_id: &str) -> Option<Arc<StatusDoc>> {
        self.0.read().ok()?.get(fault_id).cloned()
    }

    fn put(&self, doc: Arc<StatusDoc>) {
        if let Ok(mut docs) = self.0.write() {
            docs.insert(doc.fault_id.clone(), doc);
        }
    }
}

/// What the console's live stream carries: `fault` with a fault's new status document, or
/// `staffing` when a coordinator changed the plan.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub kind: &'static str,
    pub data: Arc<str>,
}

/// Publishes status documents for faults reported dirty, coalescing bursts.
pub struct StatusPublisher {
    /// Where the API finds the documents.
    pub latest: LatestDocs,
    /// The console's live stream (nobody listening is fine).
    pub live: broadcast::Sender<LiveEvent>,
    pub book: SharedBook,
    pub store: Store,
    pub client: AsyncClient,
    pub topic: String,
    pub min_interval: Duration,
    pub clock: Clock,
    /// The metrics' notice counts, kept from the counts read here.
    pub totals: NoticeTotals,
}

impl StatusPublisher {
    /// Runs until `stop`, then publishes what is still dirty and returns.
    /// `dirty` carries faults whose state changed (their counts are recounted at once);
    /// `counts` carries faults whose notices progressed (cached counts may do, for a while).
    pub async fn run(
        self,
        mut dirty: mpsc::UnboundedReceiver<FaultId>,
        mut counts_changed: mpsc::UnboundedReceiver<FaultId>,
        stop: CancellationToken,
    ) {
        let mut due: HashSet<FaultId> = HashSet::new();
        let mut counts = CountCache::default();
        let mut tick = tokio::time::interval(self.min_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                id = dirty.recv() => match id {
                    Some(id) => {
                        counts.counted.remove(id.as_str());
                        due.insert(id);
                    }
                    None => break,
                },
                Some(id) = counts_changed.recv() => { due.insert(id); }
                _ = tick.tick() => {
                    due.extend(counts.expired());
                    self.publish(&mut due, &mut counts).await;
                }
                _ = &mut resync => {
                    let next = self.resync().await;
                    resync.as_mut().reset(tokio::time::Instant::now() + next);
                }
            }
        }
        while let Ok(id) = dirty.try_recv() {
            due.insert(id);
        }
        counts.counted.clear(); // the last documents carry exact counts
        self.publish(&mut due, &mut counts).await;
    }

    async fn publish(&self, due: &mut HashSet<FaultId>, cache: &mut CountCache) {
        if due.is_empty() {
            return;
        }
        let now = self.clock.now();
        let ids: Vec<String> = due.iter().map(|id| id.as_str().to_owned()).collect();
        let counts = cache.counts(&self.store, &self.totals, &ids).await;
        let reports: HashMap<String, i64> = self
            .store
            .report_counts(&ids)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read customer reports for the status documents");
                Vec::new()
            })
            .into_iter()
            .collect();
        let crews = self.store.assignments().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read crews for the status documents");
            Vec::new()
        });
        let docs: Vec<(String, Vec<u8>)> = {
            let book = self.book.read();
            due.drain()
                .filter_map(|id| {
                    book.fault(&id)
                        .map(|f| StatusDoc::of(f, now, book.momentary_delay()))
                })
                .filter_map(|mut doc| {
                    doc.notices = NoticeCounts::from_rows(&doc.fault_id, &counts);
                    doc.customer_reports = reports.get(&doc.fault_id).map_or(0, |&n| n as u64);
                    doc.set_crew(&crews);
                    let topic = format!("{}/{}", self.topic, topic_level(&doc.fault_id));
                    let body = serde_json::to_vec(&doc).ok()?;
                    let _ = self.live.send(LiveEvent {
                        kind: "fault",
                        data: String::from_utf8_lossy(&body).into(),
                    });
                    self.latest.put(Arc::new(doc));
                    Some((topic, body))
                })
                .collect()
        };
        for (topic, body) in docs {
            if let Err(e) = self
                .client
                .publish(topic, QoS::AtLeastOnce, true, body)
                .await
            {
                tracing::warn!(error = %e, "cannot publish fault status");
            }
        }
    }

    /// Counts the whole outbox again for the metrics (see [`NoticeTotals`]); returns when to
    /// do it next.
    async fn resync(&self) -> Duration {
        let started = std::time::Instant::now();
        match self.store.notice_groups(None).await {
            Ok(groups) => self.totals.replace_all(groups),
            Err(e) => tracing::warn!(error = %e, "cannot recount notices for the metrics"),
        }
        RESYNC.max(started.elapsed() * COUNT_COST_FACTOR)
    }
}

/// The outbox's counts for `/metrics`, fault by fault as the status documents count them:
/// read whole once at start, then replaced for a fault whenever its counts are read for its
/// document (its state changed, or its notices progressed), and read whole again every
/// [`RESYNC`] for what changed unannounced (notices created by scheduled jobs, another daemon's
/// deliveries). A scrape adds them up and never counts the outbox, which during a storm holds
/// millions of rows; in exchange the totals may lag the outbox as the documents do.
#[derive(Debug, Clone, Default)]
pub struct NoticeTotals(Arc<RwLock<HashMap<String, Vec<NoticeGroup>>>>);

impl NoticeTotals {
    /// Counts every fault's notices: one read of the outbox, at start-up.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let totals = Self::default();
        totals.replace_all(store.notice_groups(None).await?);
        Ok(totals)
    }

    fn replace_all(&self, groups: Vec<NoticeGroup>) {
        let mut by_fault: HashMap<String, Vec<NoticeGroup>> = HashMap::new();
        for group in groups {
            by_fault
                .entry(group.fault_id.clone())
                .or_default()
                .push(group);
        }
        if let Ok(mut totals) = self.0.write() {
            *totals = by_fault;
        }
    }

    fn set(&self, fault_id: &str, groups: Vec<NoticeGroup>) {
        if let Ok(mut totals) = self.0.write() {
            if groups.is_empty() {
                totals.remove(fault_id);
            } else {
                totals.insert(fault_id.to_owned(), groups);
            }
        }
    }

    /// (channel, state, count) over every fault, by channel and state; a delivery receipt does
    /// not change a notice's state here.
    pub fn by_channel_and_state(&self) -> Vec<(Option<String>, String, i64)> {
        let mut sums: BTreeMap<(Option<String>, String), i64> = BTreeMap::new();
        if let Ok(totals) = self.0.read() {
            for group in totals.values().flatten() {
                *sums
                    .entry((group.channel.clone(), group.state.clone()))
                    .or_default() += group.count;
            }
        }
        sums.into_iter()
            .map(|((channel, state), n)| (channel, state, n))
            .collect()
    }
}

/// Notice counts per fault, recounted at most every [`COUNT_REFRESH`], or less often when a
/// recount is dear: during a fan-out the worker marks its fault dirty after every batch, and a
/// million notices take the database a third of a second (both cores) to count. A fault
/// published with cached counts is recounted (and republished) once its counts expire, so the
/// document catches up.
#[derive(Default)]
struct CountCache {
    /// Counts per fault, and until when they stand.
    counted: HashMap<String, (std::time::Instant, Vec<NoticeGroup>)>,
    stale: HashSet<String>,
}

/// How long notice counts in a status document may lag behind the outbox.
const COUNT_REFRESH: Duration = Duration::from_secs(5);

/// Counts stand at least this many times as long as the recount took, which keeps recounting
/// under 2 % of the database's time however large the fault.
const COUNT_COST_FACTOR: u32 = 50;

/// How often the metrics' totals are read from the whole outbox at most (see [`NoticeTotals`]).
const RESYNC: Duration = Duration::from_secs(600);

impl CountCache {
    /// Notice counts of these faults, from the database where the cache is old; what is read
    /// also replaces those faults' share of the metrics' `totals`.
    async fn counts(
        &mut self,
        store: &Store,
        totals: &NoticeTotals,
        ids: &[String],
    ) -> Vec<NoticeGroup> {
        let now = std::time::Instant::now();
        let recount: Vec<String> = ids
            .iter()
            .filter(|id| self.counted.get(*id).is_none_or(|(until, _)| now >= *until))
            .cloned()
            .collect();
        if !recount.is_empty() {
            // Counts are a courtesy in the document; a failed read must not stop the status.
            let read = store.notice_groups(Some(recount.as_slice())).await;
            if let Err(e) = &read {
                tracing::warn!(error = %e, "cannot read notice counts for the status documents");
            }
            let until = now + COUNT_REFRESH.max(now.elapsed() * COUNT_COST_FACTOR);
            for id in &recount {
                let mine: Vec<NoticeGroup> = read
                    .as_ref()
                    .map(|rows| rows.iter().filter(|g| &g.fault_id == id).cloned().collect())
                    .unwrap_or_default();
                if read.is_ok() {
                    totals.set(id, mine.clone());
                }
                self.counted.insert(id.clone(), (until, mine));
                self.stale.remove(id);
            }
        }
        for id in ids.iter().filter(|id| !recount.contains(id)) {
            self.stale.insert(id.clone());
        }
        ids.iter()
            .filter_map(|id| self.counted.get(id))
            .flat_map(|(_, rows)| rows.iter().cloned())
            .collect()
    }

    /// Faults published with cached counts whose counts may be recounted now. Also forgets
    /// counts nobody asked for in a minute, so closed faults do not pile up.
    fn expired(&mut self) -> Vec<FaultId> {
        let (stale, now) = (&self.stale, std::time::Instant::now());
        let forget = Duration::from_secs(60);
        self.counted
            .retain(|id, (until, _)| stale.contains(id) || now < *until + forget);
        let ready: Vec<String> = self
            .stale
            .iter()
            .filter(|id| self.counted.get(*id).is_none_or(|(until, _)| now >= *until))
            .cloned()
            .collect();
        ready
            .into_iter()
            .filter_map(|id| {
                self.stale.remove(&id);
                FaultId::parse(&id).ok()
            })
            .collect()
    }
}

impl NoticeCounts {
    /// From the fault's groups; a notice with a delivery receipt counts as delivered, states
    /// not listed here (e.g. `unreachable`) count as failed.
    fn from_rows(fault_id: &str, rows: &[NoticeGroup]) -> Self {
        let mut counts = Self::default();
        for group in rows.iter().filter(|g| g.fault_id == fault_id) {
            let n = group.count as u64;
            let state = if group.delivered {
                "delivered"
            } else {
                group.state.as_str()
            };
            match state {
                "queued" | "claimed" | "sending" => counts.queued += n,
                "sent" => counts.sent += n,
                "delivered" => counts.delivered += n,
                "suppressed" => counts.suppressed += n,
                _ => counts.failed += n,
            }
        }
        counts
    }
}
