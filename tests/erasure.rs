//! Erasure of a customer (docs/DATA.md, "Erasure") on both databases: over the API on a running
//! daemon, with a notice in flight, and from the command line. Once erased, nothing of the
//! customer's name or contacts is in any column of any table, and once the erasure completes
//! not their id either. The tables and columns scanned are the database's own list, so a table
//! added later is scanned too. Counts and fault history stay.

mod common;

use std::collections::HashMap;

use common::api::{ApiClient, ROLES};
use common::*;
use faultline::api::auth::create_key;
use faultline::app::Running;
use faultline::clock::Clock;
use faultline::config::Settings;
use faultline::domain::CustomerId;
use faultline::store::{Erasure, NoticeIntent, NoticeOutcome, Store};
use serde_json::{json, Value};

const ID: &str = "cust-7731-erika";
const OTHER: &str = "cust-7732-max";
const HEADER: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n";
const ERIKA_ROW: &str = "cust-7731-erika,Erika Mustermann,11.80,53.40,+4915100000031,erika.mustermann@example.net,fcm-token-erika-31,en,email|sms,,Europe/Berlin,,TS-1,TS-1 Bus 1\n";
const MAX_ROW: &str = "cust-7732-max,Max Beispiel,11.80,53.40,+4915100000032,max.beispiel@example.net,,en,email,,Europe/Berlin,,TS-1,TS-1 Bus 2\n";
/// Someone else, imported later under the erased customer's id.
const JONAS_ROW: &str = "cust-7731-erika,Jonas Neumann,11.80,53.40,,jonas.neumann@example.net,,en,email,,Europe/Berlin,,TS-1,TS-1 Bus 3\n";

/// What must not survive the erasure of Erika: name, phone, e-mail address, push token.
const PERSONAL: [&str; 4] = [
    "Mustermann",
    "4915100000031",
    "erika.mustermann@example.net",
    "fcm-token-erika-31",
];

fn customers() -> String {
    format!("{HEADER}{ERIKA_ROW}{MAX_ROW}")
}

