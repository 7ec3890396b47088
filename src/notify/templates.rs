//! Notice wording: one file per language and kind under `templates/`, the one place to edit it.
//! A language without templates falls back to its primary subtag (`de-AT` → `de`), then `en`.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Every bundled template file, as (language, kind, text).
macro_rules! bundle {
    ($($lang:literal),* ; $kinds:tt) => { &[$(bundle!(@lang $lang $kinds)),*] };
    (@lang $lang:literal [$($kind:literal),*]) => {
        &[$(($lang, $kind, include_str!(concat!("../../templates/", $lang, "/", $kind, ".txt")))),*]
    };
}

/// The notice kinds (and `replies`, the answers to inbound SMS) of each bundled language.
const FILES: &[&[(&str, &str, &str)]] = bundle!("en", "de", "ru", "zh"; [
    "outage", "restored", "etr_update", "etr_passed", "etr_withdrawn", "planned",
    "planned_cancelled", "replies", "dispatch", "callout"
]);

/// What a template is filled with.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub name: &'a str,
    pub timezone: Tz,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub etr: Option<DateTime<Utc>>,
    pub cause: &'a str,
    /// For a staff dispatch: the slot and the place.
    pub dispatch: Option<Dispatch<'a>>,
}

/// What a dispatch notice says beyond the fault's cause.
#[derive(Debug, Clone, Copy)]
pub struct Dispatch<'a> {
    pub fault: &'a str,
    /// The skill's id (`lineworker`), worded by the language's dispatch file.
    pub skill: &'a str,
    /// Where to go, `lat,lon`.
    pub place: &'a str,
}

/// A rendered notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The language actually used (after fallback).
    pub language: String,
    pub title: String,
    pub body: String,
}

/// All templates, parsed once.
#[derive(Debug, Clone)]
pub struct Templates {
    /// (language, kind) → key → text.
    files: HashMap<(String, String), HashMap<String, String>>,
}

impl Templates {
    pub fn bundled() -> Self {
        let files = FILES
            .iter()
            .flat_map(|l| l.iter())
            .map(|(lang, kind, text)| ((lang.to_string(), kind.to_string()), parse(text)))
            .collect();
        Self { files }
    }

    /// The file of `kind` in `language` or its fallback, with the language found.
    fn file(&self, language: &str, kind: &str) -> Option<(String, &HashMap<String, String>)> {
        let primary = language.split('-').next().unwrap_or(language);
        [language, primary, "en"].into_iter().find_map(|l| {
            self.files
                .get(&(l.to_owned(), kind.to_owned()))
                .map(|f| (l.to_owned(), f))
        })
    }

    /// Renders `kind` for `language`, falling back as described above.
    pub fn render(&self, language: &str, kind: &str, ctx: &Context<'_>) -> Option<Rendered> {
        let (language, file) = self.file(language, kind)?;
        let body = self.fill(&language, file.get("body")?, ctx, false);
        Some(Rendered {
            title: self.fill(&language, file.get("title")?, ctx, false),
            body,
            language,
        })
    }

    /// Like [`Templates::render`], with the file's short `sms` wording and compact times, so
    /// the text fits one SMS segment where the language allows.
    pub fn render_sms(&self, language: &str, kind: &str, ctx: &Context<'_>) -> Option<Rendered> {
        let (language, file) = self.file(language, kind)?;
        let Some(short) = file.get("sms") else {
            return self.render(&language, kind, ctx);
        };
        Some(Rendered {
            title: self.fill(&language, file.get("title")?, ctx, false),
            body: self.fill(&language, short, ctx, true),
            language,
        })
    }

    /// An answer to an inbound SMS (`stop`, `start`, `status_out`, …) in the customer's
    /// language; `ctx` fills the outage details when there are any.
    pub fn reply(&self, language: &str, key: &str, ctx: Option<&Context<'_>>) -> String {
        let Some((language, file)) = self.file(language, "replies") else {
            return String::new();
        };
        let text = file.get(key).map(String::as_str).unwrap_or_default();
        match ctx {
            Some(ctx) => self.fill(&language, text, ctx, true),
            None => text.to_owned(),
        }
    }

    /// An answer to a staff member's YES/NO (`reply_yes`, `reply_no`, `reply_none`) in their
    /// language.
    pub fn dispatch_reply(&self, language: &str, key: &str, fault: &str) -> String {
        self.file(language, "dispatch")
            .and_then(|(_, f)| f.get(key))
            .map(|t| t.replace("{fault}", fault))
            .unwrap_or_default()
    }

