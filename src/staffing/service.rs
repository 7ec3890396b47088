//! Staffing in the daemon: re-plans when the outage state changes and stores the plan, with
//! coordinators' pins as inputs. The plan is a pure function of (slots, staff, pins), so a
//! re-plan after any change keeps every pin and only moves what the costs say should move.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::plan::{self, Person, Pin, Plan, Slot, SlotKey};
use super::priority::{priority, FaultFacts};
use super::rules::needs;
use super::settings::StaffingSettings;
use crate::domain::Coord;
use crate::outage::{FaultState, OutageBook, OutageChange};
use crate::shared::SharedBook;
use crate::store::{AssignmentRow, Store, StoreError};

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

/// Plans from the current state and stores the plan.
pub async fn replan(
    store: &Store,
    book: &SharedBook,
    s: &StaffingSettings,
    now: i64,
) -> Result<Plan, StoreError> {
    let slots = slots(&book.read(), s);
    let stored = store.assignments().await?;
    let people: Vec<Person> = store
        .staff_states()
        .await?
        .into_iter()
        .map(|st| {
            let mut p = Person::from_record(&st.record);
            p.at = st.at;
            p.hours_worked = st.hours_worked;
            p.current = stored
                .iter()
                .find(|a| a.staff_id.as_ref() == Some(&p.id))
                .map(|a| a.slot.clone());
            p
        })
        .collect();
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
    let plan = plan::plan(&slots, &people, &pins, &s.weights());
    let mut rows: Vec<AssignmentRow> = plan
        .assignments
        .iter()
        .map(|a| AssignmentRow {
            slot: a.slot.clone(),
            min_level: level_of(&slots, &a.slot),
            staff_id: Some(a.staff.clone()),
            pinned: a.pinned,
            state: if a.pinned { "pinned" } else { "proposed" }.into(),
            terms: a.terms,
        })
        .collect();
    rows.extend(plan.unfilled.iter().map(|key| AssignmentRow {
        slot: key.clone(),
        min_level: level_of(&slots, key),
        staff_id: None,
        pinned: false,
        state: "unfilled".into(),
        terms: Default::default(),
    }));
    store.save_plan(&rows, now).await?;
    Ok(plan)
}

fn level_of(slots: &[Slot], key: &SlotKey) -> u8 {
    slots
        .iter()
        .find(|s| &s.key == key)
        .map_or(1, |s| s.min_level.get())
}

/// Re-plans at start, after outage changes (a burst of changes is one re-plan) and every
/// `staffing.replan_secs`, until `stop`.
pub async fn run(
    store: Store,
    book: SharedBook,
    settings: StaffingSettings,
    mut changes: broadcast::Receiver<Arc<OutageChange>>,
    clock: crate::clock::Clock,
    stop: CancellationToken,
) {
    loop {
        let now = crate::store::millis(clock.now());
        if let Err(e) = replan(&store, &book, &settings, now).await {
            tracing::error!(error = %e, "staffing re-plan failed; will retry on the next change");
        }
        // Coordinators' commands and staff imports change the database, not the outage
        // state: a periodic re-plan picks them up.
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(settings.replan_secs.max(1))) => {}
            changed = changes.recv() => {
                if matches!(changed, Err(broadcast::error::RecvError::Closed)) {
                    break;
                }
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
