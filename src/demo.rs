//! `faultline demo`: the whole spine on embedded parts, with a scripted storm.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::app::{shutdown_signal, App};
use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::directory::{parse_customers, parse_staff};
use crate::ingest::publish::{event_topic, publish_all};
use crate::outage::{ChangeCause, OutageChange};
use crate::shared::SharedBook;

/// Options of `faultline demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the daemon running after the storm (until Ctrl-C).
    #[arg(long)]
    pub serve: bool,
    /// Keep the database here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The example events of the contract plus a few more, in the order the storm plays them.
/// Times are written for a storm starting 2026-11-23T14:00Z and shifted to start now.
const STORM: &[(&str, &str)] = &[
    (
        "F-1001 tree on a line",
        include_str!("../samples/events/detected-polygon.json"),
    ),
    (
        "F-1002 transformer fire",
        include_str!("../samples/events/detected-radius.json"),
    ),
    (
        "F-1003 animal on feeder LV3.201",
        include_str!("../samples/events/detected-devices.json"),
    ),
    (
        "F-1004 storm damage overlapping F-1001",
        r#"{"v":1,"event_id":"evt-demo-1","fault_id":"F-1004","kind":"detected","seq":1,"occurred_at":"2026-11-23T14:12:00Z","cause":"storm","severity":"major","area":{"type":"Polygon","coordinates":[[[11.815,53.410],[11.835,53.410],[11.835,53.425],[11.815,53.425],[11.815,53.410]]]},"etr":"2026-11-23T19:00:00Z"}"#,
    ),
    (
        "F-1005 recloser trips on LV3.218",
        r#"{"v":1,"event_id":"evt-demo-2","fault_id":"F-1005","kind":"detected","seq":1,"occurred_at":"2026-11-23T14:15:00Z","cause":"overload","severity":"minor","devices":["LV3.218"]}"#,
    ),
    (
        "F-1005 recloser closes again",
        r#"{"v":1,"event_id":"evt-demo-3","fault_id":"F-1005","kind":"restored","seq":2,"occurred_at":"2026-11-23T14:17:00Z"}"#,
    ),
    (
        "a payload with no area",
        include_str!("../samples/events/bad-no-area.json"),
    ),
    (
        "a payload with an unknown kind",
        include_str!("../samples/events/bad-kind.json"),
    ),
    (
        "a payload with a bad time and an open ring",
        include_str!("../samples/events/bad-time-and-ring.json"),
    ),
    (
        "a payload with coordinates off the globe",
        include_str!("../samples/events/bad-coordinates.json"),
    ),
    (
        "a truncated payload",
        include_str!("../samples/events/bad-truncated.json"),
    ),
    (
        "F-1002 ETR set",
        r#"{"v":1,"event_id":"evt-demo-4","fault_id":"F-1002","kind":"updated","seq":2,"occurred_at":"2026-11-23T14:30:00Z","etr":"2026-11-23T17:30:00Z"}"#,
    ),
    (
        "F-1001 repeated by the OMS (same event_id)",
        include_str!("../samples/events/detected-polygon.json"),
    ),
    (
        "F-1001 shrinks as crews isolate the section",
        include_str!("../samples/events/updated-shrink.json"),
    ),
    (
        "F-1001 late, stale update (seq 1)",
        r#"{"v":1,"event_id":"evt-demo-5","fault_id":"F-1001","kind":"updated","seq":1,"occurred_at":"2026-11-23T14:40:00Z","etr":"2026-11-23T23:00:00Z"}"#,
    ),
    (
        "P-2001 maintenance announced",
        include_str!("../samples/events/planned.json"),
    ),
    (
        "F-1001 restored",
        include_str!("../samples/events/restored.json"),
    ),
    (
        "F-1004 restored",
        r#"{"v":1,"event_id":"evt-demo-6","fault_id":"F-1004","kind":"restored","seq":2,"occurred_at":"2026-11-23T17:10:00Z"}"#,
    ),
];

const TIME_FIELDS: [&str; 4] = ["occurred_at", "etr", "starts_at", "ends_at"];

