//! Whether a claimed notice still has something to say. Decided at delivery, not at creation:
//! a notice may wait (quiet hours, retries) while the outage moves on, and what it would say by
//! then may be wrong or already said better by another notice.

use chrono::{DateTime, Utc};

use super::intents::MOMENTARY;
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
    /// The ETR last announced to the fault's customers (see [`crate::outage::EtrNews`]).
    pub etr_announced: Option<DateTime<Utc>>,
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

/// What an `etr_update` says, by its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtrUpdate {
    /// An estimate (epoch ms): variant `{etr}`.
    Estimate(i64),
    /// The ETR has passed and the crews are still working: `passed:{etr}`.
    Passed(i64),
    /// The ETR announced before no longer holds and there is none at the moment:
    /// `withdrawn:{etr}`.
    Withdrawn(i64),
}

impl EtrUpdate {
    /// The variant of a notice that says this: `@` and the time it was announced follow where
    /// one ETR may be announced more than once in an episode (estimates, withdrawals).
    pub fn variant(self, announced_at: Option<i64>) -> String {
        let head = match self {
            Self::Estimate(etr) => etr.to_string(),
            Self::Passed(etr) => format!("passed:{etr}"),
            Self::Withdrawn(etr) => format!("withdrawn:{etr}"),
        };
        match announced_at {
            Some(at) => format!("{head}@{at}"),
            None => head,
        }
    }

    /// Reads a variant; what follows an `@` (when the ETR was announced) is left aside.
    pub fn parse(variant: &str) -> Option<Self> {
        let variant = variant.split_once('@').map_or(variant, |(head, _)| head);
        let number = |s: &str| s.parse().ok();
        if let Some(etr) = variant.strip_prefix("passed:") {
            number(etr).map(Self::Passed)
        } else if let Some(etr) = variant.strip_prefix("withdrawn:") {
            number(etr).map(Self::Withdrawn)
        } else {
            number(variant).map(Self::Estimate)
        }
    }
}

/// The template a notice is worded with.
pub fn template_kind<'a>(n: &Notice<'a>) -> &'a str {
    match (n.kind, EtrUpdate::parse(n.variant)) {
        ("etr_update", Some(EtrUpdate::Passed(_))) => "etr_passed",
        ("etr_update", Some(EtrUpdate::Withdrawn(_))) => "etr_withdrawn",
        (kind, _) => kind,
    }
}

