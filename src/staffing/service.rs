//! Staffing in the daemon: re-plans when the outage state changes and stores the plan, with
//! coordinators' pins as inputs. The plan is the optimum for (slots, staff, pins) — reached
//! from the last one by the warm planner — so a re-plan after any change keeps every pin and
//! only moves what the costs say should move.

use std::sync::Arc;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::plan::{Person, Pin, Plan, Slot, SlotKey, Terms};
use super::priority::{priority, FaultFacts};
use super::rules::needs;
use super::settings::StaffingSettings;
use super::surge;
use super::warm::WarmPlanner;
use crate::domain::{Coord, FaultId, StaffId};
use crate::outage::{FaultState, OutageBook, OutageChange};
use crate::shared::SharedBook;
use crate::store::{AssignmentRow, NoticeIntent, Store, StoreError};

/// The slots of every active fault with customers out, from the outage state. A fault's
/// place is the centre of its affected customers.
pub fn slots(book: &OutageBook, s: &StaffingSettings) -> Vec<Slot> {
    let mut out = Vec::new();
    for fault in book.faults().filter(|f| f.state == FaultState::Active) {
        let Some(at) = centre(book, &fault.affected) else {
            continue;
        };
        let facts = FaultFacts {
            severity: fault.severity,
            affected: fault.affected.len() as u64,
            critical_customers: fault.critical_affected as u64,
        };
        let priority = priority(&facts, &s.priority);
        let mut counts = std::collections::HashMap::new();
        for need in needs(&s.rules, &fault.cause, fault.severity, &fault.crew_needs) {
            let index = counts.entry(need.skill).or_insert(0u16);
            *index += 1;
            out.push(Slot {
                key: SlotKey {
                    fault: fault.id.clone(),
                    skill: need.skill,
                    index: *index,
                },
                min_level: need.min_level,
                at,
                priority,
            });
        }
    }
    out
}

/// Where a fault is: the centre of its customers out.
pub fn fault_centre(book: &OutageBook, fault: &FaultId) -> Option<Coord> {
    centre(book, &book.fault(fault)?.affected)
}

fn centre(book: &OutageBook, customers: &[crate::mapping::CustomerIdx]) -> Option<Coord> {
    if customers.is_empty() {
        return None;
    }
    let (lon, lat) = customers.iter().fold((0.0, 0.0), |(lon, lat), &idx| {
        let at = book.index().get(idx).at;
        (lon + at.lon, lat + at.lat)
    });
    let n = customers.len() as f64;
    Coord::new(lon / n, lat / n).ok()
}

/// What the staffing loop keeps from one re-plan to the next.
#[derive(Debug, Default)]
pub struct Memory {
    /// The last solve, re-optimised where the problem changed rather than solved afresh.
    pub planner: WarmPlanner,
    /// Customers out per language, for the call-centre forecast.
    pub demand: surge::Demand,
}

/// Plans from the current state and stores the plan: dispatches left unanswered past
/// `staffing.answer_timeout_mins` count as declined first; people keep the state of a slot they
/// keep (dispatched, accepted); newly chosen people get a dispatch notice (once per person and
/// slot) when `staffing.dispatch` is on. Returns the plan and the faults whose crew changed.
pub async fn replan(
    store: &Store,
    book: &SharedBook,
    s: &StaffingSettings,
    memory: &mut Memory,
    now: i64,
) -> Result<(Plan, Vec<FaultId>), StoreError> {
    let timeout = i64::try_from(s.answer_timeout_mins).unwrap_or(i64::MAX / 120_000) * 60_000;
    store.expire_dispatches(now - timeout, now).await?;
    let slots = slots(&book.read(), s);
    let stored = store.assignments().await?;
    let declines = store.staff_declines().await?;
    let staff = store.staff_states().await?;
    let people = people(&staff, &stored, &declines, now);
    let pins: Vec<Pin> = stored
        .iter()
        .filter(|a| a.pinned)
        .filter_map(|a| {
            Some(Pin {
                slot: a.slot.clone(),
                staff: a.staff_id.clone()?,
            })
        })
        .filter(|p| slots.iter().any(|s| s.key == p.slot))
        .collect();
    let started = std::time::Instant::now();
    let (plan, how) = memory
        .planner
        .plan_with(&slots, &people, &pins, &s.weights());
    tracing::debug!(
        ?how,
        slots = slots.len(),
        people = people.len(),
        "re-planned"
    );
    crate::telemetry::metrics::SOLVE_TIME.observe(started.elapsed().as_secs_f64());
    let previous: Previous<'_> = stored.iter().map(|a| (&a.slot, a)).collect();
    let mut rows = rows(&plan, &slots, &previous);
    let loads = memory.demand.loads(store, now).await?;
    let surge = surge::rows(&loads, s, &staff, &rows, &previous, &declines, now);
    rows.extend(surge);
    if s.dispatch {
        dispatch(store, book, &mut rows, now).await?;
    }
    store.save_plan(&rows, now).await?;
    store
        .add_hours_worked(&ended_work(&stored, &rows, now))
        .await?;
    Ok((plan, changed_faults(&stored, &rows)))
}

