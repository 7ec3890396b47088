//! The fault event contract (`docs/EVENTS.md`): bytes → a typed, validated [`FaultEvent`], or a
//! [`Rejection`] that says every problem found, so an operator can fix a payload in one go.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{excerpt, Device, EventId, FaultId, Skill};
use crate::mapping::{parse_area, AreaShape};

/// The largest circle an event may describe (`radius_m`), in metres: 200 km. A larger area is
/// sent as a polygon; a circle of 1e308 m was once accepted and put every customer out.
pub const MAX_RADIUS_M: f64 = 200_000.0;

/// Problems named in one rejection; the rest are counted. A `crew_needs` of ten thousand
/// unknown skills must not make a reason ten thousand lines long.
const MAX_PROBLEMS: usize = 20;

/// What happened to a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Detected,
    Updated,
    Restored,
    Planned,
    Cancelled,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detected => "detected",
            Self::Updated => "updated",
            Self::Restored => "restored",
            Self::Planned => "planned",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "detected" => Self::Detected,
            "updated" => Self::Updated,
            "restored" => Self::Restored,
            "planned" => Self::Planned,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// How bad a fault is; `critical` means a public-safety hazard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Minor,
    #[default]
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::Major => "major",
            Self::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "minor" => Self::Minor,
            "major" => Self::Major,
            "critical" => Self::Critical,
            _ => return None,
        })
    }
}

/// Known causes. An unlisted cause is kept as `unknown` (the payload keeps the original): a
/// typo in a cause must not cost customers their outage notice.
pub const CAUSES: [&str; 8] = [
    "storm",
    "tree_contact",
    "equipment_failure",
    "vehicle_accident",
    "animal",
    "overload",
    "planned_maintenance",
    "unknown",
];

/// A fault area as received (kept for storage and status) and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventArea {
    pub geojson: Value,
    pub shape: AreaShape,
}

/// A validated fault event.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    pub event_id: EventId,
    pub fault_id: FaultId,
    pub kind: EventKind,
    pub seq: Option<u64>,
    pub occurred_at: DateTime<Utc>,
    pub area: Option<EventArea>,
    pub devices: Vec<String>,
    pub cause: Option<&'static str>,
    pub severity: Option<Severity>,
    pub etr: Etr,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub crew_needs: BTreeMap<Skill, u32>,
    pub note: Option<String>,
}

/// What an event says of the estimated time of restoration: nothing (`etr` absent), that
/// there is none at the moment (`"etr": null`), or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Etr {
    #[default]
    Unchanged,
    Withdrawn,
    At(DateTime<Utc>),
}

/// Why a payload was refused. `code` is stable for machines, `reason` is for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub reason: String,
    pub event_id: Option<String>,
    pub fault_id: Option<String>,
}

/// Limits applied at the boundary.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_vertices: usize,
}

/// Collects every problem in a payload, remembering the first problem's code.
struct Problems {
    code: Option<&'static str>,
    reasons: Vec<String>,
    /// Problems found beyond [`MAX_PROBLEMS`].
    more: usize,
}

impl Problems {
    fn add(&mut self, code: &'static str, reason: impl Into<String>) {
        self.code.get_or_insert(code);
        if self.reasons.len() < MAX_PROBLEMS {
            self.reasons.push(reason.into());
        } else {
            self.more += 1;
        }
    }

    /// The reasons for people, `; `-separated, with a count of those left out.
    fn reason(&self) -> String {
        let mut reason = self.reasons.join("; ");
        if self.more > 0 {
            reason.push_str(&format!("; and {} more problems", self.more));
        }
        reason
    }
}

/// A value of the payload as a reason quotes it: JSON, escaped and cut (`domain::excerpt`),
/// since the reason goes to the database, the log, the dead letter and the API.
fn quoted(value: &Value) -> String {
    excerpt(&value.to_string())
}

