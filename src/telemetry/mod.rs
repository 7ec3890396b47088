//! Logging. Contacts never reach a log line: the domain types mask themselves in `Debug`, and
//! code logs ids, counts and masked values only. No value can forge a line of the text log:
//! [`EscapedFields`] escapes line breaks and other control characters in every field.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::EnvFilter;

use crate::domain::breaks_text;

pub mod metrics;

/// Installs the global subscriber: `RUST_LOG` wins over `log.filter`; `format` is text or json.
pub fn init(filter: &str, format: &str) {
    // rumqttd (the embedded broker) logs every connection at info; keep it to warnings unless
    // the filter says otherwise.
    let mut directives = filter.to_owned();
    for (target, level) in [("rumqttd", "warn"), ("sqlx", "warn")] {
        if !filter.contains(target) {
            directives.push_str(&format!(",{target}={level}"));
        }
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.fmt_fields(EscapedFields).try_init()
    };
}

/// The text log's field formatter: the message, then `name=value` pairs, as tracing-subscriber's
/// default writes them, but with every character that breaks text escaped (`\n`, `\r`,
/// `\u{0}`) in every value. The default writes messages and `%`-formatted values raw, so a
/// topic or an id holding a line break wrote a forged line. Escaping here, where every field of
/// every log call passes, needs no care at each call. JSON logs are escaped by JSON itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // As the default does: the message bare, other strings quoted.
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // `log.*` fields carry a `log` record's metadata, which the line shows already.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = self.write_field(separator, name, value);
    }
}

impl EscapingVisitor<'_> {
    fn write_field(&mut self, separator: &str, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        self.writer.write_str(separator)?;
        if name != "message" {
            write!(self.writer, "{}=", name.trim_start_matches("r#"))?;
        }
        write!(Escaping(&mut self.writer), "{value:?}")
    }
}

/// Writes through to the inner writer with every character that breaks text escaped.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| breaks_text(c)) {
            self.0.write_str(&rest[..at])?;
            for escaped in c.escape_default() {
                self.0.write_char(escaped)?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log destination the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_value_writes_a_line_of_its_own() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        let forged = "F-1\r\n2026-11-23T14:00:00Z  INFO faultline: forged\0\u{2028}x";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(reason = %forged, topic = forged, count = 3, "rejected {forged}");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let line = text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("one line: {text:?}"));
        assert!(!line.contains(['\r', '\n', '\0', '\u{2028}']), "{line:?}");
        assert!(
            line.contains(
                r"rejected F-1\r\n2026-11-23T14:00:00Z  INFO faultline: forged\u{0}\u{2028}x"
            ),
            "{line}"
        );
        assert!(line.contains(r"reason=F-1\r\n2026"), "{line}");
        assert!(line.contains(r#"topic="F-1\r\n2026"#), "{line}");
        assert!(line.ends_with(" count=3"), "{line}");
    }
}
