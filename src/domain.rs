//! Parsed domain values. Each constructor is the one place its rule is checked, so the rest of
//! the code can hold a `Phone` or a `Coord` without re-validating it ("parse, don't validate").

use std::fmt;
use std::str::FromStr;

use chrono::NaiveTime;
use serde::{Deserialize, Serialize};

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DomainError(pub String);

fn err(msg: impl Into<String>) -> DomainError {
    DomainError(msg.into())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// 1 to 128 characters, no control characters.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                let raw = raw.trim();
                if raw.is_empty() || raw.chars().count() > 128 {
                    return Err(err(concat!($what, " must be 1 to 128 characters")));
                }
                if raw.chars().any(breaks_text) {
                    return Err(err(concat!($what, " must not contain control characters")));
                }
                Ok(Self(raw.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(s: String) -> Result<Self, DomainError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(/// A customer (service account) id.
    CustomerId, "customer_id");
id_type!(/// A fault (outage) id, stable across the events of one outage.
    FaultId, "fault_id");
id_type!(/// A fault event id, unique per event: the idempotency key of ingest.
    EventId, "event_id");
id_type!(/// A staff member id.
    StaffId, "staff_id");
id_type!(/// The region level of an event's topic (`?region=` of events posted over HTTP).
    Region, "region");

/// How many characters of an outside value a reason or a log line quotes.
pub const QUOTE_CHARS: usize = 200;

/// Characters that must never reach a text log or a reason unescaped: control characters (CR,
/// LF and NUL among them) and the Unicode line and paragraph separators, each of which can end
/// a line and make the rest of a value read as a line of its own.
pub fn breaks_text(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `value` as a reason or a log line may quote it: characters that break text escaped (`\n`,
/// `\u{0}`), and cut after [`QUOTE_CHARS`] characters, so that a megabyte value costs the
/// database, the dead letter and every reader of the reason a line rather than a megabyte.
pub fn excerpt(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(QUOTE_CHARS * 2));
    let mut chars = value.chars();
    for c in chars.by_ref().take(QUOTE_CHARS) {
        if breaks_text(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    let rest = chars.count();
    if rest > 0 {
        out.push_str(&format!("…(+{rest} characters)"));
    }
    out
}

/// Refuses a free-text value that is empty, longer than `max` characters or holds a character
/// that breaks text; `what` names the field in the error.
fn plain_text(raw: &str, what: &str, max: usize) -> Result<String, DomainError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().count() > max {
        return Err(err(format!("{what} must be 1 to {max} characters")));
    }
    if raw.chars().any(breaks_text) {
        return Err(err(format!(
            "{what} must not contain control characters (line breaks, NUL, …)"
        )));
    }
    Ok(raw.to_owned())
}

/// A person's or a customer's name as it appears in notices: one line of at most
/// [`Name::MAX_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        plain_text(raw, "name", Self::MAX_CHARS).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

/// A grid device a customer hangs on (`feeder`, `service_point`): the same bound as an event's
/// `devices` entries, so every device an import accepts can be named in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device(String);

impl Device {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        plain_text(raw, "device", Self::MAX_CHARS).map(Self)
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.0
    }
}

/// An app's push registration token (FCM, APNs or the utility's own): visible ASCII, at most
/// [`PushToken::MAX_CHARS`]. It addresses one device, so `Debug` masks it like a contact.
/// Stored as its text (`sqlx` transparent).
#[derive(Clone, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(transparent)]
pub struct PushToken(String);

impl PushToken {
    /// FCM tokens are about 160 characters; this leaves room for other providers' formats.
    pub const MAX_CHARS: usize = 4096;

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        let visible = raw.bytes().all(|b| b.is_ascii_graphic());
        if raw.is_empty() || raw.len() > Self::MAX_CHARS || !visible {
            return Err(err(format!(
                "push token must be 1 to {} visible ASCII characters (no spaces)",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PushToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PushToken({})", mask_middle(&self.0, 4, 4))
    }
}

/// A provider's id of an inbound message (Twilio's `MessageSid`, `SM` and 32 hex digits): the
/// key that recognises a webhook delivered twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageSid(String);

impl MessageSid {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(err(
                "MessageSid must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A WGS84 position, longitude first as in GeoJSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coord {
    pub lon: f64,
    pub lat: f64,
}

impl Coord {
    pub fn new(lon: f64, lat: f64) -> Result<Self, DomainError> {
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(err(format!("longitude {lon} is outside -180..180")));
        }
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(err(format!("latitude {lat} is outside -90..90")));
        }
        Ok(Self { lon, lat })
    }
}

/// An E.164 phone number: `+`, country code, subscriber number; 8 to 15 digits.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let digits = raw
            .strip_prefix('+')
            .ok_or_else(|| err("phone must be E.164 and start with +"))?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return Err(err(
                "phone must be E.164: + then 8 to 15 digits, not starting with 0",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Safe for logs: `+49151*****069`.
    pub fn masked(&self) -> String {
        mask_middle(&self.0, 6, 3)
    }
}

impl TryFrom<String> for Phone {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}
impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}
/// `Debug` masks, so a stray `{:?}` in a log line cannot leak the number.
impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

/// An e-mail address (syntax checked loosely: one `@`, a dotted domain, no spaces).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let raw = raw.trim();
        let (local, domain) = raw
            .split_once('@')
            .ok_or_else(|| err("e-mail must contain @"))?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !raw.contains(char::is_whitespace)
            && !domain.contains('@')
            && raw.len() <= 254;
        if !ok {
            return Err(err("e-mail is not a valid address"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Safe for logs: `c*******1@example.net`.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => format!("{}@{domain}", mask_middle(local, 1, 1)),
            None => "***".into(),
        }
    }
}

impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// Keeps `head` and `tail` characters and stars the rest; short values are starred whole.
pub fn mask_middle(value: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len().max(3));
    }
    let mut out: String = chars[..head].iter().collect();
    out.push_str(&"*".repeat(chars.len() - head - tail));
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A way of reaching a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Push,
    Sms,
    Email,
}

impl FromStr for Channel {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        match s.trim() {
            "push" => Ok(Self::Push),
            "sms" => Ok(Self::Sms),
            "email" => Ok(Self::Email),
            other => Err(err(format!(
                "unknown channel `{}` (push, sms, email)",
                excerpt(other)
            ))),
        }
    }
}

impl Channel {
    /// Every customer channel.
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Sms, Channel::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
}

/// Why a customer is a priority customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CriticalKind {
    LifeSupport,
    Hospital,
    CareHome,
    WaterPumping,
}

impl FromStr for CriticalKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        match s.trim() {
            "life_support" => Ok(Self::LifeSupport),
            "hospital" => Ok(Self::Hospital),
            "care_home" => Ok(Self::CareHome),
            "water_pumping" => Ok(Self::WaterPumping),
            other => Err(err(format!(
                "unknown critical kind `{}` (life_support, hospital, care_home, water_pumping)",
                excerpt(other)
            ))),
        }
    }
}

impl CriticalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LifeSupport => "life_support",
            Self::Hospital => "hospital",
            Self::CareHome => "care_home",
            Self::WaterPumping => "water_pumping",
        }
    }
}