/// Parses and validates one payload.
pub fn parse_event(payload: &[u8], limits: Limits) -> Result<FaultEvent, Rejection> {
    let reject = |code, reason: String| Rejection {
        code,
        reason,
        event_id: None,
        fault_id: None,
    };
    if payload.len() > limits.max_payload_bytes {
        return Err(reject(
            "too_large",
            format!(
                "payload is {} bytes; the limit is {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| reject("invalid_json", format!("payload is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(reject(
            "invalid_json",
            "payload must be a JSON object".into(),
        ));
    };
    let mut problems = Problems {
        code: None,
        reasons: Vec::new(),
        more: 0,
    };
    let event = read_fields(&obj, limits, &mut problems);
    match (event, problems.code) {
        (Some(event), None) => Ok(event),
        (_, code) => Err(Rejection {
            code: code.unwrap_or("invalid"),
            reason: problems.reason(),
            // As given, for the operator to find the event by, but escaped and cut: an id
            // that failed validation may be a megabyte long or hold a line break.
            event_id: obj.get("event_id").and_then(Value::as_str).map(excerpt),
            fault_id: obj.get("fault_id").and_then(Value::as_str).map(excerpt),
        }),
    }
}

fn read_fields(obj: &Map<String, Value>, limits: Limits, p: &mut Problems) -> Option<FaultEvent> {
    match obj.get("v") {
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => p.add(
            "unsupported_version",
            format!("`v` is {}; this daemon speaks version 1", quoted(v)),
        ),
        None => p.add("missing_field", "`v` is required"),
    }
    let event_id = id_field(obj, "event_id", EventId::parse, p);
    let fault_id = id_field(obj, "fault_id", FaultId::parse, p);
    let kind = match obj
        .get("kind")
        .map(|k| (k, k.as_str().and_then(EventKind::parse)))
    {
        Some((_, Some(kind))) => Some(kind),
        Some((k, None)) => {
            p.add(
                "bad_kind",
                format!(
                    "`kind` {} is not one of detected, updated, restored, planned, cancelled",
                    quoted(k)
                ),
            );
            None
        }
        None => {
            p.add("missing_field", "`kind` is required");
            None
        }
    };
    let seq = match obj.get("seq") {
        None | Some(Value::Null) => None,
        Some(v) => v.as_u64().or_else(|| {
            p.add(
                "bad_seq",
                format!("`seq` {} must be an integer ≥ 0", quoted(v)),
            );
            None
        }),
    };
    let occurred_at = time_field(obj, "occurred_at", true, p);
    let etr = match obj.get("etr") {
        None => Etr::Unchanged,
        Some(Value::Null) => Etr::Withdrawn,
        Some(_) => time_field(obj, "etr", false, p).map_or(Etr::Unchanged, Etr::At),
    };
    let starts_at = time_field(obj, "starts_at", false, p);
    let ends_at = time_field(obj, "ends_at", false, p);
    let area = area_field(obj, limits, p);
    let devices = devices_field(obj, p);
    let (cause, severity, crew_needs, note) = descriptive_fields(obj, p);

    if let Some(kind @ (EventKind::Detected | EventKind::Planned)) = kind {
        if obj.get("area").is_none() && devices.is_empty() {
            p.add(
                "missing_area",
                format!(
                    "`{}` needs an `area` or a non-empty `devices` list",
                    kind.as_str()
                ),
            );
        }
    }
    if kind == Some(EventKind::Planned) {
        match (starts_at, ends_at) {
            (Some(s), Some(e)) if e <= s => {
                p.add("bad_window", "`ends_at` must be after `starts_at`")
            }
            (Some(_), Some(_)) => {}
            _ => p.add("missing_field", "`planned` needs `starts_at` and `ends_at`"),
        }
    }
    Some(FaultEvent {
        event_id: event_id?,
        fault_id: fault_id?,
        kind: kind?,
        seq,
        occurred_at: occurred_at?,
        area,
        devices,
        cause,
        severity,
        etr,
        starts_at,
        ends_at,
        crew_needs,
        note,
    })
}

fn id_field<T, E: std::fmt::Display>(
    obj: &Map<String, Value>,
    key: &str,
    parse: impl Fn(&str) -> Result<T, E>,
    p: &mut Problems,
) -> Option<T> {
    match obj.get(key) {
        Some(Value::String(s)) => parse(s)
            .map_err(|e| p.add("bad_id", format!("`{key}`: {e}")))
            .ok(),
        Some(other) => {
            p.add(
                "bad_id",
                format!("`{key}` must be a string, got {}", quoted(other)),
            );
            None
        }
        None => {
            p.add("missing_field", format!("`{key}` is required"));
            None
        }
    }
}

fn time_field(
    obj: &Map<String, Value>,
    key: &str,
    required: bool,
    p: &mut Problems,
) -> Option<DateTime<Utc>> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            if required {
                p.add("missing_field", format!("`{key}` is required"));
            }
            None
        }
        Some(v) => match v.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(t)) => Some(t.with_timezone(&Utc)),
            _ => {
                p.add(
                    "bad_time",
                    format!(
                        "`{key}` {} is not an RFC 3339 time (e.g. 2026-11-23T14:05:00Z)",
                        quoted(v)
                    ),
                );
                None
            }
        },
    }
}

