//! `faultline bench fanout`: one fault over N customers, notices out through local provider
//! stand-ins. Measures the time from the event's commit to the last notice accepted, the first
//! notice out, how long the commit itself took (members, episodes and notice rows), and peak RSS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::{Rng, SeedableRng};

use super::sinks::{self, CpuSplit, Tally, Written};
use crate::app::App;
use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::directory::CustomerRecord;
use crate::domain::{Channel, Coord, CustomerId, Email, Language, Phone, PushToken};
use crate::ingest::publish::event_topic;
use crate::notify::pause::ClaimPause;
use crate::store::NoticeIntent;
use crate::telemetry::metrics::OUTBOX_WRITE;

/// How the fan-out is run.
#[derive(Debug, Clone)]
pub struct FanoutArgs {
    pub customers: usize,
    pub mqtt_url: String,
    pub database_url: Option<String>,
    pub concurrency: usize,
    pub batch: usize,
    /// Push and SMS over HTTP/2 with this many connections; 0: HTTP/1.1.
    pub http2: u32,
}

/// Runs the benchmark and prints one summary line per measure.
pub async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let tally = Arc::new(Tally::default());
    let settings = settings(&args, &temp, &tally).await?;
    // Customers are in the database before the daemon starts, as in production: it loads them
    // once instead of picking up a million "new" customers on its next reload.
    let now = Utc::now();
    {
        let store = crate::store::Store::connect(settings.database.url.expose(), 2).await?;
        store.migrate().await?;
        let rows = customers(args.customers, 7);
        for chunk in rows.chunks(50_000) {
            store.upsert_customers(chunk, now).await?;
        }
        store.close().await;
    }
    let app = App::build(settings.clone(), Clock::System).await?;
    let store = app.store().clone();
    let claims = app.claim_pause();
    let mut changes = app.subscribe();
    let mut running = app.start()?;
    anyhow::ensure!(
        running.wait_subscribed(Duration::from_secs(10)).await,
        "not subscribed"
    );

    // Ten minutes ago, so the outage notices are due at once (past the momentary delay).
    let at =
        (now - chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = format!(
        r#"{{"v":1,"event_id":"fan-1","fault_id":"FAN-1","kind":"detected","occurred_at":"{at}","cause":"storm","devices":["BENCH-F1"]}}"#
    );
    let topic = event_topic(&settings.mqtt.topic, "bench", event.as_bytes());
    let written_before = OUTBOX_WRITE.sum();
    let published = Instant::now();
    crate::ingest::publish::publish_all(&settings.mqtt, vec![(topic, event.into_bytes())]).await?;
    changes.recv().await?;
    let committed = Instant::now();
    let cpu_at_commit = CpuSplit::now();
    let written_at_commit = Written::now(&store).await;
    let in_commit = OUTBOX_WRITE.sum() - written_before;
    let expected = args.customers as u64;
    while tally.count() < expected {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = Instant::now();
    let cpu = CpuSplit::now().since(cpu_at_commit);
    let (process_mb, wal_mb) = Written::now(&store).await.since_mb(written_at_commit);
    let first = tally.first.get().copied().unwrap_or(done);
    let rows_alone = outbox_write(&store, &claims, args.customers).await?;
    running.shutdown().await;

    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "fanout: {} customers on {} (concurrency {}, batch {}, {})",
        args.customers,
        store.backend(),
        args.concurrency,
        args.batch,
        match args.http2 {
            0 => "HTTP/1.1".to_owned(),
            n => format!("HTTP/2 over {n} connection(s)"),
        }
    );
    println!(
        "    event → commit (member, episode and notice rows): {:.2} s",
        secs(committed - published)
    );
    // The worker may beat the bench to the commit news, so the first notice is also timed
    // from the publish.
    println!(
        "    first notice accepted: {:.3} s after the commit, {:.3} s after the publish",
        secs(first.saturating_duration_since(committed)),
        secs(first - published)
    );
    println!(
        "    commit → last notice accepted: {:.1} s ({:.0} notices/s)",
        secs(done - committed),
        expected as f64 / secs(done - committed)
    );
    println!(
        "    CPU from commit to last notice: {:.1} s in all; provider stand-ins {:.1} s, \
         SQLite threads {:.1} s, delivery thread {:.1} s, the rest (daemon and bench) {:.1} s",
        cpu.total,
        cpu.sinks,
        cpu.sqlite,
        cpu.delivery,
        cpu.total - cpu.sinks - cpu.sqlite - cpu.delivery
    );
    // Counts of work that, unlike the times above, do not drift with a noisy machine: on
    // SQLite what the process wrote (WAL and database pages), on PostgreSQL the server's WAL.
    let per_notice = |mb: f64| mb * 1_048_576.0 / expected as f64;
    let (what, mb) = match wal_mb {
        Some(wal) => ("of PostgreSQL WAL", wal),
        None => ("by the process", process_mb),
    };
    println!(
        "    written from commit to last notice: {mb:.1} MB {what} ({:.0} bytes per notice)",
        per_notice(mb)
    );
    // On PostgreSQL these are staged rows (docs/NOTICES.md, "Staged notices").
    println!("    notice rows, within the commit: {in_commit:.2} s");
    println!(
        "    notice rows alone ({} more, one transaction, next to the fan-out's): {:.2} s",
        args.customers,
        secs(rows_alone)
    );
    println!("    peak RSS: {} MiB", peak_rss_kib().unwrap_or(0) / 1024);
    Ok(())
}

