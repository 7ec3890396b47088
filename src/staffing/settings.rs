//! Configuration `[staffing]`: the weights of the assignment's soft constraints, the fault
//! priority, the crew rules and the call-centre model.

use serde::{Deserialize, Serialize};

use super::callcenter::CallCenterSettings;
use super::plan::Weights;
use super::priority::PriorityWeights;
use super::rules::{self, CrewRule};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaffingSettings {
    /// Road distance ÷ geodesic distance.
    pub road_factor: f64,
    /// Calling in someone on call costs as much as this many metres of travel (at priority 1).
    pub on_call_cost_m: i64,
    /// Moving someone already dispatched costs as much as this many metres of travel.
    pub disruption_cost_m: i64,
    /// An unfilled slot costs this much per point of its fault's priority.
    pub unfilled_cost: i64,
    /// The cheapest qualified people kept as candidates per slot.
    pub candidates_per_slot: usize,
    /// Seconds between re-plans when the outage state does not change (picks up coordinators'
    /// commands, status changes and staff imports).
    pub replan_secs: u64,
    /// Send chosen people a dispatch notice (SMS, else e-mail) to answer YES or NO.
    pub dispatch: bool,
    /// A dispatch unanswered this long counts as declined.
    pub answer_timeout_mins: u64,
    pub priority: PriorityWeights,
    pub rules: Vec<CrewRule>,
    pub call_center: CallCenterSettings,
}

impl StaffingSettings {
    /// The solver's weights.
    pub fn weights(&self) -> Weights {
        Weights {
            road_factor: self.road_factor,
            on_call: self.on_call_cost_m,
            disruption: self.disruption_cost_m,
            unfilled: self.unfilled_cost,
            candidates: self.candidates_per_slot,
        }
    }

    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad = |key, msg: &str| Err((key, msg.to_owned()));
        if !(1.0..=5.0).contains(&self.road_factor) {
            return bad("staffing.road_factor", "must be between 1 and 5");
        }
        if self.on_call_cost_m < 0 || self.disruption_cost_m < 0 {
            return bad("staffing.on_call_cost_m", "costs must not be negative");
        }
        if self.unfilled_cost <= 0 || self.candidates_per_slot == 0 {
            return bad(
                "staffing.unfilled_cost",
                "unfilled_cost and candidates_per_slot must be positive",
            );
        }
        rules::validate(&self.rules).map_err(|e| ("staffing.rules", e))?;
        let c = &self.call_center;
        let share = |v: f64| (0.0..1.0).contains(&v);
        if !(share(c.self_serve_share) && share(c.shrinkage)) {
            return bad(
                "staffing.call_center",
                "self_serve_share and shrinkage must be in [0, 1)",
            );
        }
        if !(c.service_level > 0.0
            && c.service_level < 1.0
            && c.max_occupancy > 0.0
            && c.max_occupancy <= 1.0)
        {
            return bad(
                "staffing.call_center",
                "service_level must be in (0, 1) and max_occupancy in (0, 1]",
            );
        }
        if [
            c.calls_per_customer,
            c.decay_half_life_hours,
            c.aht_secs,
            c.patience_secs,
            c.answer_secs,
        ]
        .iter()
        .any(|v| *v <= 0.0)
        {
            return bad("staffing.call_center", "rates and times must be positive");
        }
        Ok(())
    }
}