fn area_field(obj: &Map<String, Value>, limits: Limits, p: &mut Problems) -> Option<EventArea> {
    let radius = obj.get("radius_m");
    let radius_m = radius.and_then(Value::as_f64);
    if let Some(r) = radius {
        if !radius_m.is_some_and(|r| r.is_finite() && r > 0.0 && r <= MAX_RADIUS_M) {
            p.add(
                "bad_area",
                format!(
                    "`radius_m` {} must be a number > 0 and at most {MAX_RADIUS_M} (metres)",
                    quoted(r)
                ),
            );
        }
    }
    let geojson = obj.get("area")?;
    match parse_area(geojson, radius_m, limits.max_vertices) {
        Ok(shape) => Some(EventArea {
            geojson: geojson.clone(),
            shape,
        }),
        Err(crate::mapping::AreaError::BadRadius) if radius.is_some() => None, // said above
        Err(e) => {
            p.add("bad_area", e.to_string());
            None
        }
    }
}

fn devices_field(obj: &Map<String, Value>, p: &mut Problems) -> Vec<String> {
    let Some(v) = obj.get("devices") else {
        return Vec::new();
    };
    let items = v.as_array().map(|a| {
        a.iter()
            .map(|d| d.as_str().map(str::trim))
            .collect::<Vec<_>>()
    });
    match items {
        Some(items)
            if items
                .iter()
                .all(|d| d.is_some_and(|d| Device::parse(d).is_ok())) =>
        {
            items.into_iter().flatten().map(str::to_owned).collect()
        }
        _ => {
            p.add(
                "bad_devices",
                "`devices` must be an array of non-empty strings (≤ 256 characters, no control characters)",
            );
            Vec::new()
        }
    }
}

type Descriptive = (
    Option<&'static str>,
    Option<Severity>,
    BTreeMap<Skill, u32>,
    Option<String>,
);