/// A BCP 47 language tag, normalised to lower case (`de`, `en-gb`, `zh`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Language(String);

impl Language {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let tag = raw.trim().to_ascii_lowercase().replace('_', "-");
        let ok = (2..=35).contains(&tag.len())
            && tag
                .split('-')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
            && tag
                .split('-')
                .next()
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return Err(err(format!(
                "`{}` is not a BCP 47 language tag",
                excerpt(raw)
            )));
        }
        Ok(Self(tag))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Local times between which non-urgent notices wait; may wrap past midnight (`22:00-07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl FromStr for QuietHours {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let bad = || err(format!("quiet hours `{}` must be HH:MM-HH:MM", excerpt(s)));
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
        let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
        Ok(Self { start, end })
    }
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// A staff skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    Lineworker,
    TreeTrimmer,
    SubstationTech,
    CallCenter,
    SafetyOfficer,
    DamageAssessor,
}

impl FromStr for Skill {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Ok(match s.trim() {
            "lineworker" => Self::Lineworker,
            "tree_trimmer" => Self::TreeTrimmer,
            "substation_tech" => Self::SubstationTech,
            "call_center" => Self::CallCenter,
            "safety_officer" => Self::SafetyOfficer,
            "damage_assessor" => Self::DamageAssessor,
            other => return Err(err(format!("unknown skill `{}`", excerpt(other)))),
        })
    }
}

impl Skill {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lineworker => "lineworker",
            Self::TreeTrimmer => "tree_trimmer",
            Self::SubstationTech => "substation_tech",
            Self::CallCenter => "call_center",
            Self::SafetyOfficer => "safety_officer",
            Self::DamageAssessor => "damage_assessor",
        }
    }
}

/// Skill level: 1 trainee, 2 qualified, 3 senior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct SkillLevel(u8);

impl SkillLevel {
    /// Level 1, a trainee.
    pub const MIN: SkillLevel = SkillLevel(1);

    pub fn new(level: u8) -> Result<Self, DomainError> {
        if (1..=3).contains(&level) {
            Ok(Self(level))
        } else {
            Err(err(format!("skill level {level} is outside 1..3")))
        }
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for SkillLevel {
    type Error = DomainError;
    fn try_from(v: u8) -> Result<Self, DomainError> {
        Self::new(v)
    }
}
impl From<SkillLevel> for u8 {
    fn from(l: SkillLevel) -> u8 {
        l.0
    }
}

/// Whether a staff member can be assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffStatus {
    OnShift,
    OnCall,
    OffDuty,
}

impl FromStr for StaffStatus {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        match s.trim() {
            "on_shift" => Ok(Self::OnShift),
            "on_call" => Ok(Self::OnCall),
            "off_duty" => Ok(Self::OffDuty),
            other => Err(err(format!(
                "unknown status `{}` (on_shift, on_call, off_duty)",
                excerpt(other)
            ))),
        }
    }
}

impl StaffStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnShift => "on_shift",
            Self::OnCall => "on_call",
            Self::OffDuty => "off_duty",
        }
    }
}

/// Bytes as lower-case hex (digests, signatures).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_e164_and_masked() {
        let p = Phone::parse("+4915161973069").unwrap();
        assert_eq!(p.masked(), "+49151*****069");
        assert!(!format!("{p:?}").contains("61973"));
        for bad in ["015161973069", "+0151619", "+49 151 6197", "+1234567"] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_masked() {
        let e = Email::parse("cc7000001@example.net").unwrap();
        assert_eq!(e.masked(), "c*******1@example.net");
        assert!(Email::parse("no-at.example").is_err());
        assert!(Email::parse("a@b").is_err());
    }

    #[test]
    fn coords_and_levels_have_ranges() {
        assert!(Coord::new(191.0, 95.0).is_err());
        assert!(Coord::new(f64::NAN, 0.0).is_err());
        assert!(Coord::new(11.8, 53.4).is_ok());
        assert!(SkillLevel::new(0).is_err() && SkillLevel::new(4).is_err());
        assert_eq!(SkillLevel::new(3).unwrap().get(), 3);
    }

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q: QuietHours = "22:00-07:00".parse().unwrap();
        assert_eq!(q.to_string(), "22:00-07:00");
        assert!("22-7".parse::<QuietHours>().is_err());
    }

    #[test]
    fn ids_and_languages() {
        assert!(FaultId::parse("").is_err());
        assert!(FaultId::parse(&"x".repeat(129)).is_err());
        assert_eq!(Language::parse("en_GB").unwrap().as_str(), "en-gb");
        assert!(Language::parse("e").is_err());
        for bad in ["north\r\nINFO forged", "a\0b", "a\u{2028}b"] {
            assert!(Region::parse(bad).is_err(), "{bad:?}");
            assert!(FaultId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn excerpts_escape_and_cut() {
        assert_eq!(excerpt("a\r\nb\0"), "a\\r\\nb\\u{0}");
        let long = "x".repeat(1_000_000);
        let cut = excerpt(&long);
        assert!(cut.starts_with(&"x".repeat(QUOTE_CHARS)), "{cut}");
        assert!(cut.ends_with("…(+999800 characters)"), "{cut}");
        let message = Language::parse(&long).unwrap_err().to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
    }

    #[test]
    fn names_tokens_and_message_sids_are_bounded() {
        assert_eq!(Name::parse(" R. Krause ").unwrap().as_str(), "R. Krause");
        let long_name = "n".repeat(Name::MAX_CHARS + 1);
        for bad in ["", "A\r\nB", "A\0", long_name.as_str()] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Device::parse(&"d".repeat(Device::MAX_CHARS)).is_ok());
        assert!(Device::parse(&"d".repeat(Device::MAX_CHARS + 1)).is_err());
        let token = PushToken::parse("fcm:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx").unwrap();
        assert!(!format!("{token:?}").contains("APA91bHun4"), "{token:?}");
        let long_token = "t".repeat(PushToken::MAX_CHARS + 1);
        for bad in ["tok en", "tok\nen", "töken", long_token.as_str()] {
            assert!(PushToken::parse(bad).is_err(), "{bad:?}");
        }
        assert!(MessageSid::parse("SM0123456789abcdef0123456789abcdef").is_ok());
        let long_sid = "S".repeat(65);
        for bad in ["", "SM 1", "SM\r\n1", long_sid.as_str()] {
            assert!(MessageSid::parse(bad).is_err(), "{bad:?}");
        }
    }
}
