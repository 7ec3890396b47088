//! A fault's priority for staffing: one integer, higher first.
//!
//! The default order follows how utilities restore service: first what endangers people (a
//! `critical` fault — wires down, fire, flooding), then faults that cut off critical customers
//! (life support, hospitals, care homes, water pumping), then the repairs that bring back the
//! most customers. Severity breaks ties between faults of similar reach.

use serde::{Deserialize, Serialize};

use crate::ingest::event::Severity;

/// What the priority is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultFacts {
    pub severity: Severity,
    /// Customers out because of this fault.
    pub affected: u64,
    /// Of them, critical customers.
    pub critical_customers: u64,
}

/// Weights of the priority (configuration `[staffing.priority]`). The defaults keep the order
/// strict: each term's weight exceeds the largest sum of the terms below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorityWeights {
    /// A `critical` (public-safety) fault.
    pub hazard: i64,
    /// Per critical customer affected, up to `critical_cap` of them.
    pub critical_customer: i64,
    pub critical_cap: u64,
    /// Per thousand customers affected, up to `affected_cap` thousands.
    pub per_thousand_affected: i64,
    pub affected_cap: u64,
    /// A `major` fault over a `minor` one.
    pub major: i64,
}

impl Default for PriorityWeights {
    fn default() -> Self {
        Self {
            hazard: 1_000_000,
            critical_customer: 10_000,
            critical_cap: 50,
            per_thousand_affected: 100,
            affected_cap: 99,
            major: 10,
        }
    }
}

/// The fault's priority, at least 1.
pub fn priority(f: &FaultFacts, w: &PriorityWeights) -> i64 {
    let hazard = if f.severity == Severity::Critical {
        w.hazard
    } else {
        0
    };
    let major = if f.severity != Severity::Minor {
        w.major
    } else {
        0
    };
    let critical = f.critical_customers.min(w.critical_cap) as i64 * w.critical_customer;
    // Whole thousands, plus one for any customers at all: a small fault still outranks none.
    let thousands = (f.affected.div_ceil(1000)).min(w.affected_cap) as i64;
    1 + hazard + critical + thousands * w.per_thousand_affected + major
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazards_first_then_critical_customers_then_reach() {
        let w = PriorityWeights::default();
        let p = |severity, affected, critical_customers| {
            priority(
                &FaultFacts {
                    severity,
                    affected,
                    critical_customers,
                },
                &w,
            )
        };
        let hazard = p(Severity::Critical, 10, 0);
        let hospital = p(Severity::Major, 50, 1);
        let big = p(Severity::Major, 99_000, 0);
        let small = p(Severity::Major, 500, 0);
        let minor = p(Severity::Minor, 500, 0);
        assert!(hazard > hospital && hospital > big && big > small && small > minor);
        assert!(
            p(Severity::Major, 10_000_000, 0) < hospital,
            "reach is capped"
        );
        assert!(minor >= 1);
    }
}
