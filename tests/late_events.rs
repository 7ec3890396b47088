//! Events that reach the daemon late, critical customers told at once, and ETRs that drift or
//! are withdrawn (issue 25, points 1–3), on a manual clock and the real broker and databases.
//! Every event here is dated relative to the test's own clock, never to today.

mod common;

use chrono::{DateTime, Utc};
use common::*;
use faultline::app::Running;
use faultline::clock::Clock;
use faultline::config::Settings;
use faultline::store::Store;

/// K1 and K2 on feeder TS-1, K3 on TS-2; K1 depends on life support.
const CUSTOMERS: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    K1,A. Anders,11.80,53.40,+4915100000031,,,en,sms,,Europe/Berlin,life_support,TS-1,TS-1 Bus 1\n\
    K2,B. Berger,11.80,53.40,+4915100000032,,,de,sms,,Europe/Berlin,,TS-1,TS-1 Bus 2\n\
    K3,C. Chen,11.80,53.40,+4915100000033,,,zh,sms,,Europe/Berlin,,TS-2,TS-2 Bus 1\n";

/// The test's "now": every event time is an offset from it.
const T0: &str = "2026-11-24T10:00:00Z";

fn at(offset_secs: i64) -> DateTime<Utc> {
    T0.parse::<DateTime<Utc>>().unwrap() + chrono::Duration::seconds(offset_secs)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Kit {
    settings: Settings,
    running: Running,
    store: Store,
    clock: Clock,
    log: std::path::PathBuf,
    published: i64,
    _dir: tempfile::TempDir,
}

/// A daemon on the product's notice timing (not the tests' usual late-event wait of 0), its
/// clock at `T0 + clock_offset`.
async fn start(backend: Backend, clock_offset: i64) -> Kit {
    let product = Settings::defaults().notify.late_event_wait_secs;
    let LogDaemon {
        settings,
        running,
        store,
        clock,
        log,
        _dir,
    } = log_daemon(backend, CUSTOMERS, at(clock_offset), |s| {
        s.notify.late_event_wait_secs = product;
    })
    .await;
    assert_eq!(settings.notify.momentary_delay_secs, 300);
    assert_eq!(settings.notify.late_event_wait_secs, 60);
    assert_eq!(settings.notify.critical_momentary_delay_secs, 0);
    Kit {
        settings,
        running,
        store,
        clock,
        log,
        published: 0,
        _dir,
    }
}

impl Kit {
    /// Publishes one event of fault `fault` happening at `T0 + offset` and waits until it is
    /// stored.
    async fn event(&mut self, fault: &str, kind: &str, seq: u32, offset: i64, extra: &str) {
        let payload = format!(
            r#"{{"v":1,"event_id":"{fault}-{seq}","fault_id":"{fault}","kind":"{kind}","seq":{seq},"occurred_at":"{}"{extra}}}"#,
            rfc3339(at(offset))
        );
        publish_events(&self.settings, fault, &[payload]).await;
        self.published += 1;
        wait_events(&self.store, self.published).await;
    }

    fn set_clock(&self, offset: i64) {
        self.clock.set(at(offset));
    }

    /// (customer, kind, body) of every notice the log channel wrote, sorted.
    fn sent(&self) -> Vec<(String, String, String)> {
        let mut out: Vec<(String, String, String)> = read_lines(&self.log)
            .into_iter()
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (s("customer_id"), s("kind"), s("body"))
            })
            .collect();
        out.sort();
        out
    }

    fn sent_kinds(&self) -> Vec<(String, String)> {
        self.sent().into_iter().map(|(c, k, _)| (c, k)).collect()
    }

    async fn states(&self, fault: &str, kind: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for state in ["queued", "sending", "sent", "failed", "suppressed"] {
            let n = self
                .store
                .count_notices(Some(fault), kind, state)
                .await
                .unwrap();
            if n > 0 {
                out.push((state.to_owned(), n.to_string()));
            }
        }
        out
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

const TS1: &str = r#","devices":["TS-1"],"cause":"storm""#;

/// Point 1: an outage learned of ten minutes late is told once the late-event minute has
/// passed; its restoration, two seconds later by grid time and so momentary, still follows.
async fn told_out_is_told_back(backend: Backend) {
    let mut kit = start(backend, 600).await;
    kit.event("L-1", "detected", 1, 0, TS1).await;
    // K1 (critical) is told at once; K2 waits for the late-event minute.
    wait_for_notices(&kit.store, "L-1", "outage", "sent", 1).await;
    assert_eq!(kit.sent_kinds(), pairs(&[("K1", "outage")]));
    kit.set_clock(600 + 61);
    wait_for_notices(&kit.store, "L-1", "outage", "sent", 2).await;

    kit.event("L-1", "restored", 2, 2, "").await;
    assert_eq!(wait_settled(&kit.store, "L-1", "restored").await, 2);
    assert_eq!(
        kit.sent_kinds(),
        pairs(&[
            ("K1", "outage"),
            ("K1", "restored"),
            ("K2", "outage"),
            ("K2", "restored"),
        ])
    );
    kit.running.shutdown().await;
}

/// Point 1, the other side: a late outage whose restoration arrives right behind it is a
/// momentary trip for everyone not yet told. K2 hears nothing; K1, told at once because of
/// life support, hears both.
async fn a_late_momentary_trip_is_not_a_pair_of_notices(backend: Backend) {
    let mut kit = start(backend, 600).await;
    kit.event("L-2", "detected", 1, 0, TS1).await;
    wait_for_notices(&kit.store, "L-2", "outage", "sent", 1).await;
    kit.event("L-2", "restored", 2, 2, "").await;
    // Past every window: whatever was going to be sent is due now.
    kit.set_clock(600 + 400);
    assert_eq!(wait_settled(&kit.store, "L-2", "restored").await, 1);
    assert_eq!(
        kit.states("L-2", "outage").await,
        pairs(&[("sent", "1"), ("suppressed", "1")])
    );
    let k2 = kit.store.notices_of("K2", "outage").await.unwrap();
    assert_eq!(k2[0].reason.as_deref(), Some("momentary"));
    // Sentinel: a later outage on TS-2 goes out, so the worker has looked at everything due.
    kit.event("L-3", "detected", 1, 0, r#","devices":["TS-2"]"#)
        .await;
    kit.set_clock(600 + 400 + 61);
    wait_for_notices(&kit.store, "L-3", "outage", "sent", 1).await;
    assert_eq!(
        kit.sent_kinds(),
        pairs(&[("K1", "outage"), ("K1", "restored"), ("K3", "outage")])
    );
    kit.running.shutdown().await;
}

/// Point 3: on time, a critical customer is told at once and everyone else after the
/// momentary window; a trip that clears within it leaves only the critical customer with a
/// pair of notices.
async fn critical_customers_are_told_at_once(backend: Backend) {
    let mut kit = start(backend, 0).await;
    kit.event("C-1", "detected", 1, 0, TS1).await;
    wait_for_notices(&kit.store, "C-1", "outage", "sent", 1).await;
    assert_eq!(
        kit.states("C-1", "outage").await,
        pairs(&[("queued", "1"), ("sent", "1")])
    );
    kit.set_clock(2);
    kit.event("C-1", "restored", 2, 2, "").await;
    assert_eq!(wait_settled(&kit.store, "C-1", "restored").await, 1);
    assert_eq!(
        kit.states("C-1", "outage").await,
        pairs(&[("sent", "1"), ("suppressed", "1")])
    );
    // Sentinel as above.
    kit.event("C-2", "detected", 1, 2, r#","devices":["TS-2"]"#)
        .await;
    kit.set_clock(2 + 301);
    wait_for_notices(&kit.store, "C-2", "outage", "sent", 1).await;
    assert_eq!(
        kit.sent_kinds(),
        pairs(&[("K1", "outage"), ("K1", "restored"), ("K3", "outage")])
    );
    kit.running.shutdown().await;
}

/// Point 2: six slips of 20 minutes against the 30-minute threshold are announced three times
/// (at +40, +80 and +120 minutes), a withdrawal once, in each customer's language, and the
/// same ETR given again after the withdrawal is announced again.
async fn drifting_and_withdrawn_etrs(backend: Backend) {
    let mut kit = start(backend, 0).await;
    let etr = |minutes: i64| rfc3339(at(2 * 3600 + minutes * 60));
    let first = format!(r#"{TS1},"etr":"{}""#, etr(0));
    kit.event("E-1", "detected", 1, 0, &first).await;
    kit.set_clock(1000);
    wait_for_notices(&kit.store, "E-1", "outage", "sent", 2).await;
    for step in 1..=6 {
        let extra = format!(r#","etr":"{}""#, etr(step * 20));
        kit.event("E-1", "updated", step as u32 + 1, 60 * step, &extra)
            .await;
    }
    kit.event("E-1", "updated", 8, 420, r#","etr":null"#).await;
    // Each announcement goes to both customers; earlier ones may give way to later ones
    // before they are sent, so count what was created: three estimates and one withdrawal.
    wait_settled(&kit.store, "E-1", "etr_update").await;
    let variants = kit
        .store
        .notice_variants("E-1", "etr_update")
        .await
        .unwrap();
    // A variant names the ETR, then `@` and when it was announced.
    let mut variants: Vec<String> = variants
        .into_iter()
        .map(|v| v.split('@').next().unwrap().to_owned())
        .collect();
    variants.sort();
    let (t40, t80, t120) = (
        at(2 * 3600 + 40 * 60).timestamp_millis(),
        at(2 * 3600 + 80 * 60).timestamp_millis(),
        at(2 * 3600 + 120 * 60).timestamp_millis(),
    );
    let mut want: Vec<String> = [
        t40.to_string(),
        t80.to_string(),
        t120.to_string(),
        format!("withdrawn:{t120}"),
    ]
    .into_iter()
    .flat_map(|v| [v.clone(), v])
    .collect();
    want.sort();
    assert_eq!(variants, want);
    // The withdrawal is the latest word: it went out to both, once, in English and German.
    let sent = kit.sent();
    let told = |who: &str, words: &str| {
        sent.iter()
            .filter(|(c, k, b)| c == who && k == "etr_update" && b.contains(words))
            .count()
    };
    assert_eq!(
        (told("K1", "no new one yet"), told("K2", "noch keine neue")),
        (1, 1),
        "{sent:?}"
    );
    // The ETR withdrawn comes back: news again, though both customers were told it before.
    let again = format!(r#","etr":"{}""#, etr(120));
    kit.event("E-1", "updated", 9, 480, &again).await;
    eventually("the ETR given again is announced", || async {
        kit.store
            .notice_variants("E-1", "etr_update")
            .await
            .unwrap()
            .len()
            == 10
    })
    .await;
    wait_settled(&kit.store, "E-1", "etr_update").await;
    for who in ["K1", "K2"] {
        let last = read_lines(&kit.log)
            .into_iter()
            .rfind(|l| l["customer_id"] == who && l["kind"] == "etr_update")
            .unwrap();
        let body = last["body"].as_str().unwrap();
        assert!(body.contains("15:00"), "{who}: {body}");
    }
    kit.running.shutdown().await;
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Postgres).await;
            })*
        }
    };
}

both_backends!(
    told_out_is_told_back,
    a_late_momentary_trip_is_not_a_pair_of_notices,
    critical_customers_are_told_at_once,
    drifting_and_withdrawn_etrs,
);
