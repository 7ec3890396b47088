//! One fault's current state.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::domain::{FaultId, Skill};
use crate::ingest::event::Severity;
use crate::mapping::{AreaShape, CustomerIdx, PreparedArea};

/// Lifecycle of a fault as stored. `pending` in the status document is derived: an active
/// fault still inside the momentary window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultState {
    Active,
    Planned,
    Restored,
    Cancelled,
}

impl FaultState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Planned => "planned",
            Self::Restored => "restored",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "planned" => Self::Planned,
            "restored" => Self::Restored,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Open faults hold customers (out, or announced as going out).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Active | Self::Planned)
    }
}

/// A fault area in both forms: as received (stored, published) and prepared (mapped).
#[derive(Debug, Clone)]
pub struct FaultArea {
    pub geojson: Value,
    pub radius_m: Option<f64>,
    pub prepared: PreparedArea,
}

impl FaultArea {
    pub fn new(geojson: Value, shape: &AreaShape) -> Self {
        let radius_m = match shape {
            AreaShape::Circle { radius_m, .. } => Some(*radius_m),
            AreaShape::Polygons(_) => None,
        };
        Self {
            geojson,
            radius_m,
            prepared: PreparedArea::new(shape),
        }
    }
}

/// Everything the daemon knows about one fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub id: FaultId,
    pub state: FaultState,
    pub cause: String,
    pub severity: Severity,
    pub area: Option<FaultArea>,
    pub devices: Vec<String>,
    pub etr: Option<DateTime<Utc>>,
    /// The ETR customers were last told (by their outage notices or an ETR update); `None`
    /// when none was given or it was withdrawn.
    pub etr_announced: Option<DateTime<Utc>>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub seq: Option<u64>,
    /// When customers went out (grid time of the event that made the fault active).
    pub detected_at: Option<DateTime<Utc>>,
    pub restored_at: Option<DateTime<Utc>>,
    /// Restored within the momentary delay: no outage notice is due.
    pub momentary: bool,
    pub crew_needs: BTreeMap<Skill, u32>,
    pub note: Option<String>,
    /// Customers related to the fault now (out if active, announced if planned); sorted.
    pub affected: Vec<CustomerIdx>,
    pub critical_affected: usize,
    /// Customers whose relation to this fault ended in restoration.
    pub restored_count: u64,
    pub updated_at: DateTime<Utc>,
}

impl Fault {
    pub fn new(id: FaultId, state: FaultState, at: DateTime<Utc>) -> Self {
        Self {
            id,
            state,
            cause: "unknown".into(),
            severity: Severity::default(),
            area: None,
            devices: Vec::new(),
            etr: None,
            etr_announced: None,
            starts_at: None,
            ends_at: None,
            seq: None,
            detected_at: None,
            restored_at: None,
            momentary: false,
            crew_needs: BTreeMap::new(),
            note: None,
            affected: Vec::new(),
            critical_affected: 0,
            restored_count: 0,
            updated_at: at,
        }
    }

    /// The state shown to the outside: an active fault younger than the momentary delay is
    /// `pending` (it may still clear by itself).
    pub fn public_state(&self, now: DateTime<Utc>, momentary_delay: Duration) -> &'static str {
        match (self.state, self.detected_at) {
            (FaultState::Active, Some(at)) if now - at < momentary_delay => "pending",
            (state, _) => state.as_str(),
        }
    }
}
