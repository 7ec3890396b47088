//! CSV (columns of `docs/DATA.md`) and GeoJSON FeatureCollection import. Bad rows are reported
//! with their line number and reason; good rows go on.

use std::collections::HashMap;

use chrono_tz::Tz;
use serde_json::Value;

use super::{CustomerRecord, StaffRecord};
use crate::domain::{
    breaks_text, excerpt, Channel, Coord, CustomerId, Device, DomainError, Email, Language, Name,
    Phone, PushToken, StaffId,
};

/// The columns of each import (docs/DATA.md). Only these are read, so only these are checked:
/// an export may carry columns of its own.
const CUSTOMER_COLUMNS: [&str; 14] = [
    "customer_id",
    "name",
    "lon",
    "lat",
    "phone",
    "email",
    "push_token",
    "language",
    "channels",
    "quiet_hours",
    "timezone",
    "critical",
    "feeder",
    "service_point",
];
const STAFF_COLUMNS: [&str; 10] = [
    "staff_id",
    "name",
    "phone",
    "email",
    "skills",
    "languages",
    "lon",
    "lat",
    "status",
    "max_shift_hours",
];

/// The longest value a column may hold: a push token's, the longest legitimate one.
const MAX_FIELD_CHARS: usize = PushToken::MAX_CHARS;

/// One refused row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line of the CSV file (the header is line 1), or feature number for GeoJSON.
    pub line: u64,
    pub reason: String,
}

/// Parsed rows and refused ones.
#[derive(Debug)]
pub struct ImportReport<T> {
    pub rows: Vec<T>,
    pub errors: Vec<RowError>,
}

/// A row as field name → raw text, from either format.
type Fields = HashMap<String, String>;

/// Parses customers from CSV text or a GeoJSON FeatureCollection.
pub fn parse_customers(text: &str) -> Result<ImportReport<CustomerRecord>, String> {
    parse_rows(text, customer_from)
}

/// Parses staff from CSV text or a GeoJSON FeatureCollection.
pub fn parse_staff(text: &str) -> Result<ImportReport<StaffRecord>, String> {
    parse_rows(text, staff_from)
}

fn parse_rows<T>(
    text: &str,
    convert: fn(&Fields) -> Result<T, DomainError>,
) -> Result<ImportReport<T>, String> {
    let rows = if text.trim_start().starts_with('{') {
        geojson_rows(text)?
    } else {
        csv_rows(text)?
    };
    let mut report = ImportReport {
        rows: Vec::new(),
        errors: Vec::new(),
    };
    for (line, fields) in rows {
        match fields.and_then(|f| convert(&f).map_err(|e| e.0)) {
            Ok(row) => report.rows.push(row),
            Err(reason) => report.errors.push(RowError { line, reason }),
        }
    }
    Ok(report)
}

type RawRow = (u64, Result<Fields, String>);

fn csv_rows(text: &str) -> Result<Vec<RawRow>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut out = Vec::new();
    for record in reader.records() {
        let (line, fields) = match record {
            Ok(r) if r.len() != headers.len() => (
                r.position().map_or(0, |p| p.line()),
                Err(format!(
                    "has {} fields; the header has {}",
                    r.len(),
                    headers.len()
                )),
            ),
            Ok(r) => (
                r.position().map_or(0, |p| p.line()),
                Ok(headers
                    .iter()
                    .cloned()
                    .zip(r.iter().map(|v| v.trim().to_owned()))
                    .collect()),
            ),
            Err(e) => (
                e.position().map_or(0, |p| p.line()),
                Err(format!("unreadable CSV: {e}")),
            ),
        };
        out.push((line, fields));
    }
    Ok(out)
}

/// Features' properties become fields; a Point geometry supplies `lon` and `lat`.
fn geojson_rows(text: &str) -> Result<Vec<RawRow>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let features = doc
        .get("features")
        .and_then(Value::as_array)
        .ok_or("a GeoJSON import must be a FeatureCollection with `features`")?;
    Ok(features
        .iter()
        .enumerate()
        .map(|(i, feature)| {
            let mut fields: Fields = HashMap::new();
            if let Some(props) = feature.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    fields.insert(k.clone(), text);
                }
            }
            let point = feature
                .pointer("/geometry/coordinates")
                .and_then(Value::as_array);
            if let Some([lon, lat, ..]) = point.map(Vec::as_slice) {
                fields.insert("lon".into(), lon.to_string());
                fields.insert("lat".into(), lat.to_string());
            }
            (i as u64 + 1, Ok(fields))
        })
        .collect())
}

fn field<'a>(f: &'a Fields, key: &str) -> &'a str {
    f.get(key).map(String::as_str).unwrap_or("")
}

fn required<'a>(f: &'a Fields, key: &str) -> Result<&'a str, DomainError> {
    match field(f, key) {
        "" => Err(DomainError(format!("`{key}` is required"))),
        v => Ok(v),
    }
}