/// The outbox write of the commit on its own: `n` notices as ingest writes them (staged on
/// PostgreSQL), never due (so the worker leaves them alone), pausing the worker's claims as the
/// daemon's writers do.
async fn outbox_write(
    store: &crate::store::Store,
    claims: &ClaimPause,
    n: usize,
) -> anyhow::Result<Duration> {
    let intents: Vec<NoticeIntent> = (0..n)
        .map(|i| NoticeIntent {
            customer_id: format!("F{i:07}"),
            episode_started_at: 0,
            kind: "bench",
            variant: String::new(),
            fault_id: "FAN-ROWS".into(),
            priority: 9,
            due_at: i64::MAX / 2,
        })
        .collect();
    let batch = crate::store::BatchWrite {
        notices: intents,
        now: Utc::now().timestamp_millis(),
        ..Default::default()
    };
    let start = Instant::now();
    claims.around(n, store.commit_batch(&batch)).await?;
    Ok(start.elapsed())
}

/// Settings for the run: the stand-ins as providers, no rate limits.
async fn settings(
    args: &FanoutArgs,
    temp: &tempfile::TempDir,
    tally: &Arc<Tally>,
) -> anyhow::Result<Settings> {
    let mut s = super::run_settings("fanout", &args.mqtt_url, args.database_url.as_deref(), temp);
    s.notify.concurrency = args.concurrency;
    s.notify.batch_size = args.batch;
    let sinks = sinks::start(tally.clone())?;
    let http = sinks.http_url;
    s.channels.push.base_url = http.clone();
    s.channels.push.project_id = "bench".into();
    s.channels.push.token = Secret::new("bench-token");
    s.channels.sms.base_url = http;
    s.channels.sms.account_sid = "ACbench".into();
    s.channels.sms.auth_token = Secret::new("bench-token");
    s.channels.sms.from = "+4915000000000".into();
    s.channels.push.http2_connections = args.http2;
    s.channels.sms.http2_connections = args.http2;
    s.channels.email.host = "127.0.0.1".into();
    s.channels.email.port = sinks.smtp_port;
    s.channels.email.tls = "none".into();
    // lettre's SMTP client waits out the peer's delayed ACK once per message (≈40 ms on
    // Linux), so e-mail throughput is connections / 40 ms: give it one connection per send.
    s.channels.email.pool_size = args.concurrency as u32;
    s.channels.email.from = "Bench <bench@utility.example>".into();
    Ok(s)
}

/// Seeded customers on one feeder: 50 % push, 40 % SMS, 10 % e-mail; four languages.
pub(super) fn customers(n: usize, seed: u64) -> Vec<CustomerRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let languages: Vec<Language> = ["en", "de", "ru", "zh"]
        .iter()
        .filter_map(|l| Language::parse(l).ok())
        .collect();
    (0..n)
        .filter_map(|i| {
            let channel = match i % 10 {
                0..=4 => Channel::Push,
                5..=8 => Channel::Sms,
                _ => Channel::Email,
            };
            Some(CustomerRecord {
                id: CustomerId::parse(&format!("F{i:07}")).ok()?,
                name: format!("Customer {i}"),
                location: Coord {
                    lon: rng.random_range(11.0..12.0),
                    lat: rng.random_range(53.0..54.0),
                },
                phone: Phone::parse(&format!("+4915{i:09}")).ok(),
                email: Email::parse(&format!("f{i}@example.net")).ok(),
                push_token: PushToken::parse(&format!("token-{i:07}-{:016x}", rng.random::<u64>()))
                    .ok(),
                language: languages[i % languages.len()].clone(),
                channels: vec![channel],
                quiet_hours: None,
                timezone: chrono_tz::Europe::Berlin,
                critical: None,
                feeder: Some("BENCH-F1".into()),
                service_point: None,
            })
        })
        .collect()
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
