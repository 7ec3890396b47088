//! `faultline bench api`: the HTTP API during a storm — 1,000,000 customers and 500 open
//! faults. The fault list and self-service lookups are loaded with `wrk` (a separate process,
//! as a user would measure them), the console's first render with headless Chromium.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rand::{Rng, SeedableRng};

use crate::app::App;
use crate::clock::Clock;

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 500)]
    pub faults: usize,
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub mqtt_url: String,
    /// Database URL; a temporary SQLite file when omitted.
    #[arg(long)]
    pub database_url: Option<String>,
    /// How long wrk loads each endpoint.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// wrk's connections (the fault list is also loaded with an eighth of them).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// Also measure the console's first render (Chromium, tests/e2e's npm install).
    #[arg(long)]
    pub console: bool,
}

pub async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let mut s = super::run_settings(
        "apibench",
        &args.mqtt_url,
        args.database_url.as_deref(),
        &temp,
    );
    // The load generator is one client address; the per-client limit would measure itself.
    s.api.public_rate_per_sec = 1e9;
    s.api.public_burst = 1e9;
    {
        let store = crate::store::Store::connect(s.database.url.expose(), 2).await?;
        store.migrate().await?;
        for chunk in super::fanout::customers(args.customers, 7).chunks(50_000) {
            store.upsert_customers(chunk, Utc::now()).await?;
        }
        store.close().await;
    }
    let app = App::build(s.clone(), Clock::System).await?;
    let store = app.store().clone();
    let mut running = app.start()?;
    anyhow::ensure!(
        running.wait_subscribed(Duration::from_secs(10)).await,
        "not subscribed"
    );

    let (events, inside) = storm(args.faults, &s.mqtt.topic);
    let started = Instant::now();
    crate::ingest::publish::publish_all(&s.mqtt, events).await?;
    while running.book.read().faults().count() < args.faults {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the storm did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = running.book.read().customers_out();
    let key =
        crate::api::auth::create_key(&store, "bench", crate::api::auth::Role::Viewer, 0).await?;
    let tokens = crate::api::selfservice::TokenKey::load(&store).await?;
    let base = format!("http://{}", running.api_addr);
    println!(
        "api: {} customers, {} open faults ({} customers out) on {}; wrk -t2, {} s a load",
        args.customers,
        args.faults,
        out,
        store.backend(),
        args.seconds
    );
    let auth = format!("Authorization: Bearer {}", key.key);
    let customer = "F0000001";
    let (c, few) = (args.connections, (args.connections / 8).max(1));
    let faults = format!("{base}/api/v1/faults");
    let by_place = format!("{base}/status?lon={}&lat={}", inside.0, inside.1);
    let by_token = format!(
        "{base}/status?customer_id={customer}&token={}",
        tokens.token(customer)
    );
    let loads = [
        ("fault list", faults.clone(), Some(auth.as_str()), few),
        ("fault list", faults, Some(auth.as_str()), c),
        ("self-service by location", by_place, None, c),
        ("self-service by customer and token", by_token, None, c),
    ];
    for (what, url, header, connections) in loads {
        let r = wrk(&url, header, args.seconds, connections)?;
        println!(
            "    {what}, {connections} connections: {:.0} req/s, p50 {}, p99 {}",
            r.rps, r.p50, r.p99
        );
    }
    if args.console {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/first-render.mjs");
        let out = std::process::Command::new("node")
            .args([script, &base, &key.key, &args.faults.to_string()])
            .output()
            .context("node (and tests/e2e's npm install) for the console measure")?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "    console first render (5 loads): {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    running.shutdown().await;
    Ok(())
}

/// Circles of 500 m at seeded places of the synthetic region, detected ten minutes ago; and a
/// point inside the first one.
/// (topic, payload) messages to publish.
type Messages = Vec<(String, Vec<u8>)>;

fn storm(n: usize, filter: &str) -> (Messages, (f64, f64)) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let at = (Utc::now() - chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut first = (0.0, 0.0);
    let events = (0..n)
        .map(|i| {
            let (lon, lat) = (rng.random_range(11.05..11.95), rng.random_range(53.05..53.95));
            if i == 0 {
                first = (lon, lat);
            }
            let severity = ["minor", "major", "critical"][i % 3];
            let payload = format!(
                r#"{{"v":1,"event_id":"api-{i}","fault_id":"API-{i}","kind":"detected","seq":1,"occurred_at":"{at}","cause":"storm","severity":"{severity}","area":{{"type":"Point","coordinates":[{lon:.5},{lat:.5}]}},"radius_m":500,"etr":"2099-01-01T00:00:00Z"}}"#
            );
            let topic = crate::ingest::publish::event_topic(filter, "bench", payload.as_bytes());
            (topic, payload.into_bytes())
        })
        .collect();
    (events, first)
}

struct WrkResult {
    rps: f64,
    p50: String,
    p99: String,
}

/// Runs wrk with latency percentiles and reads its report.
fn wrk(url: &str, header: Option<&str>, secs: u64, connections: u32) -> anyhow::Result<WrkResult> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{secs}s"),
        "--latency",
    ]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("wrk (apt-get install wrk) loads the API")?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw errors:\n{text}");
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    };
    Ok(WrkResult {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
    })
}