fn optional<T>(
    f: &Fields,
    key: &str,
    parse: impl Fn(&str) -> Result<T, DomainError>,
) -> Result<Option<T>, DomainError> {
    match field(f, key) {
        "" => Ok(None),
        v => parse(v)
            .map(Some)
            .map_err(|e| DomainError(format!("`{key}`: {e}"))),
    }
}

fn number(f: &Fields, key: &str) -> Result<f64, DomainError> {
    let raw = required(f, key)?;
    raw.parse()
        .map_err(|_| DomainError(format!("`{key}` \"{}\" is not a number", excerpt(raw))))
}

/// Refuses a row whose columns hold a character that breaks text (a NUL or a line break in a
/// name would reach notices, the console and log lines) or more than [`MAX_FIELD_CHARS`]
/// characters, before any column is parsed and quoted in a reason.
fn plain_columns(f: &Fields, columns: &[&str]) -> Result<(), DomainError> {
    for key in columns {
        let value = field(f, key);
        if value.chars().count() > MAX_FIELD_CHARS {
            return Err(DomainError(format!(
                "`{key}` is longer than {MAX_FIELD_CHARS} characters"
            )));
        }
        if value.chars().any(breaks_text) {
            return Err(DomainError(format!(
                "`{key}` contains a control character (a line break, NUL, …)"
            )));
        }
    }
    Ok(())
}

/// Preferred channels in order, each at most once.
fn channels(raw: &str) -> Result<Vec<Channel>, DomainError> {
    let channels: Vec<Channel> = list(raw, str::parse)?;
    for (i, c) in channels.iter().enumerate() {
        if channels[..i].contains(c) {
            return Err(DomainError(format!(
                "`channels` lists {} twice",
                c.as_str()
            )));
        }
    }
    Ok(channels)
}

fn name(f: &Fields) -> Result<String, DomainError> {
    Name::parse(required(f, "name")?).map(String::from)
}

fn device(raw: &str) -> Result<String, DomainError> {
    Device::parse(raw).map(String::from)
}

fn location(f: &Fields) -> Result<Coord, DomainError> {
    Coord::new(number(f, "lon")?, number(f, "lat")?)
}

fn list<T>(
    raw: &str,
    parse: impl Fn(&str) -> Result<T, DomainError>,
) -> Result<Vec<T>, DomainError> {
    raw.split('|')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse(s.trim()))
        .collect()
}

fn customer_from(f: &Fields) -> Result<CustomerRecord, DomainError> {
    plain_columns(f, &CUSTOMER_COLUMNS)?;
    let timezone = match field(f, "timezone") {
        "" => Tz::UTC,
        tz => tz.parse::<Tz>().map_err(|_| {
            DomainError(format!(
                "`timezone` \"{}\" is not an IANA time zone",
                excerpt(tz)
            ))
        })?,
    };
    let language = match field(f, "language") {
        "" => Language::parse("en")?,
        raw => Language::parse(raw)?,
    };
    Ok(CustomerRecord {
        id: CustomerId::parse(required(f, "customer_id")?)?,
        name: name(f)?,
        location: location(f)?,
        phone: optional(f, "phone", Phone::parse)?,
        email: optional(f, "email", Email::parse)?,
        push_token: optional(f, "push_token", PushToken::parse)?,
        language,
        channels: channels(field(f, "channels"))?,
        quiet_hours: optional(f, "quiet_hours", str::parse)?,
        timezone,
        critical: optional(f, "critical", str::parse)?,
        feeder: optional(f, "feeder", device)?,
        service_point: optional(f, "service_point", device)?,
    })
}

