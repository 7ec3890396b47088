//! Which crew a fault needs: configurable rules by cause and severity, overridden by the
//! event's own `crew_needs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{DomainError, Skill, SkillLevel};
use crate::ingest::event::Severity;

/// One rule (configuration `[[staffing.rules]]`); the first that matches a fault wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrewRule {
    /// The fault's cause, or `*`.
    pub cause: String,
    /// `minor`, `major`, `critical`, or `*`.
    pub severity: String,
    /// One entry per person: `skill` or `skill:min_level`, e.g.
    /// `["tree_trimmer", "tree_trimmer", "lineworker:2", "lineworker", "safety_officer"]`.
    pub slots: Vec<String>,
}

/// A slot's requirement before it is tied to a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub skill: Skill,
    pub min_level: SkillLevel,
}

impl Need {
    /// Parses `skill` or `skill:level`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let (skill, level) = match s.split_once(':') {
            Some((skill, level)) => {
                let level: u8 = level
                    .trim()
                    .parse()
                    .map_err(|_| DomainError(format!("bad level in `{s}`")))?;
                (skill, SkillLevel::new(level)?)
            }
            None => (s, SkillLevel::new(1)?),
        };
        Ok(Self {
            skill: skill.parse()?,
            min_level: level,
        })
    }
}

/// Checks every rule's slots parse (configuration errors name the rule).
pub fn validate(rules: &[CrewRule]) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        for s in &r.slots {
            Need::parse(s)
                .map_err(|e| format!("rule {} ({}/{}): {}", i + 1, r.cause, r.severity, e.0))?;
        }
    }
    Ok(())
}

/// The needs of a fault: the event's `crew_needs` when given (level 1 each), else the first
/// matching rule (none: no crew).
pub fn needs(
    rules: &[CrewRule],
    cause: &str,
    severity: Severity,
    crew_needs: &BTreeMap<Skill, u32>,
) -> Vec<Need> {
    if !crew_needs.is_empty() {
        let Ok(level) = SkillLevel::new(1) else {
            return Vec::new();
        };
        return crew_needs
            .iter()
            .flat_map(|(&skill, &n)| {
                (0..n).map(move |_| Need {
                    skill,
                    min_level: level,
                })
            })
            .collect();
    }
    let matches =
        |pattern: &str, value: &str| pattern == "*" || pattern.eq_ignore_ascii_case(value);
    rules
        .iter()
        .find(|r| matches(&r.cause, cause) && matches(&r.severity, severity.as_str()))
        .map(|r| r.slots.iter().filter_map(|s| Need::parse(s).ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped rules (config/default.toml).
    fn rules() -> Vec<CrewRule> {
        crate::config::Settings::defaults().staffing.rules
    }

    #[test]
    fn a_major_tree_fault_needs_the_documented_crew() {
        let needs = needs(&rules(), "tree", Severity::Major, &BTreeMap::new());
        let count = |skill| needs.iter().filter(|n| n.skill == skill).count();
        assert_eq!(count(Skill::TreeTrimmer), 2);
        assert_eq!(count(Skill::Lineworker), 2);
        assert_eq!(count(Skill::SafetyOfficer), 1);
        assert!(needs
            .iter()
            .any(|n| n.skill == Skill::Lineworker && n.min_level.get() == 2));
    }

    #[test]
    fn the_event_overrides_the_rules_and_bad_rules_are_named() {
        let mut own = BTreeMap::new();
        own.insert(Skill::Lineworker, 4);
        let needs = needs(&rules(), "tree", Severity::Major, &own);
        assert_eq!(needs.len(), 4);
        assert!(needs.iter().all(|n| n.skill == Skill::Lineworker));
        let bad = vec![CrewRule {
            cause: "*".into(),
            severity: "*".into(),
            slots: vec!["lineworker:7".into()],
        }];
        assert!(validate(&bad).unwrap_err().contains("rule 1"));
        assert!(validate(&rules()).is_ok());
    }
}