/// Why the notice should not be sent, or `None` to send it. `siblings` are the states of the
/// related notices of the same customer and episode: the outage notice for an `etr_update`
/// and for a momentary restoration, the advance notices for a `planned_cancelled`.
pub fn reason(
    n: &Notice<'_>,
    facts: &Facts,
    siblings: &[String],
    now: DateTime<Utc>,
) -> Option<&'static str> {
    // Sent, being sent, or failed in a way that may still have reached the customer.
    let may_have_told =
        |s: &String| matches!(s.as_str(), "sent" | "sending" | "claimed" | "failed");
    match n.kind {
        "outage" | "etr_update" if facts.episode_over => Some("superseded: power already restored"),
        "etr_update" => etr_update(n, facts, siblings, now),
        "restored" if n.variant == MOMENTARY && !siblings.iter().any(may_have_told) => {
            Some("momentary: no outage notice went out")
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

/// An ETR update goes out while it is still the latest word: an estimate while it is the one
/// last announced (worded with the fault's ETR now, which lies within
/// `notify.etr_change_minutes` of it), a withdrawal while no estimate followed it.
fn etr_update(
    n: &Notice<'_>,
    facts: &Facts,
    siblings: &[String],
    now: DateTime<Utc>,
) -> Option<&'static str> {
    let pending = |s: &String| matches!(s.as_str(), "queued" | "claimed" | "sending");
    if siblings.iter().any(pending) {
        return Some("superseded: the outage notice, still to go, carries the ETR");
    }
    let announced = facts.etr_announced.map(millis);
    match EtrUpdate::parse(n.variant) {
        None => Some("superseded: unreadable ETR variant"),
        Some(EtrUpdate::Estimate(etr)) if announced != Some(etr) => {
            Some("superseded by a newer ETR")
        }
        Some(EtrUpdate::Estimate(_)) if facts.etr.is_some_and(|e| e <= now) => {
            Some("superseded: the ETR has passed (a follow-up says so)")
        }
        Some(EtrUpdate::Passed(etr)) if facts.etr.map(millis) != Some(etr) => {
            Some("superseded by a newer ETR")
        }
        Some(EtrUpdate::Withdrawn(_)) if announced.is_some() => Some("superseded by a newer ETR"),
        Some(_) => None,
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
            etr_announced: Some(etr),
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
            etr_announced: Some(t("2026-11-23T22:00:00Z")),
            ..facts.clone()
        };
        // Moved since, but not far enough to be announced: this notice still goes, with the
        // ETR as it is now.
        let nudged = Facts {
            etr: Some(t("2026-11-23T20:10:00Z")),
            ..facts.clone()
        };
        assert_eq!(reason(&n, &nudged, &["sent".into()], noon), None);
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
        assert_eq!(EtrUpdate::parse("passed:17"), Some(EtrUpdate::Passed(17)));
        assert_eq!(
            EtrUpdate::parse("withdrawn:17"),
            Some(EtrUpdate::Withdrawn(17))
        );
        assert_eq!(EtrUpdate::parse("17"), Some(EtrUpdate::Estimate(17)));
        assert_eq!(EtrUpdate::parse("17@99"), Some(EtrUpdate::Estimate(17)));
        for update in [
            EtrUpdate::Estimate(17),
            EtrUpdate::Passed(17),
            EtrUpdate::Withdrawn(17),
        ] {
            assert_eq!(EtrUpdate::parse(&update.variant(Some(99))), Some(update));
            assert_eq!(EtrUpdate::parse(&update.variant(None)), Some(update));
        }
        assert_eq!(
            EtrUpdate::parse("withdrawn:17@99"),
            Some(EtrUpdate::Withdrawn(17))
        );
        assert_eq!(EtrUpdate::parse("soon"), None);
    }

    #[test]
    fn a_withdrawal_goes_out_until_a_new_estimate_follows() {
        let n = Notice {
            kind: "etr_update",
            variant: "withdrawn:17",
            episode_started_at: 0,
        };
        assert_eq!(template_kind(&n), "etr_withdrawn");
        let now = t("2026-11-23T12:00:00Z");
        let none = Facts {
            fault_state: Some(FaultState::Active),
            ..Facts::default()
        };
        assert_eq!(reason(&n, &none, &["sent".into()], now), None);
        let again = Facts {
            etr: Some(t("2026-11-23T20:00:00Z")),
            etr_announced: Some(t("2026-11-23T20:00:00Z")),
            ..none
        };
        assert!(reason(&n, &again, &["sent".into()], now).is_some());
    }

    #[test]
    fn a_momentary_restoration_follows_an_outage_notice_that_went_out() {
        let n = Notice {
            kind: "restored",
            variant: MOMENTARY,
            episode_started_at: 0,
        };
        let now = t("2026-11-23T12:00:00Z");
        let facts = Facts::default();
        for told in ["sent", "sending", "failed"] {
            assert_eq!(reason(&n, &facts, &[told.into()], now), None, "{told}");
        }
        for untold in ["suppressed", "unreachable", "queued"] {
            assert!(
                reason(&n, &facts, &[untold.into()], now).is_some(),
                "{untold}"
            );
        }
        assert!(reason(&n, &facts, &[], now).is_some());
        let ordinary = Notice { variant: "", ..n };
        assert_eq!(reason(&ordinary, &facts, &[], now), None);
    }
}
