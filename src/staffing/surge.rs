//! The call-centre surge in the daemon: the on-call agents the forecast asks for become rows of
//! the plan (one pseudo-fault per language, `call-centre:<language>`), so they are called out,
//! answer YES or NO and time out exactly like field crews.

use super::callcenter::{agents, cover, Load};
use super::plan::{SlotKey, Terms};
use super::service::{assigned, Previous};
use super::settings::StaffingSettings;
use crate::domain::{FaultId, Skill};
use crate::store::{AssignmentRow, StaffState, Store, StoreError};

/// Prefix of the call-centre pseudo-faults, `call-centre:<language>:<UTC day>`: a decline keeps
/// an agent from being asked again that day, and each day's call-outs are new notices.
pub const CALL_CENTRE: &str = "call-centre:";

/// The UTC day of `now` (ms), as in the pseudo-fault ids, and its start in ms.
pub fn day(now: i64) -> (String, i64) {
    let start = now - now.rem_euclid(86_400_000);
    let text = chrono::DateTime::from_timestamp_millis(start)
        .map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string());
    (text, start)
}

/// Whether a plan row is a call-centre surge position.
pub fn is_surge(slot: &SlotKey) -> bool {
    slot.fault.as_str().starts_with(CALL_CENTRE)
}

/// The surge positions for the calls expected now: on-call agents to call in, per language.
/// Agents already on a field crew, or who declined a call-out, are not asked.
pub async fn rows(
    store: &Store,
    s: &StaffingSettings,
    staff: &[StaffState],
    crew: &[AssignmentRow],
    previous: &Previous<'_>,
    declines: &[(String, String)],
    now: i64,
) -> Result<Vec<AssignmentRow>, StoreError> {
    let out = store.customers_out_by_language().await?;
    let loads: Vec<Load> = out
        .iter()
        .map(|(language, customers, since)| Load {
            language: language.clone(),
            customers: (*customers).max(0) as u64,
            age_hours: (now - since).max(0) as f64 / 3_600_000.0,
        })
        .collect();
    let records: Vec<_> = staff.iter().map(|s| s.record.clone()).collect();
    let (today, _) = day(now);
    let mut pool = agents(&records);
    for agent in &mut pool {
        let busy = crew.iter().any(|r| r.staff_id.as_ref() == Some(&agent.id));
        let declined = declines.iter().any(|(fault, who)| {
            fault.starts_with(CALL_CENTRE) && fault.ends_with(&today) && who == agent.id.as_str()
        });
        agent.unavailable = busy || declined;
    }
    let mut rows = Vec::new();
    for c in cover(&loads, &pool, &s.call_center) {
        let Ok(fault) = FaultId::parse(&format!("{CALL_CENTRE}{}:{today}", c.language)) else {
            continue;
        };
        for (i, staff) in c.surge.iter().enumerate() {
            let slot = SlotKey {
                fault: fault.clone(),
                skill: Skill::CallCenter,
                index: u16::try_from(i + 1).unwrap_or(u16::MAX),
            };
            rows.push(assigned(slot, 1, staff, false, Terms::default(), previous));
        }
    }
    Ok(rows)
}