fn descriptive_fields(obj: &Map<String, Value>, p: &mut Problems) -> Descriptive {
    let cause = obj.get("cause").map(|c| {
        let c = c.as_str().unwrap_or("unknown");
        CAUSES
            .iter()
            .copied()
            .find(|k| *k == c)
            .unwrap_or("unknown")
    });
    let severity = obj.get("severity").and_then(|s| {
        let parsed = s.as_str().and_then(Severity::parse);
        if parsed.is_none() {
            p.add(
                "bad_severity",
                format!(
                    "`severity` {} is not one of minor, major, critical",
                    quoted(s)
                ),
            );
        }
        parsed
    });
    let mut crew_needs = BTreeMap::new();
    if let Some(needs) = obj.get("crew_needs") {
        match needs.as_object() {
            Some(map) => {
                for (skill, count) in map {
                    match (skill.parse::<Skill>(), count.as_u64()) {
                        (Ok(skill), Some(n)) if n <= 1000 => {
                            crew_needs.insert(skill, n as u32);
                        }
                        (Err(e), _) => p.add("bad_crew_needs", format!("`crew_needs`: {e}")),
                        _ => p.add(
                            "bad_crew_needs",
                            format!("`crew_needs.{}` must be an integer 0..1000", excerpt(skill)),
                        ),
                    }
                }
            }
            None => p.add(
                "bad_crew_needs",
                "`crew_needs` must be an object of skill → count",
            ),
        }
    }
    let note = obj.get("note").and_then(|n| match n.as_str() {
        Some(s) if s.chars().count() <= 1000 => Some(s.to_owned()),
        _ => {
            p.add(
                "bad_note",
                "`note` must be a string of at most 1000 characters",
            );
            None
        }
    });
    (cause, severity, crew_needs, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_payload_bytes: 1 << 20,
        max_vertices: 100_000,
    };

    #[test]
    fn parses_a_detected_polygon() {
        let raw = include_bytes!("../../samples/events/detected-polygon.json");
        let e = parse_event(raw, LIMITS).unwrap();
        assert_eq!(e.fault_id.as_str(), "F-1001");
        assert_eq!(e.kind, EventKind::Detected);
        assert_eq!(e.seq, Some(1));
        assert_eq!(e.cause, Some("tree_contact"));
        assert!(matches!(e.etr, Etr::At(_)) && e.area.is_some());
    }

    #[test]
    fn every_problem_is_named() {
        let raw = include_bytes!("../../samples/events/bad-time-and-ring.json");
        let r = parse_event(raw, LIMITS).unwrap_err();
        assert!(
            r.reason.contains("occurred_at") && r.reason.contains("at least 4"),
            "{}",
            r.reason
        );
        assert_eq!(r.event_id.as_deref(), Some("evt-bad-3"));
        let raw = include_bytes!("../../samples/events/bad-coordinates.json");
        let r = parse_event(raw, LIMITS).unwrap_err();
        assert!(
            r.reason.contains("radius_m") && r.reason.contains("outside WGS84"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn limits_and_planned_window() {
        let big = vec![b' '; 2048];
        let small = Limits {
            max_payload_bytes: 1024,
            ..LIMITS
        };
        assert_eq!(parse_event(&big, small).unwrap_err().code, "too_large");
        let raw = br#"{"v":1,"event_id":"e","fault_id":"f","kind":"planned","occurred_at":"2026-11-23T09:00:00Z","devices":["x"],"starts_at":"2026-11-26T12:00:00Z","ends_at":"2026-11-26T08:00:00Z"}"#;
        assert_eq!(parse_event(raw, LIMITS).unwrap_err().code, "bad_window");
        let raw = br#"{"v":2,"event_id":"e","fault_id":"f","kind":"restored","occurred_at":"2026-11-23T09:00:00Z"}"#;
        assert_eq!(
            parse_event(raw, LIMITS).unwrap_err().code,
            "unsupported_version"
        );
        let raw = br#"{"v":1,"event_id":"e","fault_id":"f","kind":"restored","occurred_at":"2026-11-23T09:00:00+01:00","cause":"meteor","crew_needs":{"lineworker":4}}"#;
        let e = parse_event(raw, LIMITS).unwrap();
        assert_eq!(e.cause, Some("unknown"));
        assert_eq!(e.crew_needs.get(&Skill::Lineworker), Some(&4));
        assert_eq!(e.occurred_at.to_rfc3339(), "2026-11-23T08:00:00+00:00");
    }

    fn circle(radius: &str) -> Result<FaultEvent, Rejection> {
        let raw = format!(
            r#"{{"v":1,"event_id":"e","fault_id":"f","kind":"detected","occurred_at":"2026-11-23T09:00:00Z","area":{{"type":"Point","coordinates":[11.8,53.4]}},"radius_m":{radius}}}"#
        );
        parse_event(raw.as_bytes(), LIMITS)
    }

    #[test]
    fn radius_has_a_maximum() {
        assert!(circle("200000").is_ok());
        for radius in ["200000.5", "1e308", "0", "-1"] {
            let r = circle(radius).unwrap_err();
            assert_eq!(r.code, "bad_area", "{radius}");
            assert!(r.reason.contains("at most 200000"), "{}", r.reason);
        }
    }

    #[test]
    fn reasons_quote_values_escaped_and_cut() {
        let huge = "k".repeat(500_000);
        let raw = serde_json::json!({
            "v": 1, "event_id": "e\r\nINFO forged", "fault_id": format!("F\n{huge}"),
            "kind": huge, "occurred_at": "2026-11-23T09:00:00Z", "devices": ["x"],
        })
        .to_string();
        let r = parse_event(raw.as_bytes(), LIMITS).unwrap_err();
        assert_eq!(r.code, "bad_id");
        assert!(r.reason.len() < 2000, "{} bytes", r.reason.len());
        assert!(
            r.reason.contains(" characters) is not one of"),
            "{}",
            r.reason
        );
        let ids = [r.event_id.clone().unwrap(), r.fault_id.clone().unwrap()];
        assert_eq!(ids[0], "e\\r\\nINFO forged");
        assert!(
            ids[1].starts_with("F\\n") && ids[1].len() < 300,
            "{}",
            ids[1]
        );
        for text in [&r.reason, &ids[0], &ids[1]] {
            assert!(!text.contains(['\r', '\n', '\0']), "{text}");
        }
    }

    #[test]
    fn problems_are_counted_beyond_the_first_twenty() {
        let needs: Map<String, Value> = (0..1000)
            .map(|i| (format!("juggler{i:04}"), Value::from(1)))
            .collect();
        let raw = serde_json::json!({
            "v": 1, "event_id": "e", "fault_id": "f", "kind": "restored",
            "occurred_at": "2026-11-23T09:00:00Z", "crew_needs": needs,
        })
        .to_string();
        let r = parse_event(raw.as_bytes(), LIMITS).unwrap_err();
        assert_eq!(r.code, "bad_crew_needs");
        assert_eq!(r.reason.matches("unknown skill").count(), MAX_PROBLEMS);
        assert!(
            r.reason.ends_with("; and 980 more problems"),
            "{}",
            r.reason
        );
    }
}