fn staff_from(f: &Fields) -> Result<StaffRecord, DomainError> {
    plain_columns(f, &STAFF_COLUMNS)?;
    let skills = list(required(f, "skills")?, |s| {
        let (skill, level) = s
            .split_once(':')
            .ok_or_else(|| DomainError(format!("skill `{}` must be skill:level", excerpt(s))))?;
        let level: u8 = level.parse().map_err(|_| {
            DomainError(format!("skill level `{}` is not a number", excerpt(level)))
        })?;
        Ok((skill.parse()?, crate::domain::SkillLevel::new(level)?))
    })?;
    let max_shift_hours = number(f, "max_shift_hours")?;
    if !(1.0..=48.0).contains(&max_shift_hours) {
        return Err(DomainError(
            "`max_shift_hours` must be between 1 and 48".into(),
        ));
    }
    Ok(StaffRecord {
        id: StaffId::parse(required(f, "staff_id")?)?,
        name: name(f)?,
        phone: optional(f, "phone", Phone::parse)?,
        email: optional(f, "email", Email::parse)?,
        skills,
        languages: list(field(f, "languages"), Language::parse)?,
        depot: location(f)?,
        status: required(f, "status")?.parse()?,
        max_shift_hours,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n";

    #[test]
    fn bad_rows_are_reported_by_line_and_good_rows_kept() {
        let text = format!(
            "{HEADER}C1,A,11.8,53.4,+4915161973069,,,de,sms|email,22:00-07:00,Europe/Berlin,life_support,LV1,LV1 Bus 1\n\
             C2,B,191,53.4,,,,de,,,Europe/Berlin,,,\n\
             C3,C,11.8,53.4,0151,,,de,sms,,Europe/Berlin,,,\n\
             C4,D,11.8,53.4,,,,de,fax,,Europe/Berlin,,,\n\
             C5,E,11.8,53.4,,,,de,,,Mars/Olympus,,,\n\
             C6,F,11.8\n"
        );
        let report = parse_customers(&text).unwrap();
        assert_eq!(report.rows.len(), 1);
        assert_eq!(report.rows[0].channels.len(), 2);
        let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
        assert!(
            report.errors[0].reason.contains("longitude"),
            "{:?}",
            report.errors[0]
        );
        assert!(report.errors[1].reason.contains("phone"));
        assert!(report.errors[2].reason.contains("fax"));
        assert!(report.errors[3].reason.contains("time zone"));
        assert!(report.errors[4].reason.contains("fields"));
    }

    #[test]
    fn control_characters_and_oversized_fields_are_refused() {
        let big = "x".repeat(MAX_FIELD_CHARS + 1);
        let token = "dXyZ:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";
        let text = format!(
            "{HEADER}C1,\"A.\r\nINFO forged\",11.8,53.4,,,,de,,,,,,\n\
             C2,B\0,11.8,53.4,,,,de,,,,,,\n\
             C3,{big},11.8,53.4,,,,de,,,,,,\n\
             C4,D,11.8,53.4,,,not a token,de,push,,,,,\n\
             C5,E,11.8,53.4,,,,de,,,,,{},\n\
             C6,F,11.8,53.4,,,,de,sms|sms,,,,,\n\
             C7,G,11.8,53.4,,,{token},de,push,,,,LV1,LV1 Bus 1\n",
            "f".repeat(257)
        );
        let report = parse_customers(&text).unwrap();
        assert_eq!(report.rows.len(), 1, "{:?}", report.errors);
        assert_eq!(
            report.rows[0].push_token.as_ref().map(PushToken::as_str),
            Some(token)
        );
        let reasons: Vec<&str> = report.errors.iter().map(|e| e.reason.as_str()).collect();
        assert!(
            reasons[0].contains("`name` contains a control character"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("`name` contains a control character"),
            "{reasons:?}"
        );
        assert!(reasons[2].contains("longer than 4096"), "{reasons:?}");
        assert!(reasons[3].contains("push token"), "{reasons:?}");
        assert!(
            reasons[4].contains("device must be 1 to 256"),
            "{reasons:?}"
        );
        assert!(reasons[5].contains("sms twice"), "{reasons:?}");
        assert!(
            reasons.iter().all(|r| r.len() < 300),
            "reasons quote no whole value: {reasons:?}"
        );
        let long_name = format!("{HEADER}C8,{},11.8,53.4,,,,de,,,,,,\n", "n".repeat(201));
        let report = parse_customers(&long_name).unwrap();
        assert!(report.errors[0].reason.contains("name must be 1 to 200"));
    }

    #[test]
    fn geojson_and_staff() {
        let geo = r#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[11.8,53.4]},
            "properties":{"customer_id":"G1","name":"G","language":"zh","channels":"push","timezone":"Asia/Shanghai"}}]}"#;
        let report = parse_customers(geo).unwrap();
        assert_eq!(report.rows[0].location, Coord::new(11.8, 53.4).unwrap());
        let staff = "staff_id,name,phone,email,skills,languages,lon,lat,status,max_shift_hours\n\
                     S1,J,+491707854038,s@utility.example,lineworker:3|tree_trimmer:1,de|ru,11.8,53.3,on_call,16\n\
                     S2,K,,,lineworker:5,de,11.8,53.3,on_call,16\n";
        let report = parse_staff(staff).unwrap();
        assert_eq!(report.rows[0].skills_text(), "lineworker:3|tree_trimmer:1");
        assert_eq!(report.errors[0].line, 3);
        assert!(report.errors[0].reason.contains("level"));
    }

    #[test]
    fn bundled_samples_import_cleanly() {
        let c = parse_customers(include_str!("../../samples/customers.csv")).unwrap();
        assert_eq!(
            (c.rows.len(), c.errors.len()),
            (8767, 0),
            "{:?}",
            c.errors.first()
        );
        let s = parse_staff(include_str!("../../samples/staff.csv")).unwrap();
        assert_eq!(
            (s.rows.len(), s.errors.len()),
            (240, 0),
            "{:?}",
            s.errors.first()
        );
    }
}