/// Runs the demo.
pub async fn run(args: DemoArgs, mut settings: Settings) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    settings.database.url = Secret::new(format!(
        "sqlite://{}",
        dir.join("faultline-demo.db").display()
    ));
    settings.mqtt.embedded = true;
    settings.mqtt.client_id = "faultline-demo".into();
    settings.status.min_interval_ms = 200;
    if std::net::TcpListener::bind(&settings.api.bind).is_err() {
        // Another program has the port: any free one will do for a demo.
        settings.api.bind = "127.0.0.1:0".into();
    }

    println!(
        "faultline demo: embedded MQTT broker, SQLite in {}",
        dir.display()
    );
    let app = App::build(settings, Clock::System).await?;
    let settings = app.settings().clone();
    import_samples(&app).await?;
    let printer = tokio::spawn(print_changes(app.subscribe(), app.book()));
    let store = app.store().clone();
    let mut running = app.start()?;
    if !running.wait_subscribed(Duration::from_secs(10)).await {
        anyhow::bail!("the daemon did not subscribe to the embedded broker");
    }
    println!(
        "broker {} · subscribed to {}\n",
        settings.mqtt.url, settings.mqtt.topic
    );

    let before: i64 = store.event_counts().await?.iter().map(|(_, n)| n).sum();
    // The storm's last event happens now: by then the momentary delay has passed for the
    // earlier outages, as it would have in real time.
    let shift = Utc::now() - "2026-11-23T17:10:00Z".parse::<DateTime<Utc>>()?;
    for (what, raw) in STORM {
        println!("  → publishing: {what}");
        let payload = shift_times(raw, shift);
        publish_all(
            &settings.mqtt,
            vec![(
                event_topic(&settings.mqtt.topic, "schwerin", &payload),
                payload,
            )],
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    wait_for_events(&store, before + STORM.len() as i64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    summary(&store, &running.book).await?;
    let worker = deliver(&settings, &dir, &running).await?;
    if args.serve {
        let key = crate::api::auth::create_key(
            &store,
            "demo viewer",
            crate::api::auth::Role::Viewer,
            Utc::now().timestamp_millis(),
        )
        .await?;
        println!(
            "\nserving on {} until Ctrl-C; new notices go to {} …",
            settings.mqtt.url,
            dir.join("notices.jsonl").display()
        );
        println!(
            "console: http://{}/#key={}\nviewer API key: {}",
            running.api_addr, key.key, key.key
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let delivery = worker.map(|w| tokio::spawn(w.run(stop.clone())));
        running.run_until(shutdown_signal()).await;
        stop.cancel();
        if let Some(task) = delivery {
            let _ = task.await;
        }
    } else {
        running.shutdown().await;
    }
    printer.abort();
    Ok(())
}

async fn import_samples(app: &App) -> anyhow::Result<()> {
    let customers =
        parse_customers(include_str!("../samples/customers.csv")).map_err(anyhow::Error::msg)?;
    let staff = parse_staff(include_str!("../samples/staff.csv")).map_err(anyhow::Error::msg)?;
    app.store()
        .upsert_customers(&customers.rows, Utc::now())
        .await?;
    app.store().upsert_staff(&staff.rows, Utc::now()).await?;
    // Take the customers into the index now rather than at the next reload tick.
    let (mapped, _) = app.store().mapped_customers_since(0).await?;
    app.book().write().remap(mapped, Utc::now());
    println!(
        "imported {} customers and {} staff (sample grid near Schwerin)",
        customers.rows.len(),
        staff.rows.len()
    );
    Ok(())
}

/// Sends the outbox through the log channel and shows what went out. Delivery waits until the
/// storm is over because the demo plays hours of grid time in seconds: running it during the
/// storm would send the outage notice of the momentary trip before its restoration arrives.
/// For the same reason it looks at the outbox as it will be once the momentary window has
/// passed: the daemon counts that window from when it learned of each outage, which for the
/// storm's replayed events was a moment ago.
async fn deliver(
    settings: &Settings,
    dir: &std::path::Path,
    running: &crate::app::Running,
) -> anyhow::Result<Option<crate::notify::worker::DeliveryWorker>> {
    let log = dir.join("notices.jsonl");
    let mut settings = settings.clone();
    settings.channels.log.path = log.display().to_string();
    let after_the_window =
        Clock::Ahead(chrono::Duration::from_std(settings.momentary_delay()).unwrap_or_default());
    let Some(worker) = crate::app::delivery_worker(
        &settings,
        &running.store,
        &running.book,
        &after_the_window,
        Default::default(),
        Default::default(),
    )?
    else {
        return Ok(None);
    };
    while worker.step().await? > 0 {}
    println!("\nnotices sent (log channel, {}):", log.display());
    for (channel, language, n) in running.store.sent_summary().await? {
        println!("    {channel:<6} {language:<3} {n:>5}");
    }
    let segments: Vec<String> = running
        .store
        .sms_segment_summary()
        .await?
        .into_iter()
        .map(|(segments, n)| format!("{n} × {segments}"))
        .collect();
    println!(
        "    SMS segments (notices × segments): {}",
        segments.join(", ")
    );
    for kind in ["outage", "restored"] {
        let suppressed = running
            .store
            .count_notices(None, kind, "suppressed")
            .await?;
        let unreachable = running
            .store
            .count_notices(None, kind, "unreachable")
            .await?;
        let waiting = running.store.count_notices(None, kind, "queued").await?;
        println!(
            "    {kind}: {suppressed} suppressed (opted out, momentary or superseded), {unreachable} unreachable, \
             {waiting} waiting for the end of quiet hours"
        );
    }
    let text = tokio::fs::read_to_string(&log).await.unwrap_or_default();
    println!("samples (contacts masked):");
    for lang in ["de", "en", "ru", "zh"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("\"language\":\"{lang}\"")));
        if let Some(line) = line {
            println!("    {line}");
        }
    }
    Ok(Some(worker))
}

/// Moves every time in an event by `shift`, keeping the storm's rhythm but making it current.
fn shift_times(raw: &str, shift: chrono::Duration) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_str::<Value>(raw) else {
        return raw.as_bytes().to_vec(); // the bad examples go out untouched
    };
    for field in TIME_FIELDS {
        let shifted = value
            .get(field)
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                (t.with_timezone(&Utc) + shift).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            });
        if let Some(t) = shifted {
            value[field] = Value::String(t);
        }
    }
    value.to_string().into_bytes()
}

