//! The call-centre surge: inbound calls forecast from the customers out, agents needed per
//! language (Erlang C, with Erlang A as the optimistic bound), and which on-call agents to call
//! in to close the gap — a pool with a count per language, filled by the same exact solver
//! (an agent speaking two languages is used where the gap is).

use serde::{Deserialize, Serialize};

use super::erlang::{self, Target};
use super::solver::{Row, Solver};
use crate::domain::{Skill, StaffId, StaffStatus};

/// Configuration `[staffing.call_center]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallCenterSettings {
    /// Calls an outage causes per affected customer, over its whole course.
    pub calls_per_customer: f64,
    /// Calls fall off exponentially after a fault begins; half of the rest come within this.
    pub decay_half_life_hours: f64,
    /// Share of would-be callers who learn enough from their notice not to call.
    pub self_serve_share: f64,
    /// Average handle time.
    pub aht_secs: f64,
    /// Mean time a caller waits before hanging up (Erlang A).
    pub patience_secs: f64,
    pub service_level: f64,
    pub answer_secs: f64,
    pub max_occupancy: f64,
    /// Share of paid time agents are not on the phones (breaks, after-call work).
    pub shrinkage: f64,
}

impl Default for CallCenterSettings {
    fn default() -> Self {
        Self {
            calls_per_customer: 0.08,
            decay_half_life_hours: 2.0,
            self_serve_share: 0.35,
            aht_secs: 240.0,
            patience_secs: 120.0,
            service_level: 0.8,
            answer_secs: 20.0,
            max_occupancy: 0.85,
            shrinkage: 0.3,
        }
    }
}

impl CallCenterSettings {
    /// Calls per hour now from `customers` out for `age_hours`.
    pub fn calls_per_hour(&self, customers: u64, age_hours: f64) -> f64 {
        let total = customers as f64 * self.calls_per_customer * (1.0 - self.self_serve_share);
        let rate = std::f64::consts::LN_2 / self.decay_half_life_hours;
        total * rate * (-rate * age_hours.max(0.0)).exp()
    }

    fn target(&self) -> Target {
        Target {
            service_level: self.service_level,
            answer_secs: self.answer_secs,
            max_occupancy: self.max_occupancy,
        }
    }
}

/// Customers out in one language, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub language: String,
    pub customers: u64,
    pub age_hours: f64,
}

/// A call-centre agent as the surge sees them.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: StaffId,
    pub languages: Vec<String>,
    pub status: StaffStatus,
    /// Past their fatigue limit, or busy elsewhere.
    pub unavailable: bool,
}

/// One language's forecast and cover.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LanguageCover {
    pub language: String,
    pub calls_per_hour: f64,
    /// Agents on the phones Erlang C asks for.
    pub erlang_c: u32,
    /// The optimistic bound: callers hang up, so fewer agents reach the target.
    pub erlang_a: u32,
    /// Agents to have on shift: Erlang C grossed up for shrinkage.
    pub needed: u32,
    pub on_shift: Vec<StaffId>,
    /// On-call agents to call in.
    pub surge: Vec<StaffId>,
    pub gap: u32,
}

