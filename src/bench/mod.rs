//! `faultline bench`: measurements behind docs/PERFORMANCE.md. Seeded, so runs are comparable.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Subcommand;
use geo::{Contains, Coord as GeoCoord, LineString, Point, Polygon};
use rand::{Rng, SeedableRng};

use crate::app::App;
use crate::clock::Clock;
use crate::config::{Secret, Settings};
use crate::domain::{Coord, CustomerId};
use crate::ingest::publish::event_topic;
use crate::mapping::{AreaShape, CustomerIndex, MappedCustomer, PreparedArea};

mod api;
mod fanout;
mod sinks;
pub mod staffing;

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Area → affected customer ids over a synthetic region.
    Mapping {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        #[arg(long, default_value_t = 21)]
        runs: usize,
        /// Also write points.csv and areas.wkt here, for scripts/bench-postgis.sh.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Events per second from the broker to committed state.
    Ingest {
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// What each fault takes out: `service-point` (a few customers, the common OMS event)
        /// or `feeder` (a whole low-voltage grid, ≈118 customers).
        #[arg(long, default_value = "service-point")]
        scope: String,
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        mqtt_url: String,
        /// Database URL; a temporary SQLite file when omitted.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// One fault over many customers: notices out through local push, SMS and SMTP stand-ins.
    Fanout {
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        mqtt_url: String,
        /// Database URL; a temporary SQLite file when omitted.
        #[arg(long)]
        database_url: Option<String>,
        /// Sends in flight at once (notify.concurrency).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Notices claimed per step (notify.batch_size).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        /// Push and SMS over HTTP/2 with this many connections (their http2_connections);
        /// 0: HTTP/1.1.
        #[arg(long, default_value_t = 0)]
        http2: u32,
    },
    /// The HTTP API in a storm: fault list and self-service lookups under wrk, the console's
    /// first render in headless Chromium.
    Api(api::ApiArgs),
    /// Crew assignment: the sparse exact solver against dense Hungarian and greedy.
    Staffing {
        #[arg(long, default_value_t = 5000)]
        staff: usize,
        #[arg(long, default_value_t = 2000)]
        slots: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also run the dense Hungarian algorithm on the full instance (slow by design).
        #[arg(long)]
        hungarian: bool,
    },
}

pub async fn run(what: BenchWhat) -> anyhow::Result<()> {
    match what {
        BenchWhat::Mapping {
            customers,
            runs,
            export,
        } => mapping(customers, runs, export),
        BenchWhat::Ingest {
            events,
            scope,
            mqtt_url,
            database_url,
        } => ingest(events, &scope, mqtt_url, database_url).await,
        BenchWhat::Fanout {
            customers,
            mqtt_url,
            database_url,
            concurrency,
            batch,
            http2,
        } => {
            fanout::fanout(fanout::FanoutArgs {
                customers,
                mqtt_url,
                database_url,
                concurrency,
                batch,
                http2,
            })
            .await
        }
        BenchWhat::Api(args) => api::api(args).await,
        BenchWhat::Staffing {
            staff,
            slots,
            seed,
            hungarian,
        } => {
            staffing::staffing(&staffing::StaffingArgs {
                staff,
                slots,
                seed,
                hungarian,
            });
            Ok(())
        }
    }
}

/// The synthetic region: one degree square over northern Germany.
const REGION: [f64; 4] = [11.0, 53.0, 12.0, 54.0];

/// Seeded uniform customers over [`REGION`].
pub fn synthetic_customers(n: usize, seed: u64) -> Vec<MappedCustomer> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| MappedCustomer {
            id: CustomerId::parse(&format!("B{i:07}"))
                .unwrap_or_else(|_| unreachable!("ids are short")),
            at: Coord {
                lon: rng.random_range(REGION[0]..REGION[2]),
                lat: rng.random_range(REGION[1]..REGION[3]),
            },
            feeder: None,
            service_point: None,
            critical: false,
        })
        .collect()
}