/// Every non-null value of every column of every table (views left out), as text, with its
/// `table.column`. SQLite's catalogue and PostgreSQL's information schema name the tables, so
/// whatever a later migration adds is scanned as well.
async fn every_value(store: &Store) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match store {
        Store::Sqlite(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for table in tables {
                let columns: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                for column in columns {
                    // Every column, whatever its declared type: SQLite stores text anywhere.
                    let sql = format!(
                        r#"SELECT CAST("{column}" AS BLOB) FROM "{table}" WHERE "{column}" IS NOT NULL"#
                    );
                    let values: Vec<Vec<u8>> =
                        sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap();
                    for v in values {
                        let text = String::from_utf8_lossy(&v).into_owned();
                        out.push((format!("{table}.{column}"), text));
                    }
                }
            }
        }
        Store::Postgres(pool) => {
            let columns: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            for (table, column, data_type) in columns {
                let value = match data_type.as_str() {
                    "bytea" => format!(r#"encode("{column}", 'escape')"#),
                    "text" | "character varying" | "character" | "json" | "jsonb" | "ARRAY"
                    | "USER-DEFINED" => format!(r#""{column}"::text"#),
                    _ => continue, // numbers, booleans and times hold no text
                };
                let sql = format!(r#"SELECT {value} FROM "{table}" WHERE "{column}" IS NOT NULL"#);
                let values: Vec<String> = sqlx::query_scalar(&sql).fetch_all(pool).await.unwrap();
                for v in values {
                    out.push((format!("{table}.{column}"), v));
                }
            }
        }
    }
    out
}

/// Where any of `needles` is found, as `table.column: value`.
async fn traces(store: &Store, needles: &[&str]) -> Vec<String> {
    every_value(store)
        .await
        .into_iter()
        .filter(|(_, value)| needles.iter().any(|n| value.contains(n)))
        .map(|(column, value)| format!("{column}: {value}"))
        .collect()
}

fn with_id(needles: &[&'static str]) -> Vec<&'static str> {
    needles.iter().copied().chain([ID]).collect()
}

fn outage_intent(customer: &str, fault: &str) -> NoticeIntent {
    NoticeIntent {
        customer_id: customer.into(),
        episode_started_at: 1_000,
        kind: "outage",
        variant: String::new(),
        fault_id: fault.into(),
        priority: 1,
        due_at: 1_000,
    }
}

fn event(id: &str, fault: &str, kind: &str, seq: u32, at: &str, extra: &str) -> String {
    format!(
        r#"{{"v":1,"event_id":"{id}","fault_id":"{fault}","kind":"{kind}","seq":{seq},"occurred_at":"{at}"{extra}}}"#
    )
}

/// A daemon on a manual clock, its database and an API client with a key per role.
struct Daemon {
    running: Running,
    store: Store,
    settings: Settings,
    clock: Clock,
    api: ApiClient,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(backend: Backend) -> Self {
        let eleven = "2026-11-24T11:00:00Z".parse().unwrap();
        let LogDaemon {
            settings,
            running,
            store,
            clock,
            log,
            _dir,
        } = log_daemon(backend, &customers(), eleven, |_| {}).await;
        let mut keys = HashMap::new();
        for role in ROLES {
            let key = create_key(&store, role, role.parse().unwrap(), 0).await;
            keys.insert(role, key.unwrap().key);
        }
        let api = ApiClient {
            base: format!("http://{}", running.api_addr),
            http: reqwest::Client::new(),
            keys,
        };
        Self {
            running,
            store,
            settings,
            clock,
            api,
            log,
            _dir,
        }
    }

    async fn publish(&self, fault: &str, events: &[String]) {
        publish_events(&self.settings, fault, events).await;
    }

    /// Waits until the daemon's book has the customer `ID` placed (or not), and in an open
    /// fault (or in none).
    async fn wait_book(&self, placed: bool) {
        let id = CustomerId::parse(ID).unwrap();
        let what = format!("the book holds {ID} placed: {placed}, out: {placed}");
        eventually(&what, || async {
            let book = self.running.book.read();
            book.index().idx_of(&id).is_some_and(|i| {
                let out = !book.faults_of(i).is_empty();
                book.index().get(i).is_placed() == placed && out == placed
            })
        })
        .await;
    }

    /// (kind, body) of what the log channel sent to `customer`.
    fn sent_to(&self, customer: &str) -> Vec<(String, String)> {
        read_lines(&self.log)
            .into_iter()
            .filter(|l| l["customer_id"] == customer)
            .map(|l| {
                let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (text("kind"), text("body"))
            })
            .collect()
    }
}

/// Two notices sent to Erika (outage and restoration of F-0, their e-mails name her), an
/// operator's write about her in the audit log, and an outage notice of F-1 waiting for her.
async fn history(d: &Daemon) {
    let devices = r#","cause":"storm","devices":["TS-1"]"#;
    let detected = event("a1", "F-0", "detected", 1, "2026-11-24T10:00:00Z", devices);
    d.publish("F-0", &[detected]).await;
    wait_for_notices(&d.store, "F-0", "outage", "sent", 2).await;
    let restored = event("a2", "F-0", "restored", 2, "2026-11-24T10:30:00Z", "");
    d.publish("F-0", &[restored]).await;
    wait_for_notices(&d.store, "F-0", "restored", "sent", 2).await;
    let prefs = json!({"channels": ["email", "sms"], "language": "en", "quiet_hours": null});
    let (api, path) = (&d.api, format!("/api/v1/customers/{ID}/preferences"));
    let (status, body) = api.call("PUT", &path, Some("operator"), Some(prefs)).await;
    assert_eq!(status, 200, "{body}");
    // Due after the momentary delay, at 11:05: on the manual clock it waits.
    let detected = event("b1", "F-1", "detected", 1, "2026-11-24T11:00:00Z", devices);
    d.publish("F-1", &[detected]).await;
    wait_for_notices(&d.store, "F-1", "outage", "queued", 2).await;
    let found = traces(&d.store, &PERSONAL).await;
    for column in ["customers.name", "customers.phone", "notices.body"] {
        assert!(
            found.iter().any(|t| t.starts_with(column)),
            "the scan finds {column}: {found:?}"
        );
    }
}

/// Only a coordinator erases; the answer says nothing was in flight.
async fn erase_over_the_api(d: &Daemon) {
    let path = format!("/api/v1/customers/{ID}");
    assert_eq!(d.api.call("DELETE", &path, None, None).await.0, 401);
    for role in ["viewer", "operator"] {
        let (status, body) = d.api.call("DELETE", &path, Some(role), None).await;
        assert_eq!(status, 403, "{role}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("erase customers needs the coordinator role"),
            "{body}"
        );
    }
    let api = &d.api;
    let (status, body) = api.call("DELETE", &path, Some("coordinator"), None).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "erased", "notices_in_flight": 0}))
    );
    let (_, contract) = d.api.call("GET", "/api/v1/openapi.json", None, None).await;
    let operation = &contract["paths"]["/api/v1/customers/{id}"]["delete"];
    assert!(operation["responses"]["202"].is_object(), "{operation}");
}