async fn wait_for_events(store: &crate::store::Store, expected: i64) {
    for _ in 0..100 {
        let seen: i64 = store
            .event_counts()
            .await
            .map(|c| c.iter().map(|(_, n)| n).sum())
            .unwrap_or(0);
        if seen >= expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("(not every event was processed within 10 s)");
}

async fn print_changes(
    mut changes: tokio::sync::broadcast::Receiver<Arc<OutageChange>>,
    book: SharedBook,
) {
    while let Ok(c) = changes.recv().await {
        let cause = match c.cause {
            ChangeCause::Event(kind) => kind.as_str(),
            ChangeCause::PlannedStart => "planned start",
            ChangeCause::Remapped => "remapped",
        };
        let (total_out, critical) = {
            let b = book.read();
            (
                b.customers_out(),
                b.fault(&c.fault_id).map_or(0, |f| f.critical_affected),
            )
        };
        let mut line = format!(
            "    {:<7} {:<10} {:<9}",
            c.fault_id,
            cause,
            c.state.as_str()
        );
        if !c.joined.is_empty() {
            line += &format!(" +{} {}", c.joined.len(), c.joined_state.as_str());
            if critical > 0 {
                line += &format!(" ({critical} critical)");
            }
        }
        if !c.left.is_empty() {
            line += &format!(" −{} {}", c.left.len(), c.left_state.as_str());
        }
        if !c.now_back.is_empty() {
            line += &format!(", {} back on", c.now_back.len());
        }
        if c.momentary {
            line += ", momentary (no outage notice)";
        }
        if c.etr_changed {
            line += if c.joined.is_empty() && c.left.is_empty() {
                " ETR changed"
            } else {
                ", ETR changed"
            };
        }
        println!("{line} · customers out: {total_out}");
    }
}

async fn summary(store: &crate::store::Store, book: &SharedBook) -> anyhow::Result<()> {
    println!("\nevents by outcome:");
    for (status, n) in store.event_counts().await? {
        println!("    {status:<10} {n}");
    }
    println!("rejected (also on the dead-letter topic):");
    for e in store
        .list_events(Some(crate::store::EventStatus::Rejected), 10)
        .await?
    {
        println!(
            "    {:<10} {}",
            e.event_id.unwrap_or_else(|| "?".into()),
            e.reason.unwrap_or_default()
        );
    }
    let b = book.read();
    let mut faults: Vec<_> = b.faults().collect();
    faults.sort_by(|a, b| a.id.cmp(&b.id));
    println!("faults:");
    for f in faults {
        println!(
            "    {:<7} {:<9} {:<18} {:<8} members {:>4}, restored {:>4}{}",
            f.id,
            f.state.as_str(),
            f.cause,
            f.severity.as_str(),
            f.affected.len(),
            f.restored_count,
            if f.momentary { ", momentary" } else { "" }
        );
    }
    println!("customers out now: {}", b.customers_out());
    Ok(())
}