/// Hours of accepted assignments that the new plan ends (restoration, or a move).
fn ended_work(before: &[AssignmentRow], after: &[AssignmentRow], now: i64) -> Vec<(StaffId, f64)> {
    before
        .iter()
        .filter(|old| old.state == "accepted")
        .filter(|old| {
            !after.iter().any(|new| {
                new.slot == old.slot && new.staff_id == old.staff_id && new.state == "accepted"
            })
        })
        .filter_map(|old| Some((old.staff_id.clone()?, hours_since(old.answered_at?, now))))
        .collect()
}

fn hours_since(at: i64, now: i64) -> f64 {
    (now - at).max(0) as f64 / 3_600_000.0
}

/// People as the planner sees them: where they are, what they are on, what they declined.
fn people(
    states: &[crate::store::StaffState],
    stored: &[AssignmentRow],
    declines: &[(String, String)],
    now: i64,
) -> Vec<Person> {
    // Looked up once per person: a storm has thousands of both.
    let mut current: HashMap<&StaffId, &AssignmentRow> = HashMap::new();
    for row in stored.iter().filter(|a| a.state != "declined") {
        if let Some(staff) = &row.staff_id {
            current.entry(staff).or_insert(row);
        }
    }
    let mut declined: HashMap<&str, Vec<FaultId>> = HashMap::new();
    for (fault, staff) in declines {
        if let Ok(fault) = FaultId::parse(fault) {
            declined.entry(staff.as_str()).or_default().push(fault);
        }
    }
    states
        .iter()
        .map(|st| {
            let mut p = Person::from_record(&st.record);
            p.at = st.at;
            p.hours_worked = st.hours_worked;
            let now_on = current.get(&p.id);
            p.current = now_on.map(|a| a.slot.clone());
            // The assignment in progress counts towards the fatigue limit.
            if let Some(since) = now_on
                .filter(|a| a.state == "accepted")
                .and_then(|a| a.answered_at)
            {
                p.hours_worked += hours_since(since, now);
            }
            p.declined = declined.remove(p.id.as_str()).unwrap_or_default();
            p
        })
        .collect()
}

/// The stored plan by slot: what a new plan keeps of it.
pub(super) type Previous<'a> = HashMap<&'a SlotKey, &'a AssignmentRow>;

/// A plan row giving `slot` to `staff`, keeping their dispatch state (dispatched, accepted)
/// if the previous plan gave them the same slot.
pub(super) fn assigned(
    slot: SlotKey,
    min_level: u8,
    staff: &StaffId,
    pinned: bool,
    terms: Terms,
    previous: &Previous<'_>,
) -> AssignmentRow {
    let kept = previous
        .get(&slot)
        .filter(|old| old.staff_id.as_ref() == Some(staff));
    AssignmentRow {
        min_level,
        staff_id: Some(staff.clone()),
        pinned,
        state: kept.map_or_else(|| "proposed".to_owned(), |k| k.state.clone()),
        terms,
        dispatched_at: kept.and_then(|k| k.dispatched_at),
        answered_at: kept.and_then(|k| k.answered_at),
        slot,
    }
}

/// The plan as rows, keeping the dispatch state of people who keep their slot.
fn rows(plan: &Plan, slots: &[Slot], previous: &Previous<'_>) -> Vec<AssignmentRow> {
    let levels: HashMap<&SlotKey, u8> = slots.iter().map(|s| (&s.key, s.min_level.get())).collect();
    let level = |key: &SlotKey| levels.get(key).copied().unwrap_or(1);
    let mut rows: Vec<AssignmentRow> = plan
        .assignments
        .iter()
        .map(|a| {
            assigned(
                a.slot.clone(),
                level(&a.slot),
                &a.staff,
                a.pinned,
                a.terms,
                previous,
            )
        })
        .collect();
    rows.extend(plan.unfilled.iter().map(|key| AssignmentRow {
        slot: key.clone(),
        min_level: level(key),
        staff_id: None,
        pinned: false,
        state: "unfilled".into(),
        terms: Default::default(),
        dispatched_at: None,
        answered_at: None,
    }));
    rows
}

