//! Logging. Contacts never reach a log line: the domain types mask themselves in `Debug`, and
//! code logs ids, counts and masked values only.

use tracing_subscriber::EnvFilter;

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
        builder.try_init()
    };
}

pub mod metrics;
