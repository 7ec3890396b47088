//! Whether a claimed notice still has something to say. Decided at delivery, not at creation:
//! a notice may wait (quiet hours, retries) while the outage moves on, and what it would say by
//! then may be wrong or already said better by another notice.

use chrono::{DateTime, Utc};

use crate::outage::FaultState;
use crate::store::millis;

/// What delivery knows of a notice's fault and the customer's episode.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub critical_fault: bool,
    /// The customer is back, or out again in a later episode.
    pub episode_over: bool,
    pub fault_state: Option<FaultState>,
    pub cause: String,
    pub etr: Option<DateTime<Utc>>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// When the outage ended (for restorations; now if the fault is still open).
    pub until: Option<DateTime<Utc>>,
}

/// A claimed notice, as far as these rules look at it.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    pub kind: &'a str,
    pub variant: &'a str,
    pub episode_started_at: i64,
}

/// The ETR an `etr_update` announces, and whether it is the "ETR passed" follow-up.
pub fn etr_variant(variant: &str) -> (bool, Option<i64>) {
    match variant.strip_prefix("passed:") {
        Some(etr) => (true, etr.parse().ok()),
        None => (false, variant.parse().ok()),
    }
}

/// The template a notice is worded with.
pub fn template_kind<'a>(n: &Notice<'a>) -> &'a str {
    match (n.kind, etr_variant(n.variant).0) {
        ("etr_update", true) => "etr_passed",
        (kind, _) => kind,
    }
}

/// Why the notice should not be sent, or `None` to send it. `siblings` are the states of the
/// related notices of the same customer and episode: the outage notice for an `etr_update`,
/// the advance notices for a `planned_cancelled`.
pub fn reason(
    n: &Notice<'_>,
    facts: &Facts,
    siblings: &[String],
    now: DateTime<Utc>,
) -> Option<&'static str> {
    let pending = |s: &String| matches!(s.as_str(), "queued" | "claimed" | "sending");
    match n.kind {
        "outage" | "etr_update" if facts.episode_over => Some("superseded: power already restored"),
        "etr_update" => {
            let (passed, etr) = etr_variant(n.variant);
            if siblings.iter().any(pending) {
                Some("superseded: the outage notice, still to go, carries the ETR")
            } else if facts.etr.map(millis) != etr {
                Some("superseded by a newer ETR")
            } else if !passed && etr.is_some_and(|e| e <= millis(now)) {
                Some("superseded: the ETR has passed (a follow-up says so)")
            } else {
                None
            }
        }
        "planned" if facts.fault_state != Some(FaultState::Planned) => {
            Some("superseded: the planned outage was cancelled or has begun")
        }
        "planned" if facts.starts_at.map(millis) != Some(n.episode_started_at) => {
            Some("superseded: the planned outage was rescheduled")
        }
        "dispatch" if facts.fault_state != Some(FaultState::Active) => {
            Some("superseded: the fault is over")
        }
        "planned_cancelled" if !siblings.iter().any(|s| s == "sent") => {
            Some("no advance notice went out: nothing to cancel")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn etr_updates_give_way_to_newer_news() {
        let etr = t("2026-11-23T20:00:00Z");
        let facts = Facts {
            fault_state: Some(FaultState::Active),
            etr: Some(etr),
            ..Facts::default()
        };
        let variant = millis(etr).to_string();
        let n = Notice {
            kind: "etr_update",
            variant: &variant,
            episode_started_at: 0,
        };
        let noon = t("2026-11-23T12:00:00Z");
        assert_eq!(reason(&n, &facts, &["sent".into()], noon), None);
        assert!(reason(&n, &facts, &["queued".into()], noon).is_some());
        let newer = Facts {
            etr: Some(t("2026-11-23T22:00:00Z")),
            ..facts.clone()
        };
        assert_eq!(
            reason(&n, &newer, &["sent".into()], noon),
            Some("superseded by a newer ETR")
        );
        assert!(reason(&n, &facts, &["sent".into()], t("2026-11-23T21:00:00Z")).is_some());
        let over = Facts {
            episode_over: true,
            ..facts
        };
        assert!(reason(&n, &over, &["sent".into()], noon).is_some());
    }

    #[test]
    fn planned_notices_follow_the_plan() {
        let start = t("2026-11-25T08:00:00Z");
        let facts = Facts {
            fault_state: Some(FaultState::Planned),
            starts_at: Some(start),
            ..Facts::default()
        };
        let n = Notice {
            kind: "planned",
            variant: "48h",
            episode_started_at: millis(start),
        };
        let now = t("2026-11-23T09:00:00Z");
        assert_eq!(reason(&n, &facts, &[], now), None);
        let moved = Facts {
            starts_at: Some(t("2026-11-26T08:00:00Z")),
            ..facts.clone()
        };
        assert!(reason(&n, &moved, &[], now).is_some());
        let cancelled = Facts {
            fault_state: Some(FaultState::Cancelled),
            ..facts
        };
        assert!(reason(&n, &cancelled, &[], now).is_some());
        let c = Notice {
            kind: "planned_cancelled",
            variant: "",
            episode_started_at: 0,
        };
        assert!(reason(&c, &Facts::default(), &["suppressed".into()], now).is_some());
        assert_eq!(reason(&c, &Facts::default(), &["sent".into()], now), None);
    }

    #[test]
    fn the_passed_follow_up_has_its_own_words() {
        let n = Notice {
            kind: "etr_update",
            variant: "passed:1",
            episode_started_at: 0,
        };
        assert_eq!(template_kind(&n), "etr_passed");
        assert_eq!(etr_variant("passed:17"), (true, Some(17)));
    }
}