/// Queues a dispatch notice (a call-out for the call centre) for every newly proposed person
/// and marks them dispatched. The outbox's unique key (person, fault episode, kind, slot) sends
/// each at most once.
async fn dispatch(
    store: &Store,
    book: &SharedBook,
    rows: &mut [AssignmentRow],
    now: i64,
) -> Result<(), StoreError> {
    let mut intents = Vec::new();
    {
        let book = book.read();
        for row in rows.iter_mut().filter(|r| r.state == "proposed") {
            let Some(staff) = &row.staff_id else { continue };
            let (kind, episode) = if surge::is_surge(&row.slot) {
                ("callout", surge::day(now).1)
            } else {
                let detected = book.fault(&row.slot.fault).and_then(|f| f.detected_at);
                ("dispatch", detected.map_or(0, crate::store::millis))
            };
            intents.push(NoticeIntent {
                customer_id: staff_recipient(staff),
                episode_started_at: episode,
                kind,
                variant: format!("{}#{}", row.slot.skill.as_str(), row.slot.index),
                fault_id: row.slot.fault.as_str().to_owned(),
                priority: 0,
                due_at: now,
            });
            row.state = "dispatched".into();
            row.dispatched_at = Some(now);
        }
    }
    if !intents.is_empty() {
        store.create_notices(&intents, now).await?;
    }
    Ok(())
}

/// The outbox recipient id of a staff member: prefixed, so it never meets a customer id.
pub fn staff_recipient(staff: &StaffId) -> String {
    format!("{STAFF_PREFIX}{}", staff.as_str())
}

/// Prefix of staff recipients in the outbox.
pub const STAFF_PREFIX: &str = "staff:";

/// Faults whose rows differ between two plans.
fn changed_faults(before: &[AssignmentRow], after: &[AssignmentRow]) -> Vec<FaultId> {
    let key = |r: &AssignmentRow| (r.slot.clone(), r.staff_id.clone(), r.state.clone());
    let old: HashSet<_> = before.iter().map(key).collect();
    let new: HashSet<_> = after.iter().map(key).collect();
    let faults: std::collections::BTreeSet<FaultId> = old
        .symmetric_difference(&new)
        .map(|(slot, _, _)| slot.fault.clone())
        .collect();
    faults.into_iter().collect()
}

/// Re-plans at start, after outage changes (a burst of changes is one re-plan) and every
/// `staffing.replan_secs`, until `stop`.
/// How the staffing loop hears of changes outside the outage stream, and announces its own.
pub struct Signals {
    /// Faults whose crew changed: their status documents are republished.
    pub dirty: Option<mpsc::UnboundedSender<FaultId>>,
    /// Re-plan now (a coordinator's override through the API) rather than at the next tick.
    pub replan: Arc<Notify>,
}

pub async fn run(
    store: Store,
    book: SharedBook,
    settings: StaffingSettings,
    mut changes: broadcast::Receiver<Arc<OutageChange>>,
    signals: Signals,
    clock: crate::clock::Clock,
    stop: CancellationToken,
) {
    let Signals {
        dirty,
        replan: kick,
    } = signals;
    let mut memory = Memory::default();
    loop {
        let now = crate::store::millis(clock.now());
        match replan(&store, &book, &settings, &mut memory, now).await {
            Ok((_, changed)) => {
                for fault in changed {
                    if let Some(dirty) = &dirty {
                        let _ = dirty.send(fault);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "staffing re-plan failed; will retry"),
        }
        // Coordinators' commands and staff imports change the database, not the outage
        // state: a periodic re-plan picks them up.
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(settings.replan_secs.max(1))) => {}
            _ = kick.notified() => {}
            changed = changes.recv() => {
                if matches!(changed, Err(broadcast::error::RecvError::Closed)) {
                    break;
                }
                memory.demand.invalidate();
            }
        }
        // Let the rest of a burst arrive, then take it all at once.
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        while changes.try_recv().is_ok() {}
    }
    tracing::info!("staffing stopped");
}
