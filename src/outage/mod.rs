//! Outage state: which faults are open and which customers each one holds out. The book is a
//! pure state machine: events in, [`OutageChange`]s out. It knows nothing of SQL or channels.

mod fault;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

pub use fault::{Fault, FaultArea, FaultState};

use crate::domain::FaultId;
use crate::ingest::event::{Etr, EventKind, FaultEvent};
use crate::mapping::{CustomerIdx, CustomerIndex, MappedCustomer};

/// What made a fault change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeCause {
    Event(EventKind),
    /// A planned outage reached its `starts_at`.
    PlannedStart,
    /// Customers were imported or moved while the fault was open.
    Remapped,
}

/// The state a customer's relation to a fault is left in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Out,
    Planned,
    Restored,
    Cancelled,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::Planned => "planned",
            Self::Restored => "restored",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One fault's change, as the rest of the daemon (store, status, notices) needs it.
#[derive(Debug, Clone)]
pub struct OutageChange {
    pub fault_id: FaultId,
    pub cause: ChangeCause,
    pub at: DateTime<Utc>,
    pub state: FaultState,
    /// Customers newly related to the fault, in `joined_state`.
    pub joined: Vec<CustomerIdx>,
    pub joined_state: MemberState,
    /// Customers whose relation ended, in `left_state`.
    pub left: Vec<CustomerIdx>,
    pub left_state: MemberState,
    /// Planned members became out (the planned outage started).
    pub activated: bool,
    /// Customers who had no open active fault before and now have one: their outage began.
    pub now_out: Vec<CustomerIdx>,
    /// Customers whose last open active fault ended: their power is back.
    pub now_back: Vec<CustomerIdx>,
    /// Outage episodes this change began: (customer, start). Filled for every `now_out`.
    pub episodes_started: Vec<(CustomerIdx, DateTime<Utc>)>,
    /// Outage episodes this change ended: (customer, the episode's start). One per `now_back`.
    pub episodes_ended: Vec<(CustomerIdx, DateTime<Utc>)>,
    pub etr_changed: bool,
    /// What customers already out should be told of the ETR, when the change makes it news.
    pub etr_news: Option<EtrNews>,
    pub momentary: bool,
}

/// An ETR worth telling the customers a fault holds out (see [`OutageRules::etr_change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtrNews {
    /// A first estimate, or one that moved far enough from the last one announced.
    Estimate(DateTime<Utc>),
    /// The estimate announced before no longer holds, and there is none at the moment.
    Withdrawn { was: DateTime<Utc> },
}

/// The book's rules, from `notify.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageRules {
    /// Faults restored sooner (by grid time) are momentary.
    pub momentary_delay: std::time::Duration,
    /// An ETR is announced again once it lies at least this far from the one last announced.
    /// Measured from the last announcement, not the last change, so that an ETR slipping in
    /// small steps is announced once the steps add up.
    pub etr_change: std::time::Duration,
}

impl OutageRules {
    /// The defaults of `config/default.toml`: 5 minutes, 30 minutes.
    pub fn new(momentary_delay: std::time::Duration) -> Self {
        Self {
            momentary_delay,
            etr_change: std::time::Duration::from_secs(30 * 60),
        }
    }
}

impl OutageChange {
    fn new(fault: &Fault, cause: ChangeCause, at: DateTime<Utc>) -> Self {
        let joined_state = if fault.state == FaultState::Planned {
            MemberState::Planned
        } else {
            MemberState::Out
        };
        Self {
            fault_id: fault.id.clone(),
            cause,
            at,
            state: fault.state,
            joined: Vec::new(),
            joined_state,
            left: Vec::new(),
            left_state: MemberState::Restored,
            activated: false,
            now_out: Vec::new(),
            now_back: Vec::new(),
            episodes_started: Vec::new(),
            episodes_ended: Vec::new(),
            etr_changed: false,
            etr_news: None,
            momentary: false,
        }
    }
}

