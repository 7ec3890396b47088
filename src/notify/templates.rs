//! Notice wording: one file per language and kind under `templates/`, the one place to edit it.
//! A language without templates falls back to its primary subtag (`de-AT` → `de`), then `en`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The bundled templates: (language, kind, file text).
const FILES: &[(&str, &str, &str)] = &[
    (
        "en",
        "outage",
        include_str!("../../templates/en/outage.txt"),
    ),
    (
        "en",
        "restored",
        include_str!("../../templates/en/restored.txt"),
    ),
    (
        "de",
        "outage",
        include_str!("../../templates/de/outage.txt"),
    ),
    (
        "de",
        "restored",
        include_str!("../../templates/de/restored.txt"),
    ),
    (
        "ru",
        "outage",
        include_str!("../../templates/ru/outage.txt"),
    ),
    (
        "ru",
        "restored",
        include_str!("../../templates/ru/restored.txt"),
    ),
    (
        "zh",
        "outage",
        include_str!("../../templates/zh/outage.txt"),
    ),
    (
        "zh",
        "restored",
        include_str!("../../templates/zh/restored.txt"),
    ),
];

/// What a template is filled with.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub name: &'a str,
    pub timezone: Tz,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
    pub etr: Option<DateTime<Utc>>,
    pub cause: &'a str,
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
            .map(|(lang, kind, text)| ((lang.to_string(), kind.to_string()), parse(text)))
            .collect();
        Self { files }
    }

    /// Renders `kind` for `language`, falling back as described above.
    pub fn render(&self, language: &str, kind: &str, ctx: &Context<'_>) -> Option<Rendered> {
        let primary = language.split('-').next().unwrap_or(language);
        let (language, file) = [language, primary, "en"].into_iter().find_map(|l| {
            self.files
                .get(&(l.to_owned(), kind.to_owned()))
                .map(|f| (l, f))
        })?;
        // Cause phrases and the unknown-ETR wording live in the language's outage file.
        let shared = self.files.get(&(language.to_owned(), "outage".to_owned()));
        let lookup = |key: &str| {
            file.get(key)
                .or_else(|| shared.and_then(|s| s.get(key)))
                .cloned()
        };
        let local = |t: DateTime<Utc>| {
            t.with_timezone(&ctx.timezone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string()
        };
        let cause = lookup(&format!("cause.{}", ctx.cause))
            .or_else(|| lookup("cause.unknown"))
            .unwrap_or_else(|| ctx.cause.to_owned());
        let etr = ctx
            .etr
            .map(local)
            .or_else(|| lookup("etr_unknown"))
            .unwrap_or_default();
        let fill = |text: String| {
            text.replace("{name}", ctx.name)
                .replace("{since}", &local(ctx.since))
                .replace("{until}", &ctx.until.map(local).unwrap_or_default())
                .replace("{etr}", &etr)
                .replace("{cause}", &cause)
        };
        Some(Rendered {
            language: language.to_owned(),
            title: fill(lookup("title")?),
            body: fill(lookup("body")?),
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
    const GSM7: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const GSM7_EXT: &str = "^{}\\[~]|€";
    let gsm = body
        .chars()
        .all(|c| GSM7.contains(c) || GSM7_EXT.contains(c));
    if gsm {
        let units: usize = body
            .chars()
            .map(|c| if GSM7_EXT.contains(c) { 2 } else { 1 })
            .sum();
        ("GSM-7", if units <= 160 { 1 } else { units.div_ceil(153) })
    } else {
        let units: usize = body.chars().map(char::len_utf16).sum();
        ("UCS-2", if units <= 70 { 1 } else { units.div_ceil(67) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(etr: Option<DateTime<Utc>>) -> Context<'static> {
        Context {
            name: "R. Krause",
            timezone: "Europe/Berlin".parse().unwrap(),
            since: "2026-11-23T14:05:00Z".parse().unwrap(),
            until: None,
            etr,
            cause: "tree_contact",
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
            for kind in ["outage", "restored"] {
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