/// Forecasts calls per language and covers them, on-shift agents first, then on-call ones.
pub fn cover(loads: &[Load], agents: &[Agent], s: &CallCenterSettings) -> Vec<LanguageCover> {
    let mut by_language: std::collections::BTreeMap<&str, f64> = Default::default();
    for l in loads {
        *by_language.entry(&l.language).or_default() += s.calls_per_hour(l.customers, l.age_hours);
    }
    let mut covers: Vec<LanguageCover> = by_language
        .into_iter()
        .map(|(language, calls)| {
            let c = erlang::agents_erlang_c(calls, s.aht_secs, s.target());
            LanguageCover {
                language: language.to_owned(),
                calls_per_hour: calls,
                erlang_c: c,
                erlang_a: erlang::agents_erlang_a(calls, s.aht_secs, s.patience_secs, s.target()),
                needed: (f64::from(c) / (1.0 - s.shrinkage.clamp(0.0, 0.95))).ceil() as u32,
                on_shift: Vec::new(),
                surge: Vec::new(),
                gap: 0,
            }
        })
        .collect();
    let usable: Vec<&Agent> = agents
        .iter()
        .filter(|a| !a.unavailable && a.status != StaffStatus::OffDuty)
        .collect();
    // One row per agent position; an on-call agent costs more than one already on shift, and
    // an open position costs more than either.
    let mut positions = Vec::new();
    let mut rows = Vec::new();
    for (k, cover) in covers.iter().enumerate() {
        for _ in 0..cover.needed {
            positions.push(k);
            rows.push(Row {
                arcs: usable
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.languages.contains(&cover.language))
                    .map(|(j, a)| {
                        (
                            j as u32,
                            if a.status == StaffStatus::OnCall {
                                1
                            } else {
                                0
                            },
                        )
                    })
                    .collect(),
                unfilled: 1_000,
            });
        }
    }
    let solver = Solver::solve(usable.len(), rows);
    for (k, chosen) in positions.into_iter().zip(solver.assignment()) {
        let cover = &mut covers[k];
        match chosen.map(|j| usable[j]) {
            Some(a) if a.status == StaffStatus::OnCall => cover.surge.push(a.id.clone()),
            Some(a) => cover.on_shift.push(a.id.clone()),
            None => cover.gap += 1,
        }
    }
    covers
}

/// The call-centre agents among imported staff.
pub fn agents(people: &[crate::directory::StaffRecord]) -> Vec<Agent> {
    people
        .iter()
        .filter(|p| p.skills.iter().any(|(s, _)| *s == Skill::CallCenter))
        .map(|p| Agent {
            id: p.id.clone(),
            languages: p.languages.iter().map(|l| l.as_str().to_owned()).collect(),
            status: p.status,
            unavailable: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, languages: &[&str], status: StaffStatus) -> Agent {
        Agent {
            id: StaffId::parse(id).unwrap(),
            languages: languages.iter().map(|l| (*l).to_owned()).collect(),
            status,
            unavailable: false,
        }
    }

    #[test]
    fn calls_decay_and_integrate_to_the_expected_total() {
        let s = CallCenterSettings::default();
        let first = s.calls_per_hour(10_000, 0.0);
        assert!((s.calls_per_hour(10_000, 2.0) - first / 2.0).abs() < 1e-9);
        // Σ over the hours ≈ customers × calls per customer × (1 − self-serve).
        let total: f64 = (0..2000)
            .map(|m| s.calls_per_hour(10_000, m as f64 / 100.0) / 100.0)
            .sum();
        assert!((total - 10_000.0 * 0.08 * 0.65).abs() < 10.0, "{total}");
    }

    #[test]
    fn on_shift_first_then_on_call_by_language_and_the_rest_is_the_gap() {
        let s = CallCenterSettings::default();
        let loads = vec![
            Load {
                language: "de".into(),
                customers: 20_000,
                age_hours: 0.5,
            },
            Load {
                language: "ru".into(),
                customers: 3_000,
                age_hours: 0.5,
            },
        ];
        let agents = vec![
            agent("A1", &["de"], StaffStatus::OnShift),
            agent("A2", &["de", "ru"], StaffStatus::OnShift),
            agent("A3", &["ru"], StaffStatus::OnCall),
            agent("A4", &["de"], StaffStatus::OnCall),
            agent("A5", &["de"], StaffStatus::OffDuty),
        ];
        let covers = cover(&loads, &agents, &s);
        let de = covers.iter().find(|c| c.language == "de").unwrap();
        let ru = covers.iter().find(|c| c.language == "ru").unwrap();
        assert!(de.erlang_a <= de.erlang_c && de.needed >= de.erlang_c);
        assert!(de.needed > 2, "{de:?}");
        // Everyone available is used; nobody twice; the off-duty agent is not called.
        let mut used: Vec<&str> = covers
            .iter()
            .flat_map(|c| c.on_shift.iter().chain(&c.surge))
            .map(|id| id.as_str())
            .collect();
        used.sort();
        assert_eq!(used, vec!["A1", "A2", "A3", "A4"]);
        assert_eq!(
            de.gap + ru.gap,
            de.needed + ru.needed - 4,
            "the gap is what nobody covers"
        );
    }
}