/// The result of applying one event.
#[derive(Debug)]
pub enum Applied {
    Changed(OutageChange),
    /// `seq` not above the last applied one: stored, state untouched.
    Stale {
        last_seq: u64,
    },
    /// Valid, but meaningless in the fault's state (e.g. `updated` after `restored`).
    Ignored(&'static str),
}

/// All faults and the customers they hold.
#[derive(Debug)]
pub struct OutageBook {
    index: CustomerIndex,
    faults: HashMap<FaultId, Fault>,
    /// Open active faults covering each customer; a customer is out while this is above 0.
    coverage: Vec<u16>,
    /// When each customer now out went out: the key of their outage episode.
    episodes: HashMap<CustomerIdx, DateTime<Utc>>,
    momentary_delay: Duration,
    etr_change: Duration,
}

impl OutageBook {
    pub fn new(index: CustomerIndex, rules: OutageRules) -> Self {
        let coverage = vec![0; index.len()];
        let duration = |d| Duration::from_std(d).unwrap_or(Duration::MAX);
        Self {
            index,
            faults: HashMap::new(),
            coverage,
            episodes: HashMap::new(),
            momentary_delay: duration(rules.momentary_delay),
            etr_change: duration(rules.etr_change),
        }
    }

    /// Rebuilds the book from stored faults (with their current members), as after a restart.
    /// `episodes` are the open outage episodes (customer, start) as stored.
    pub fn restore(
        index: CustomerIndex,
        rules: OutageRules,
        faults: Vec<Fault>,
        episodes: Vec<(CustomerIdx, DateTime<Utc>)>,
    ) -> Self {
        let mut book = Self::new(index, rules);
        book.episodes = episodes.into_iter().collect();
        for mut fault in faults {
            fault.affected.sort_unstable();
            fault.affected.dedup();
            if fault.state == FaultState::Active {
                for &c in &fault.affected {
                    book.coverage[c as usize] += 1;
                }
            }
            fault.critical_affected = book.count_critical(&fault.affected);
            book.faults.insert(fault.id.clone(), fault);
        }
        book
    }

    pub fn index(&self) -> &CustomerIndex {
        &self.index
    }

    pub fn momentary_delay(&self) -> Duration {
        self.momentary_delay
    }

    pub fn rules(&self) -> OutageRules {
        OutageRules {
            momentary_delay: self.momentary_delay.to_std().unwrap_or_default(),
            etr_change: self.etr_change.to_std().unwrap_or_default(),
        }
    }

    pub fn fault(&self, id: &FaultId) -> Option<&Fault> {
        self.faults.get(id)
    }

    pub fn faults(&self) -> impl Iterator<Item = &Fault> {
        self.faults.values()
    }

    pub fn is_out(&self, customer: CustomerIdx) -> bool {
        self.coverage.get(customer as usize).is_some_and(|&n| n > 0)
    }

    /// How many customers are out right now.
    pub fn customers_out(&self) -> usize {
        self.coverage.iter().filter(|&&n| n > 0).count()
    }

    /// The open active faults holding a customer out.
    pub fn faults_of(&self, customer: CustomerIdx) -> Vec<&FaultId> {
        let mut ids: Vec<&FaultId> = self
            .faults
            .values()
            .filter(|f| {
                f.state == FaultState::Active && f.affected.binary_search(&customer).is_ok()
            })
            .map(|f| &f.id)
            .collect();
        ids.sort();
        ids
    }

