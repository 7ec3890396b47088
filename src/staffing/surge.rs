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

/// Customers out per language (language, customers, oldest start in ms), as the forecast
/// needs them. Re-read only after an outage change (or after [`Demand::MAX_AGE`], for
/// re-imported customers): between changes the numbers cannot move, and with a million
/// customers out the read costs the database seconds, which a periodic re-plan every few
/// seconds would otherwise spend in the middle of the storm's fan-out.
#[derive(Debug, Default)]
pub struct Demand {
    read: Option<(std::time::Instant, Vec<OutByLanguage>)>,
}

/// (language, customers out, oldest start in ms), as the store reports them.
type OutByLanguage = (String, i64, i64);

impl Demand {
    const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

    /// The outage state changed: the next forecast reads the database.
    pub fn invalidate(&mut self) {
        self.read = None;
    }

    /// The loads per language at `now` (ms).
    pub async fn loads(&mut self, store: &Store, now: i64) -> Result<Vec<Load>, StoreError> {
        let fresh = |(at, _): &(std::time::Instant, _)| at.elapsed() < Self::MAX_AGE;
        let read = match self.read.take().filter(fresh) {
            Some(read) => self.read.insert(read),
            None => {
                let rows = store.customers_out_by_language().await?;
                self.read.insert((std::time::Instant::now(), rows))
            }
        };
        Ok(loads(&read.1, now))
    }
}

/// Loads at `now` (ms) from (language, customers out, oldest start in ms) rows.
pub fn loads(out: &[OutByLanguage], now: i64) -> Vec<Load> {
    out.iter()
        .map(|(language, customers, since)| Load {
            language: language.clone(),
            customers: (*customers).max(0) as u64,
            age_hours: (now - since).max(0) as f64 / 3_600_000.0,
        })
        .collect()
}

/// Whether a plan row is a call-centre surge position.
pub fn is_surge(slot: &SlotKey) -> bool {
    slot.fault.as_str().starts_with(CALL_CENTRE)
}

/// The surge positions for the calls expected now: on-call agents to call in, per language.
/// Agents already on a field crew, or who declined a call-out, are not asked.
pub fn rows(
    loads: &[Load],
    s: &StaffingSettings,
    staff: &[StaffState],
    crew: &[AssignmentRow],
    previous: &Previous<'_>,
    declines: &[(String, String)],
    now: i64,
) -> Vec<AssignmentRow> {
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
    for c in cover(loads, &pool, &s.call_center) {
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
    rows
}
