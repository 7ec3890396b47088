//! The customer and staff directory: typed records and their import from CSV or GeoJSON.

mod import;

use chrono_tz::Tz;
use serde::Serialize;

pub use import::{parse_customers, parse_staff, ImportReport, RowError};

use crate::domain::{
    Channel, Coord, CriticalKind, CustomerId, Email, Language, Phone, PushToken, QuietHours, Skill,
    SkillLevel, StaffId, StaffStatus,
};
use crate::mapping::MappedCustomer;

/// A customer as imported.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRecord {
    pub id: CustomerId,
    pub name: String,
    pub location: Coord,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub push_token: Option<PushToken>,
    pub language: Language,
    /// Preferred channels in order; empty means opted out of outage notices.
    pub channels: Vec<Channel>,
    pub quiet_hours: Option<QuietHours>,
    pub timezone: Tz,
    pub critical: Option<CriticalKind>,
    pub feeder: Option<String>,
    pub service_point: Option<String>,
}

impl CustomerRecord {
    /// The part of the record that mapping needs.
    pub fn mapped(&self) -> MappedCustomer {
        MappedCustomer {
            id: self.id.clone(),
            at: self.location,
            feeder: self.feeder.clone(),
            service_point: self.service_point.clone(),
            critical: self.critical.is_some(),
        }
    }

    pub fn channels_text(&self) -> String {
        self.channels
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// A staff member as imported.
#[derive(Debug, Clone, PartialEq)]
pub struct StaffRecord {
    pub id: StaffId,
    pub name: String,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub skills: Vec<(Skill, SkillLevel)>,
    pub languages: Vec<Language>,
    pub depot: Coord,
    pub status: StaffStatus,
    pub max_shift_hours: f64,
}

impl StaffRecord {
    pub fn skills_text(&self) -> String {
        let parts: Vec<String> = self
            .skills
            .iter()
            .map(|(s, l)| format!("{}:{}", s.as_str(), l.get()))
            .collect();
        parts.join("|")
    }

    pub fn languages_text(&self) -> String {
        self.languages
            .iter()
            .map(Language::as_str)
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// Summary of an import, printed by the CLI.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub imported: usize,
    pub rejected: usize,
}