    /// Applies one validated event.
    pub fn apply(&mut self, e: &FaultEvent) -> Applied {
        use EventKind as K;
        use FaultState as S;
        let existing = self.faults.get(&e.fault_id);
        if let (Some(new), Some(old)) = (e.seq, existing.and_then(|f| f.seq)) {
            if new <= old {
                return Applied::Stale { last_seq: old };
            }
        }
        let cause = ChangeCause::Event(e.kind);
        let change = match (e.kind, existing.map(|f| f.state)) {
            (K::Detected, None | Some(S::Restored | S::Cancelled)) => Some(self.open(e, S::Active)),
            (K::Planned, None | Some(S::Restored | S::Cancelled)) => Some(self.open(e, S::Planned)),
            (K::Updated, None) if e.area.is_some() || !e.devices.is_empty() => {
                Some(self.open(e, S::Active))
            }
            (K::Updated, None) => {
                return Applied::Ignored(
                    "updated names an unknown fault and gives no area or devices",
                )
            }
            (K::Detected | K::Updated, Some(S::Active))
            | (K::Updated | K::Planned, Some(S::Planned)) => self.update(e, cause),
            (K::Detected, Some(S::Planned)) => self.update(e, cause).map(|mut change| {
                self.activate(&e.fault_id, e.occurred_at, &mut change);
                change
            }),
            (K::Planned, Some(S::Active)) => {
                return Applied::Ignored("planned names a fault that is already active")
            }
            (K::Updated, Some(S::Restored | S::Cancelled)) => {
                return Applied::Ignored("updated names a closed fault")
            }
            (K::Restored, Some(S::Active | S::Planned)) => self.close(e, S::Restored),
            (K::Cancelled, Some(S::Active | S::Planned)) => self.close(e, S::Cancelled),
            (K::Restored | K::Cancelled, Some(S::Restored | S::Cancelled)) => {
                return Applied::Ignored("the fault is already closed")
            }
            (K::Restored | K::Cancelled, None) => Some(self.tombstone(e)),
        };
        let Some(change) = change else {
            return Applied::Ignored("the fault vanished while applying the event");
        };
        if let Some(fault) = self.faults.get_mut(&e.fault_id) {
            fault.seq = e.seq.or(fault.seq);
        }
        let mut change = change;
        self.record_episodes(&mut change);
        Applied::Changed(change)
    }

    /// Starts planned outages whose window has begun.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<OutageChange> {
        let due: Vec<FaultId> = self
            .faults
            .values()
            .filter(|f| f.state == FaultState::Planned && f.starts_at.is_some_and(|s| s <= now))
            .map(|f| f.id.clone())
            .collect();
        due.into_iter()
            .filter_map(|id| {
                let fault = self.faults.get(&id)?;
                let at = fault.starts_at.unwrap_or(now);
                let mut change = OutageChange::new(fault, ChangeCause::PlannedStart, at);
                self.activate(&id, at, &mut change);
                self.record_episodes(&mut change);
                Some(change)
            })
            .collect()
    }

    /// Takes new or changed customers into the index and into the open faults that now cover
    /// them (or out of those that no longer do).
    pub fn remap(
        &mut self,
        customers: Vec<MappedCustomer>,
        now: DateTime<Utc>,
    ) -> Vec<OutageChange> {
        let changed: Vec<CustomerIdx> = customers
            .into_iter()
            .filter_map(|c| self.index.upsert(c))
            .collect();
        self.coverage.resize(self.index.len(), 0);
        let mut changes = Vec::new();
        let open: Vec<FaultId> = self
            .faults
            .values()
            .filter(|f| f.state.is_open())
            .map(|f| f.id.clone())
            .collect();
        for id in open {
            let Some(fault) = self.faults.get(&id) else {
                continue;
            };
            let mut members = fault.affected.clone();
            for &c in &changed {
                let covered =
                    self.index
                        .covers(c, fault.area.as_ref().map(|a| &a.prepared), &fault.devices);
                match (covered, members.binary_search(&c)) {
                    (true, Err(pos)) => members.insert(pos, c),
                    (false, Ok(pos)) => {
                        members.remove(pos);
                    }
                    _ => {}
                }
            }
            if members != fault.affected {
                let mut change = OutageChange::new(fault, ChangeCause::Remapped, now);
                self.set_members(&id, members, &mut change);
                self.record_episodes(&mut change);
                changes.push(change);
            }
        }
        changes
    }

    fn open(&mut self, e: &FaultEvent, state: FaultState) -> OutageChange {
        let fault = self
            .faults
            .entry(e.fault_id.clone())
            .or_insert_with(|| Fault::new(e.fault_id.clone(), state, e.occurred_at));
        // A re-opened fault is a new episode: forget the old geometry and times.
        fault.state = state;
        fault.area = None;
        fault.devices.clear();
        fault.etr = None;
        fault.restored_at = None;
        fault.momentary = false;
        fault.detected_at = (state == FaultState::Active).then_some(e.occurred_at);
        let mut change = OutageChange::new(fault, ChangeCause::Event(e.kind), e.occurred_at);
        absorb(fault, e, &mut change);
        // The outage notices of a new fault carry its ETR: that is its first announcement.
        fault.etr_announced = fault.etr;
        let members = self.members_for(&e.fault_id);
        self.set_members(&e.fault_id, members, &mut change);
        change
    }