    /// Fills the placeholders of `text` for a language found by [`Templates::file`], in one
    /// pass: each value is worked out only where its placeholder appears, and a value is never
    /// searched for placeholders again (a name that contains `{since}` stays as written). A
    /// brace that opens no known placeholder is kept as it is.
    fn fill(&self, language: &str, text: &str, ctx: &Context<'_>, compact: bool) -> String {
        let mut out = String::with_capacity(text.len() + 64);
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name = after.find('}').map(|close| &after[..close]);
            match name.and_then(|name| self.value(language, name, ctx, compact)) {
                Some(value) => {
                    out.push_str(&value);
                    rest = &after[name.map_or(0, str::len) + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The value of one placeholder, or `None` if `name` is none.
    fn value<'c>(
        &'c self,
        language: &str,
        name: &str,
        ctx: &'c Context<'_>,
        compact: bool,
    ) -> Option<Cow<'c, str>> {
        // Cause phrases and the unknown-ETR wording live in the language's outage file.
        let shared = || self.files.get(&(language.to_owned(), "outage".to_owned()));
        let lookup = |key: &str| {
            shared()
                .and_then(|s| s.get(key))
                .map(|v| Cow::from(v.as_str()))
        };
        let local = |t: DateTime<Utc>| {
            let format = if compact {
                "%d.%m. %H:%M"
            } else {
                "%Y-%m-%d %H:%M %Z"
            };
            Cow::from(t.with_timezone(&ctx.timezone).format(format).to_string())
        };
        let or_unknown = |t: Option<DateTime<Utc>>| {
            t.map(local)
                .or_else(|| lookup("etr_unknown"))
                .unwrap_or_default()
        };
        let dispatch = ctx.dispatch.as_ref();
        Some(match name {
            "name" => Cow::from(ctx.name),
            "since" => local(ctx.since),
            "until" => or_unknown(ctx.until),
            "etr" => or_unknown(ctx.etr),
            "cause" => lookup(&format!("cause.{}", ctx.cause))
                .or_else(|| lookup("cause.unknown"))
                .unwrap_or(Cow::from(ctx.cause)),
            "fault" => Cow::from(dispatch?.fault),
            "place" => Cow::from(dispatch?.place),
            "skill" => {
                let skill = dispatch?.skill;
                self.files
                    .get(&(language.to_owned(), "dispatch".to_owned()))
                    .and_then(|w| w.get(&format!("skill.{skill}")))
                    .map_or(Cow::from(skill), |w| Cow::from(w.as_str()))
            }
            _ => return None,
        })
    }
}

/// `key: value` lines; blank lines and `#` comments are skipped.
fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// SMS segments a body needs: GSM-7 bodies take 160 characters (153 per part when split),
/// anything else is UCS-2 with 70 (67). Returns (encoding, segments).
pub fn sms_segments(body: &str) -> (&'static str, usize) {
    let gsm: Option<usize> = body.chars().map(gsm7_units).sum();
    if let Some(units) = gsm {
        ("GSM-7", if units <= 160 { 1 } else { units.div_ceil(153) })
    } else {
        let units: usize = body.chars().map(char::len_utf16).sum();
        ("UCS-2", if units <= 70 { 1 } else { units.div_ceil(67) })
    }
}

/// GSM-7's basic character set; the extension table's characters are in [`GSM7_EXT`].
const GSM7: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// Characters GSM-7 sends as an escape and a second septet.
const GSM7_EXT: &str = "^{}\\[~]|€";

/// Septets `c` takes in GSM-7, or `None` if GSM-7 cannot carry it. Printable ASCII is decided
/// without searching the tables: a body is mostly ASCII, and a search per character made
/// counting a 160-character SMS a walk of some ten thousand comparisons.
fn gsm7_units(c: char) -> Option<usize> {
    match c {
        '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' => Some(2),
        '`' => None,
        ' '..='~' | '\n' | '\r' => Some(1),
        _ if GSM7.contains(c) => Some(1),
        _ if GSM7_EXT.contains(c) => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gsm7_fast_path_agrees_with_the_tables() {
        for c in (0..0x3000u32).filter_map(char::from_u32) {
            let expected = if GSM7_EXT.contains(c) {
                Some(2)
            } else if GSM7.contains(c) {
                Some(1)
            } else {
                None
            };
            assert_eq!(gsm7_units(c), expected, "{c:?}");
        }
    }

    #[test]
    fn fill_keeps_unknown_braces_and_does_not_fill_values_again() {
        let t = Templates::bundled();
        let mut c = ctx(None);
        c.name = "{since} {x";
        let text = t.fill("en", "Hi {name}, {unknown} {fault} { {since}", &c, true);
        assert_eq!(text, "Hi {since} {x, {unknown} {fault} { 23.11. 15:05");
    }

    use super::*;

    fn ctx(etr: Option<DateTime<Utc>>) -> Context<'static> {
        Context {
            name: "R. Krause",
            timezone: "Europe/Berlin".parse().unwrap(),
            since: "2026-11-23T14:05:00Z".parse().unwrap(),
            until: None,
            etr,
            cause: "tree_contact",
            dispatch: None,
        }
    }

    #[test]
    fn renders_in_the_customers_language_and_time_zone() {
        let t = Templates::bundled();
        let de = t
            .render(
                "de",
                "outage",
                &ctx(Some("2026-11-23T18:00:00Z".parse().unwrap())),
            )
            .unwrap();
        assert_eq!(de.language, "de");
        assert!(
            de.body.contains("15:05 CET") && de.body.contains("19:00 CET"),
            "{}",
            de.body
        );
        assert!(de.body.contains("ein Baum in der Leitung"));
        let zh = t.render("zh", "outage", &ctx(None)).unwrap();
        assert!(zh.body.contains("暂未确定"), "{}", zh.body);
        for lang in ["en", "de", "ru", "zh"] {
            for kind in [
                "outage",
                "restored",
                "etr_update",
                "etr_passed",
                "etr_withdrawn",
                "planned",
                "planned_cancelled",
            ] {
                let r = t.render(lang, kind, &ctx(None)).unwrap();
                assert!(
                    !r.body.contains('{'),
                    "{lang}/{kind} left a placeholder: {}",
                    r.body
                );
            }
        }
    }

    #[test]
    fn sms_wording_fits_one_segment_where_the_script_allows() {
        let t = Templates::bundled();
        let etr = Some("2026-11-23T18:00:00Z".parse().unwrap());
        for lang in ["en", "de", "ru", "zh"] {
            for kind in [
                "outage",
                "restored",
                "etr_update",
                "etr_passed",
                "etr_withdrawn",
                "planned",
                "planned_cancelled",
            ] {
                let r = t.render_sms(lang, kind, &ctx(etr)).unwrap();
                let (encoding, segments) = sms_segments(&r.body);
                assert!(!r.body.contains('{'), "{lang}/{kind}: {}", r.body);
                // GSM-7 languages fit one segment; UCS-2 (Cyrillic, Chinese) at most two.
                let limit = if matches!(lang, "en" | "de") { 1 } else { 2 };
                assert!(
                    segments <= limit,
                    "{lang}/{kind}: {encoding} × {segments}: {}",
                    r.body
                );
            }
        }
    }

    #[test]
    fn replies_exist_in_every_language() {
        let t = Templates::bundled();
        for lang in ["en", "de", "ru", "zh"] {
            for key in [
                "stop",
                "start",
                "status_out",
                "status_ok",
                "out_known",
                "out_recorded",
                "help",
                "unknown",
            ] {
                let text = t.reply(lang, key, Some(&ctx(None)));
                assert!(
                    !text.is_empty() && !text.contains('{'),
                    "{lang}/{key}: {text}"
                );
            }
        }
        assert!(t.reply("tr", "help", None).starts_with("Outage notices"));
    }

    #[test]
    fn unknown_languages_fall_back() {
        let t = Templates::bundled();
        assert_eq!(t.render("tr", "outage", &ctx(None)).unwrap().language, "en");
        assert_eq!(
            t.render("de-at", "restored", &ctx(None)).unwrap().language,
            "de"
        );
    }

    #[test]
    fn counts_sms_segments() {
        assert_eq!(sms_segments("Power is back."), ("GSM-7", 1));
        assert_eq!(sms_segments(&"a".repeat(161)), ("GSM-7", 2));
        assert_eq!(sms_segments("Strom wieder da – danke"), ("UCS-2", 1));
        assert_eq!(sms_segments(&"ж".repeat(71)), ("UCS-2", 2));
    }
}