/// Right after the request: nothing personal anywhere, the customer unknown to the API, the
/// waiting notice suppressed, the audit log without the id.
async fn erased_at_once(d: &Daemon) {
    assert_eq!(traces(&d.store, &PERSONAL).await, Vec::<String>::new());
    let path = format!("/api/v1/customers/{ID}");
    assert_eq!(
        d.api.call("GET", &path, Some("operator"), None).await.0,
        404
    );
    let outage: Vec<(String, Option<String>)> = d
        .store
        .notices_of(ID, "outage")
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.state, n.reason))
        .collect();
    let suppressed = ("suppressed".to_owned(), Some("customer erased".to_owned()));
    assert_eq!(outage, vec![suppressed, ("sent".to_owned(), None)]);
    let audit: Value = d.api.get("/api/v1/audit", "viewer").await;
    let paths: Vec<&str> = audit["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path"].as_str().unwrap_or_default())
        .collect();
    assert!(
        paths.contains(&"/api/v1/customers/{id}/preferences"),
        "{paths:?}"
    );
    let erasures = paths.iter().filter(|p| **p == "/api/v1/customers/{id}");
    assert_eq!(erasures.count(), 3, "two refused, one done: {paths:?}");
    assert!(!paths.iter().any(|p| p.contains(ID)), "{paths:?}");
}

/// After the grace: the history stays, under a pseudonym, and the id is gone.
async fn completed(d: &Daemon) {
    d.clock.set("2026-11-24T11:06:00Z".parse().unwrap());
    wait_for_notices(&d.store, "F-1", "outage", "sent", 1).await;
    d.running.jobs.complete_erasures().await.unwrap();
    // The scheduled sweep may have been first; either way the erasure is complete.
    assert_eq!(d.store.pending_erasures().await.unwrap(), 0);
    assert_eq!(
        traces(&d.store, &with_id(&PERSONAL)).await,
        Vec::<String>::new()
    );
    let db = &d.store;
    for (fault, kind, state, n) in [
        ("F-0", "outage", "sent", 2),
        ("F-0", "restored", "sent", 2),
        ("F-1", "outage", "sent", 1),
        ("F-1", "outage", "suppressed", 1),
    ] {
        let count = db.count_notices(Some(fault), kind, state).await.unwrap();
        assert_eq!(count, n, "{fault} {kind} {state}");
    }
    let members = d.store.fault_members("F-0", "restored").await.unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members.contains(&OTHER.to_owned()), "{members:?}");
    assert!(
        members.iter().any(|m| m.starts_with("erased:")),
        "{members:?}"
    );
    assert_eq!(d.store.unpaired_restorations().await.unwrap(), 0);
    assert!(d.store.notices_of(ID, "outage").await.unwrap().is_empty());
    let sent = d.sent_to(ID);
    assert_eq!(
        sent.len(),
        2,
        "nothing went out after the erasure: {sent:?}"
    );
}

/// Someone imported later under the id is a new customer: no history, and notified.
async fn imported_again(d: &Daemon) {
    let rows = faultline::directory::parse_customers(&format!("{HEADER}{JONAS_ROW}"))
        .unwrap()
        .rows;
    d.store
        .upsert_customers(&rows, chrono::Utc::now())
        .await
        .unwrap();
    d.wait_book(true).await; // in the open fault F-1 from 11:06, notice due at 11:11
    let path = format!("/api/v1/customers/{ID}");
    let customer = d.api.get(&path, "operator").await;
    assert_eq!(customer["name"], "Jonas Neumann");
    d.clock.set("2026-11-24T11:12:00Z".parse().unwrap());
    wait_for_notices(&d.store, "F-1", "outage", "sent", 2).await;
    let sent = d.sent_to(ID);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[2].0, "outage");
    assert!(sent[2].1.contains("Jonas Neumann"), "{sent:?}");
}

async fn erasure_over_the_api_on_a_running_daemon(backend: Backend) {
    let d = Daemon::start(backend).await;
    history(&d).await;
    erase_over_the_api(&d).await;
    erased_at_once(&d).await;
    d.wait_book(false).await;
    // Their self-service link now answers as for nobody.
    let tokens = faultline::api::selfservice::TokenKey::load(&d.store)
        .await
        .unwrap();
    let status = format!("/status?customer_id={ID}&token={}", tokens.token(ID));
    assert_eq!(d.api.call("GET", &status, None, None).await.0, 404);
    assert_eq!(
        d.running.jobs.complete_erasures().await.unwrap(),
        0,
        "not within the grace"
    );
    assert_eq!(d.store.pending_erasures().await.unwrap(), 1);
    completed(&d).await;
    imported_again(&d).await;
    d.running.shutdown().await;
}