    fn update(&mut self, e: &FaultEvent, cause: ChangeCause) -> Option<OutageChange> {
        let etr_change = self.etr_change;
        let fault = self.faults.get_mut(&e.fault_id)?;
        let mut change = OutageChange::new(fault, cause, e.occurred_at);
        let moved = absorb(fault, e, &mut change);
        if fault.state == FaultState::Active {
            change.etr_news = etr_news(fault, etr_change);
        }
        if moved {
            let members = self.members_for(&e.fault_id);
            self.set_members(&e.fault_id, members, &mut change);
        }
        Some(change)
    }

    fn close(&mut self, e: &FaultEvent, final_state: FaultState) -> Option<OutageChange> {
        let fault = self.faults.get_mut(&e.fault_id)?;
        let was = fault.state;
        let mut change = OutageChange::new(fault, ChangeCause::Event(e.kind), e.occurred_at);
        absorb_descriptive(fault, e, &mut change);
        let restored = was == FaultState::Active && final_state == FaultState::Restored;
        change.left_state = if restored {
            MemberState::Restored
        } else {
            MemberState::Cancelled
        };
        change.momentary = restored
            && fault
                .detected_at
                .is_some_and(|d| e.occurred_at - d < self.momentary_delay);
        self.set_members(&e.fault_id, Vec::new(), &mut change);
        let fault = self.faults.get_mut(&e.fault_id)?;
        fault.state = final_state;
        fault.restored_at = Some(e.occurred_at);
        fault.momentary = change.momentary;
        fault.updated_at = e.occurred_at;
        change.state = final_state;
        Some(change)
    }

    /// `restored`/`cancelled` for a fault never seen: remember it as closed so that a late
    /// `detected` with a lower `seq` cannot open it.
    fn tombstone(&mut self, e: &FaultEvent) -> OutageChange {
        let state = if e.kind == EventKind::Restored {
            FaultState::Restored
        } else {
            FaultState::Cancelled
        };
        let mut fault = Fault::new(e.fault_id.clone(), state, e.occurred_at);
        fault.restored_at = Some(e.occurred_at);
        let mut change = OutageChange::new(&fault, ChangeCause::Event(e.kind), e.occurred_at);
        absorb_descriptive(&mut fault, e, &mut change);
        self.faults.insert(e.fault_id.clone(), fault);
        change
    }

    /// Planned → active: every member goes out now.
    fn activate(&mut self, id: &FaultId, at: DateTime<Utc>, change: &mut OutageChange) {
        let Some(fault) = self.faults.get_mut(id) else {
            return;
        };
        fault.state = FaultState::Active;
        fault.detected_at = Some(at);
        fault.updated_at = at;
        // Every member's outage notice carries the ETR from here.
        fault.etr_announced = fault.etr;
        for &c in &fault.affected {
            bump(&mut self.coverage, c, &mut change.now_out);
        }
        change.activated = true;
        change.state = FaultState::Active;
        change.joined_state = MemberState::Out;
    }

    fn members_for(&self, id: &FaultId) -> Vec<CustomerIdx> {
        match self.faults.get(id) {
            Some(f) => self
                .index
                .affected(f.area.as_ref().map(|a| &a.prepared), &f.devices),
            None => Vec::new(),
        }
    }

    /// Replaces a fault's members, recording who joined and left and whose outage began/ended.
    fn set_members(&mut self, id: &FaultId, members: Vec<CustomerIdx>, change: &mut OutageChange) {
        let critical = self.count_critical(&members);
        let Some(fault) = self.faults.get_mut(id) else {
            return;
        };
        let (joined, left) = diff_sorted(&fault.affected, &members);
        if fault.state == FaultState::Active {
            for &c in &joined {
                bump(&mut self.coverage, c, &mut change.now_out);
            }
            for &c in &left {
                let n = &mut self.coverage[c as usize];
                *n = n.saturating_sub(1);
                if *n == 0 {
                    change.now_back.push(c);
                }
            }
            if change.left_state == MemberState::Restored {
                fault.restored_count += left.len() as u64;
            }
        } else {
            change.left_state = MemberState::Cancelled;
        }
        fault.affected = members;
        fault.critical_affected = critical;
        change.joined.extend(joined);
        change.left.extend(left);
    }