/// A wobbly closed ring of `vertices` points around the region's centre covering about 5 % of it.
pub fn wobbly_polygon(vertices: usize, seed: u64) -> Vec<[f64; 2]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (cx, cy) = ((REGION[0] + REGION[2]) / 2.0, (REGION[1] + REGION[3]) / 2.0);
    // π r² = 0.05 deg²; the wobble averages out.
    let r = (0.05 / std::f64::consts::PI).sqrt();
    let mut ring: Vec<[f64; 2]> = (0..vertices)
        .map(|i| {
            let a = i as f64 / vertices as f64 * std::f64::consts::TAU;
            let k = r * (1.0 + 0.12 * (7.0 * a).sin() + rng.random_range(-0.02..0.02));
            [cx + k * a.cos(), cy + k * a.sin()]
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = None;
    let samples = (0..runs)
        .map(|_| {
            let t = Instant::now();
            out = Some(f());
            t.elapsed()
        })
        .collect();
    (
        median(samples),
        out.unwrap_or_else(|| unreachable!("runs ≥ 1")),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mapping(n: usize, runs: usize, export: Option<PathBuf>) -> anyhow::Result<()> {
    let runs = runs.max(1);
    let customers = synthetic_customers(n, 42);
    // Time the build alone: each run gets its own copy of the input, made outside the clock.
    let mut builds = Vec::new();
    let mut index = CustomerIndex::default();
    for _ in 0..3 {
        let input = customers.clone();
        let t = Instant::now();
        let built = CustomerIndex::build(input);
        builds.push(t.elapsed());
        index = built; // the previous index is dropped outside the clock
    }
    let points: Vec<rstar::primitives::GeomWithData<[f64; 2], u32>> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| rstar::primitives::GeomWithData::new([c.at.lon, c.at.lat], i as u32))
        .collect();
    let (tree_only, _) = time(3, || rstar::RTree::bulk_load(points.clone()));
    println!(
        "customers: {n}; index build (median of 3): {} (of which R-tree bulk load: {})",
        ms(median(builds)),
        ms(tree_only)
    );
    let cases: Vec<(String, AreaShape)> = [16usize, 256, 4096]
        .iter()
        .map(|&v| {
            (
                format!("polygon {v} vertices"),
                AreaShape::Polygons(vec![vec![wobbly_polygon(v, v as u64)]]),
            )
        })
        .chain(std::iter::once((
            "circle 2 km".to_owned(),
            AreaShape::Circle {
                center: Coord {
                    lon: 11.5,
                    lat: 53.5,
                },
                radius_m: 2000.0,
            },
        )))
        .collect();
    println!(
        "{:<22} {:>9} {:>14} {:>16} {:>16}",
        "case", "affected", "faultline", "naive ray cast", "geo::Contains"
    );
    for (name, shape) in &cases {
        let (ours, affected) = time(runs, || {
            index.affected(Some(&PreparedArea::new(shape)), &[])
        });
        let (naive, geo_contains) = match shape {
            AreaShape::Polygons(p) => {
                let ring = &p[0][0];
                let prepared = PreparedArea::new(shape);
                let naive = time(runs.min(5), || {
                    naive_candidates(&index, &prepared, |x, y| match &prepared {
                        PreparedArea::Polygons(pp) => pp.contains_naive(x, y),
                        _ => false,
                    })
                });
                let polygon = Polygon::new(
                    LineString::from(
                        ring.iter()
                            .map(|c| GeoCoord { x: c[0], y: c[1] })
                            .collect::<Vec<_>>(),
                    ),
                    vec![],
                );
                let geo = time(runs.min(5), || {
                    naive_candidates(&index, &prepared, |x, y| {
                        polygon.contains(&Point::new(x, y))
                    })
                });
                assert_eq!(naive.1, affected.len(), "naive and prepared must agree");
                (ms(naive.0), ms(geo.0))
            }
            AreaShape::Circle { .. } => ("-".into(), "-".into()),
        };
        println!(
            "{name:<22} {:>9} {:>14} {:>16} {:>16}",
            affected.len(),
            ms(ours),
            naive,
            geo_contains
        );
    }
    if let Some(dir) = export {
        export_for_postgis(&dir, &customers, &cases)?;
        println!("exported points.csv and areas.wkt to {}", dir.display());
    }
    Ok(())
}

/// The same R-tree candidates, decided by `test`: the loop a user would write first.
fn naive_candidates(
    index: &CustomerIndex,
    area: &PreparedArea,
    test: impl Fn(f64, f64) -> bool,
) -> usize {
    let [x0, y0, x1, y1] = area.envelope();
    (0..index.len() as u32)
        .map(|i| index.get(i).at)
        .filter(|c| c.lon >= x0 && c.lon <= x1 && c.lat >= y0 && c.lat <= y1)
        .filter(|c| test(c.lon, c.lat))
        .count()
}

fn export_for_postgis(
    dir: &std::path::Path,
    customers: &[MappedCustomer],
    cases: &[(String, AreaShape)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut points = std::io::BufWriter::new(std::fs::File::create(dir.join("points.csv"))?);
    for c in customers {
        writeln!(points, "{},{},{}", c.id, c.at.lon, c.at.lat)?;
    }
    let mut areas = std::io::BufWriter::new(std::fs::File::create(dir.join("areas.wkt"))?);
    for (name, shape) in cases {
        match shape {
            AreaShape::Polygons(p) => {
                let coords: Vec<String> = p[0][0]
                    .iter()
                    .map(|c| format!("{} {}", c[0], c[1]))
                    .collect();
                writeln!(areas, "{name}\tpolygon\tPOLYGON(({}))", coords.join(","))?;
            }
            AreaShape::Circle { center, radius_m } => {
                writeln!(
                    areas,
                    "{name}\tcircle\tPOINT({} {})\t{radius_m}",
                    center.lon, center.lat
                )?;
            }
        }
    }
    Ok(())
}

/// Settings for one bench run: its own topics and client id on `mqtt_url`, the given database
/// or a SQLite file `name.db` in `temp`, the API on a free port.
fn run_settings(
    name: &str,
    mqtt_url: &str,
    database_url: Option<&str>,
    temp: &tempfile::TempDir,
) -> Settings {
    let mut s = Settings::defaults();
    let prefix = format!("{name}{}", rand::random::<u32>());
    s.database.url = Secret::new(database_url.map_or_else(
        || {
            format!(
                "sqlite://{}",
                temp.path().join(format!("{name}.db")).display()
            )
        },
        str::to_owned,
    ));
    s.mqtt.url = mqtt_url.to_owned();
    s.mqtt.client_id = prefix.clone();
    s.mqtt.topic = format!("{prefix}/faultline/v1/events/#");
    s.mqtt.status_topic = format!("{prefix}/faultline/v1/status");
    s.mqtt.deadletter_topic = format!("{prefix}/faultline/v1/deadletter");
    s.api.bind = "127.0.0.1:0".into();
    s
}

async fn ingest(
    events: usize,
    scope: &str,
    mqtt_url: String,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let settings = run_settings("bench", &mqtt_url, database_url.as_deref(), &temp);
    let app = App::build(settings.clone(), Clock::System).await?;
    let customers = crate::directory::parse_customers(include_str!("../../samples/customers.csv"))
        .map_err(anyhow::Error::msg)?;
    app.store()
        .upsert_customers(&customers.rows, Utc::now())
        .await?;
    let (mapped, _) = app.store().mapped_customers_since(0).await?;
    app.book().write().remap(mapped, Utc::now());
    let store = app.store().clone();
    let mut running = app.start()?;
    anyhow::ensure!(
        running.wait_subscribed(Duration::from_secs(10)).await,
        "not subscribed"
    );
    // Each fault: detected on one device, then restored.
    let devices: Vec<String> = match scope {
        "feeder" => (211..=218).map(|i| format!("LV3.{i}")).collect(),
        "service-point" => {
            let mut points: Vec<String> = customers
                .rows
                .iter()
                .filter_map(|c| c.service_point.clone())
                .collect();
            points.sort();
            points.dedup();
            points
        }
        other => anyhow::bail!("--scope must be service-point or feeder, not {other}"),
    };
    let on_device = |d: &String| {
        let rows = customers.rows.iter();
        rows.filter(|c| c.feeder.as_ref() == Some(d) || c.service_point.as_ref() == Some(d))
            .count()
    };
    let per_fault = devices.iter().map(on_device).sum::<usize>() as f64 / devices.len() as f64;
    let messages: Vec<(String, Vec<u8>)> = (0..events)
        .map(|i| {
            let (fault, detected) = (i / 2, i % 2 == 0);
            let payload = if detected {
                format!(r#"{{"v":1,"event_id":"b-{i}","fault_id":"B-{fault}","kind":"detected","seq":1,"occurred_at":"2026-11-23T14:00:00Z","devices":["{}"]}}"#, devices[fault % devices.len()])
            } else {
                format!(r#"{{"v":1,"event_id":"b-{i}","fault_id":"B-{fault}","kind":"restored","seq":2,"occurred_at":"2026-11-23T15:00:00Z"}}"#)
            };
            (event_topic(&settings.mqtt.topic, "bench", payload.as_bytes()), payload.into_bytes())
        })
        .collect();
    // One publisher connection for the whole run, driven by its own task, like an OMS would.
    let opts = crate::ingest::mqtt::options(
        &settings.mqtt,
        &format!("{}-pub", settings.mqtt.client_id),
        false,
    )?;
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 1024);
    let driver = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let start = Instant::now();
    // Keep at most two windows ahead of the daemon: Mosquitto drops QoS 1 messages beyond
    // max_queued_messages (1000 by default), and a benchmark that loses events measures nothing.
    // Progress is read from the newest event row id, an index lookup, so the bench does not
    // steal the daemon's CPU with counting.
    const WINDOW: usize = 200;
    let mut sent = 0;
    for chunk in messages.chunks(WINDOW) {
        while sent > WINDOW && store.newest_event_row().await? + (WINDOW as i64) < sent as i64 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for (topic, payload) in chunk {
            client
                .publish(
                    topic.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await?;
        }
        sent += chunk.len();
    }
    while (store.newest_event_row().await? as usize) < events {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Row ids can skip on PostgreSQL (a rolled-back insert still uses its sequence values):
    // the exact count decides.
    while (committed(&store).await? as usize) < events {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    println!(
        "ingest: {events} events ({} backend, {scope} faults, ≈{per_fault:.0} customers each) committed in {:.2} s: {:.0} events/s",
        store.backend(),
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    let _ = client.disconnect().await;
    driver.abort();
    running.shutdown().await;
    Ok(())
}

async fn committed(store: &crate::store::Store) -> anyhow::Result<i64> {
    Ok(store.event_counts().await?.iter().map(|(_, n)| n).sum())
}