/// A notice in flight keeps its row until the sender has recorded it; then the completion
/// erases its text and cuts it from the customer, and its count stays.
async fn a_notice_in_flight_is_erased_once_it_settles(backend: Backend) {
    let (_prefix, _url, _dir, store) = database_with(backend, &customers()).await;
    let intents = [outage_intent(ID, "F-9")];
    assert_eq!(store.create_notices(&intents, 1_000).await.unwrap(), 1);
    let claimed = store
        .refill(&[], claim(10), &[], 2_000, |c| (Vec::new(), c.notices))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let id = CustomerId::parse(ID).unwrap();
    let erasure = store.erase_customer(&id, 3_000).await.unwrap();
    assert_eq!(
        erasure,
        Some(Erasure {
            notices_in_flight: 1
        })
    );
    assert_eq!(traces(&store, &PERSONAL).await, Vec::<String>::new());
    let early = store.complete_erasures(i64::MAX, 4_000).await.unwrap();
    assert_eq!(early, 0, "not while a notice is in flight");
    let sent = NoticeOutcome {
        id: claimed[0].id,
        state: "sent",
        channel: Some("email".into()),
        language: Some("en".into()),
        body: Some("Hello Erika Mustermann, the power is out at your address.".into()),
        provider_id: Some("msg-7731".into()),
        reason: None,
        due_at: None,
        failed_channels: None,
        segments: None,
        refund_attempt: false,
    };
    store.finish_notices(&[sent], 5_000).await.unwrap();
    let count = || store.count_notices(Some("F-9"), "outage", "sent");
    assert_eq!(count().await.unwrap(), 1, "the sender recorded its send");
    assert!(
        !traces(&store, &PERSONAL).await.is_empty(),
        "its text names her"
    );
    assert_eq!(store.complete_erasures(i64::MAX, 6_000).await.unwrap(), 1);
    let left = traces(&store, &with_id(&["Mustermann", "msg-7731"])).await;
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(count().await.unwrap(), 1, "the count stays");
    assert_eq!(store.count_customers().await.unwrap(), 1);
    assert_eq!(store.erase_customer(&id, 7_000).await.unwrap(), None);
}

fn faultline(db: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.env("FAULTLINE__DATABASE__URL", db)
        .env("FAULTLINE__LOG__FILTER", "warn")
        .env_remove("RUST_LOG");
    cmd
}

/// `faultline customer erase`: unknown ids are named and make the exit code 3; an import of
/// the id before the erasure completed brings a new customer and completes it; a second
/// erasure, completed, leaves the id nowhere.
async fn erasure_from_the_command_line(backend: Backend) {
    let (_prefix, url, dir, store) = database_with(backend, &customers()).await;
    store
        .create_notices(&[outage_intent(ID, "F-7")], 1_000)
        .await
        .unwrap();
    let out = faultline(&url)
        .args(["customer", "erase", ID, "nobody-here"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{ID}: erased")), "{stdout}");
    assert!(stderr.contains("nobody-here: no such customer"), "{stderr}");
    assert_eq!(traces(&store, &PERSONAL).await, Vec::<String>::new());
    assert_eq!(store.count_customers().await.unwrap(), 1);
    let suppressed = || store.count_notices(Some("F-7"), "outage", "suppressed");
    assert_eq!(
        suppressed().await.unwrap(),
        1,
        "its waiting notice stays unsent"
    );

    let file = dir.path().join("again.csv");
    std::fs::write(&file, format!("{HEADER}{JONAS_ROW}")).unwrap();
    let import = faultline(&url)
        .args(["import", "customers"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    assert_eq!(
        store.pending_erasures().await.unwrap(),
        0,
        "completed by the import"
    );
    assert!(store.notices_of(ID, "outage").await.unwrap().is_empty());
    assert_eq!(suppressed().await.unwrap(), 1, "the history stays");
    let name = store.customer(ID).await.unwrap().map(|c| c.name);
    assert_eq!(name.as_deref(), Some("Jonas Neumann"));
    assert_eq!(traces(&store, &PERSONAL).await, Vec::<String>::new());

    let again = faultline(&url)
        .args(["customer", "erase", ID])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    assert_eq!(store.complete_erasures(i64::MAX, 10_000).await.unwrap(), 1);
    let left = traces(&store, &[ID, "Jonas", "jonas.neumann@example.net"]).await;
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(store.count_customers().await.unwrap(), 1);
}

both_backends!(
    erasure_over_the_api_on_a_running_daemon,
    a_notice_in_flight_is_erased_once_it_settles,
    erasure_from_the_command_line
);