    /// Opens an episode for every customer who went out and closes it for every customer whose
    /// power came back, so that overlapping faults make one episode.
    fn record_episodes(&mut self, change: &mut OutageChange) {
        for &c in &change.now_out {
            self.episodes.insert(c, change.at);
            change.episodes_started.push((c, change.at));
        }
        for &c in &change.now_back {
            // A customer back without a known start (state from before episodes were kept)
            // closes an episode that began with this change's fault, as near as we know.
            let started = self.episodes.remove(&c).unwrap_or(change.at);
            change.episodes_ended.push((c, started));
        }
    }

    /// The start of a customer's current outage episode, if they are out.
    pub fn episode_of(&self, customer: CustomerIdx) -> Option<DateTime<Utc>> {
        self.episodes.get(&customer).copied()
    }

    fn count_critical(&self, members: &[CustomerIdx]) -> usize {
        members
            .iter()
            .filter(|&&c| self.index.get(c).critical)
            .count()
    }
}

fn bump(coverage: &mut [u16], c: CustomerIdx, now_out: &mut Vec<CustomerIdx>) {
    let n = &mut coverage[c as usize];
    if *n == 0 {
        now_out.push(c);
    }
    *n = n.saturating_add(1);
}

/// Copies what an event says about a fault into it. Returns whether the geometry changed
/// (a new `area` or `devices` replaces both).
fn absorb(fault: &mut Fault, e: &FaultEvent, change: &mut OutageChange) -> bool {
    absorb_descriptive(fault, e, change);
    if let Some(s) = e.starts_at {
        fault.starts_at = Some(s);
    }
    if let Some(s) = e.ends_at {
        fault.ends_at = Some(s);
    }
    if e.area.is_none() && e.devices.is_empty() {
        return false;
    }
    fault.area = e
        .area
        .as_ref()
        .map(|a| FaultArea::new(a.geojson.clone(), &a.shape));
    fault.devices = e.devices.clone();
    true
}

fn absorb_descriptive(fault: &mut Fault, e: &FaultEvent, change: &mut OutageChange) {
    if let Some(cause) = e.cause {
        fault.cause = cause.to_owned();
    }
    if let Some(severity) = e.severity {
        fault.severity = severity;
    }
    let etr = match e.etr {
        Etr::Unchanged => fault.etr,
        Etr::Withdrawn => None,
        Etr::At(t) => Some(t),
    };
    if etr != fault.etr {
        fault.etr = etr;
        change.etr_changed = true;
    }
    if !e.crew_needs.is_empty() {
        fault.crew_needs = e.crew_needs.clone();
    }
    if e.note.is_some() {
        fault.note = e.note.clone();
    }
    fault.updated_at = e.occurred_at;
}

/// Whether an active fault's ETR is news to its customers: a first estimate, one at least
/// `threshold` from the one last announced, or the withdrawal of an announced one. Marks
/// what it returns as announced.
fn etr_news(fault: &mut Fault, threshold: Duration) -> Option<EtrNews> {
    let news = match (fault.etr, fault.etr_announced) {
        (Some(etr), None) => Some(EtrNews::Estimate(etr)),
        (Some(etr), Some(told)) if (etr - told).abs() >= threshold => Some(EtrNews::Estimate(etr)),
        (None, Some(was)) => Some(EtrNews::Withdrawn { was }),
        _ => None,
    };
    if news.is_some() {
        fault.etr_announced = fault.etr;
    }
    news
}

/// (in `new` but not `old`, in `old` but not `new`) for two sorted lists.
fn diff_sorted(old: &[CustomerIdx], new: &[CustomerIdx]) -> (Vec<CustomerIdx>, Vec<CustomerIdx>) {
    let (mut joined, mut left) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                left.push(*a);
                i += 1;
            }
            (Some(_), Some(b)) | (None, Some(b)) => {
                joined.push(*b);
                j += 1;
            }
            (Some(a), None) => {
                left.push(*a);
                i += 1;
            }
            (None, None) => break,
        }
    }
    (joined, left)
}
