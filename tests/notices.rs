//! The notice outbox as ingest fills it: one outage and one restoration notice per customer
//! episode however many faults overlap, none for a momentary outage, restoration notices for
//! the customers a shrinking fault lets go, episodes kept across a restart; large notice sets
//! that meet existing rows.

mod common;

use std::time::Duration;

use common::*;

fn rect(event: &str, fault: &str, kind: &str, at: &str, [x0, y0, x1, y1]: [f64; 4]) -> Vec<u8> {
    format!(
        r#"{{"v":1,"event_id":"{event}","fault_id":"{fault}","kind":"{kind}","occurred_at":"{at}",
        "area":{{"type":"Polygon","coordinates":[[[{x0},{y0}],[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}]]]}}}}"#
    )
    .into_bytes()
}

fn restore(event: &str, fault: &str, at: &str) -> Vec<u8> {
    format!(r#"{{"v":1,"event_id":"{event}","fault_id":"{fault}","kind":"restored","occurred_at":"{at}"}}"#).into_bytes()
}

const A: [f64; 4] = [11.800, 53.400, 11.815, 53.415];
const B: [f64; 4] = [11.810, 53.405, 11.825, 53.420];

async fn overlapping_faults_make_one_outage_and_one_restoration_notice(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let (a, b) = (
        in_box(&customers, A[0], A[1], A[2], A[3]),
        in_box(&customers, B[0], B[1], B[2], B[3]),
    );
    let both = union(&[&a, &b]);
    let only_a: Vec<String> = a.iter().filter(|c| !b.contains(c)).cloned().collect();
    app.publish(&[
        &rect("n1", "A", "detected", "2026-11-23T14:01:00Z", A),
        &rect("n2", "B", "detected", "2026-11-23T14:02:00Z", B),
        &restore("n3", "A", "2026-11-23T16:00:00Z"),
    ])
    .await;
    app.wait_events(3).await;
    let outage = app.store.notices_per_customer("outage").await.unwrap();
    assert_eq!(
        outage.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        both
    );
    assert!(
        outage.iter().all(|(_, n)| *n == 1),
        "one outage notice per customer"
    );
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        only_a,
        "shared customers are still out"
    );

    app.publish(&[&restore("n4", "B", "2026-11-23T16:05:00Z")])
        .await;
    app.wait_events(4).await;
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        both
    );
    assert!(
        restored.iter().all(|(_, n)| *n == 1),
        "one restoration notice per customer"
    );
    assert_eq!(app.store.unpaired_restorations().await.unwrap(), 0);
    assert!(app.store.open_episodes().await.unwrap().is_empty());
    assert_eq!(
        app.store
            .count_notices(None, "outage", "queued")
            .await
            .unwrap(),
        both.len() as i64
    );
    app.shutdown().await;
}

/// A fault restored within the momentary delay over `area`, both events on time: every outage
/// notice suppressed, none waiting. Only critical customers, whose outage notices were due at
/// once, get a restoration notice (variant `momentary`: it goes out only if their outage
/// notice did; tests/late_events.rs follows it to the end). Returns how many customers it
/// covered.
async fn momentary_outage_sends_nothing(backend: Backend, area: [f64; 4]) -> usize {
    let mut app = spawn_app(backend).await;
    let on_time = faultline::clock::Clock::manual("2026-11-23T14:02:00Z".parse().unwrap());
    app.restart_with(on_time, |_| {}).await;
    let customers = sample_customers();
    let out = in_box(&customers, area[0], area[1], area[2], area[3]);
    let critical: Vec<String> = out
        .iter()
        .filter(|id| customers.iter().any(|c| &c.id == *id && c.critical))
        .cloned()
        .collect();
    assert!(!critical.is_empty());
    app.publish(&[
        &rect("m1", "M", "detected", "2026-11-23T14:00:00Z", area),
        &restore("m2", "M", "2026-11-23T14:02:00Z"),
    ])
    .await;
    app.wait_events(2).await;
    let count = |state| app.store.count_notices(Some("M"), "outage", state);
    assert_eq!(count("suppressed").await.unwrap(), out.len() as i64);
    assert_eq!(count("queued").await.unwrap(), 0);
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        critical
    );
    let variants = app.store.notice_variants("M", "restored").await.unwrap();
    assert!(variants.iter().all(|v| v == "momentary"), "{variants:?}");
    // No outage notice is left staged (`queued` above counts staged ones). The restorations
    // are staged with them when both events share a batch, as one write of over a thousand.
    let url = app.settings.database.url.expose();
    let staged = staged_rows(backend, url).await.0;
    assert!(
        staged == 0 || staged == critical.len() as i64,
        "{staged} staged"
    );
    app.shutdown().await;
    out.len()
}

async fn a_momentary_outage_sends_nothing(backend: Backend) {
    momentary_outage_sends_nothing(backend, A).await;
}

/// The same over both boxes: on PostgreSQL its 2,558 outage notices are staged in the
/// detection's commit, and the restoration suppresses them there.
async fn a_momentary_outage_of_a_large_fault_sends_nothing(backend: Backend) {
    let both = [A[0], A[1], B[2], B[3]];
    let covered = momentary_outage_sends_nothing(backend, both).await;
    assert!(covered >= 1000, "large enough to be staged: {covered}");
}

async fn episodes_survive_a_restart(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.publish(&[&rect("e1", "E", "detected", "2026-11-23T14:00:00Z", A)])
        .await;
    app.wait_events(1).await;
    let settings = app.settings.clone();
    app.stop().await;
    let rebuilt = faultline::app::App::build(settings, faultline::clock::Clock::System)
        .await
        .unwrap();
    let store = rebuilt.store().clone();
    let mut running = rebuilt.start().unwrap();
    assert!(running.wait_subscribed(Duration::from_secs(10)).await);
    let payload = restore("e2", "E", "2026-11-23T17:00:00Z");
    faultline::ingest::publish::publish_all(
        &app.settings.mqtt,
        vec![(app.events_topic("E"), payload)],
    )
    .await
    .unwrap();
    wait_events(&store, 2).await;
    let outage = store.notices_per_customer("outage").await.unwrap().len();
    assert!(outage > 0);
    assert_eq!(
        store.notices_per_customer("restored").await.unwrap().len(),
        outage
    );
    assert_eq!(
        store.unpaired_restorations().await.unwrap(),
        0,
        "restorations belong to the episodes opened before the restart"
    );
    running.shutdown().await;
}

async fn a_shrinking_fault_restores_the_customers_it_lets_go(backend: Backend) {
    let app = spawn_app(backend).await;
    let customers = sample_customers();
    let small = [11.800, 53.400, 11.808, 53.408];
    let (all, kept) = (
        in_box(&customers, A[0], A[1], A[2], A[3]),
        in_box(&customers, small[0], small[1], small[2], small[3]),
    );
    let let_go: Vec<String> = all.iter().filter(|c| !kept.contains(c)).cloned().collect();
    assert!(!kept.is_empty() && !let_go.is_empty());
    app.publish(&[
        &rect("s1", "S", "detected", "2026-11-23T14:00:00Z", A),
        &rect("s2", "S", "updated", "2026-11-23T15:00:00Z", small),
    ])
    .await;
    app.wait_events(2).await;
    let restored = app.store.notices_per_customer("restored").await.unwrap();
    assert_eq!(
        restored.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        let_go,
        "partial restoration: only the customers outside the new area"
    );
    assert_eq!(app.store.open_episodes().await.unwrap().len(), kept.len());
    app.shutdown().await;
}

/// A large set goes in the fast way (PostgreSQL: `COPY`); when some of its rows exist already
/// (a redelivered batch, a scheduled job run twice), only the new ones are created, with the
/// values given.
async fn a_large_notice_set_creates_only_the_notices_not_there_yet(backend: Backend) {
    let (url, _dir) = fresh_database(backend, &format!("bulk_{}", unique_prefix())).await;
    let store = faultline::store::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let intent = |i: usize| faultline::store::NoticeIntent {
        customer_id: format!("C{i:05}"),
        episode_started_at: 1_700_000_000_000,
        kind: "outage",
        variant: String::new(),
        fault_id: "F-BULK".into(),
        priority: (i % 3) as i64,
        due_at: 1_700_000_000_000 + i as i64,
    };
    let first: Vec<_> = (0..1500).map(intent).collect();
    assert_eq!(store.create_notices(&first, 1).await.unwrap(), 1500);
    let all: Vec<_> = (0..3000).rev().map(intent).collect();
    assert_eq!(
        store.create_notices(&all, 2).await.unwrap(),
        1500,
        "the 1,500 that existed are skipped"
    );
    let queued = store
        .count_notices(Some("F-BULK"), "outage", "queued")
        .await;
    assert_eq!(queued.unwrap(), 3000);
    let per_customer = store.notices_per_customer("outage").await.unwrap();
    assert!(per_customer.iter().all(|(_, n)| *n == 1), "one notice each");
    // The first claims are the most urgent: priority 0, earliest due first.
    let claimed = store
        .refill(&[], claim(3), &[], i64::MAX / 2, |c| {
            (Vec::new(), c.notices)
        })
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(ids, ["C00000", "C00003", "C00006"]);
}

/// An outage notice of episode 1 for `customer`, as ingest would create it.
fn outage_intent(
    customer: String,
    fault: &str,
    priority: i64,
    due_at: i64,
) -> faultline::store::NoticeIntent {
    faultline::store::NoticeIntent {
        customer_id: customer,
        episode_started_at: 1,
        kind: "outage",
        variant: String::new(),
        fault_id: fault.into(),
        priority,
        due_at,
    }
}

/// A refill claims due notices straight into `sending` and records, in the same transaction,
/// what its prepare step ended without a send: once it has returned, the only notices
/// `sending` are those it handed out, so a crash can leave no waiting notice in doubt.
async fn a_refill_records_what_it_ends_in_the_claims_transaction(backend: Backend) {
    let (url, _dir) = fresh_database(backend, &unique_prefix()).await;
    let store = faultline::store::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let intents: Vec<_> = (0..10)
        .map(|i| outage_intent(format!("R{i:02}"), "F-REFILL", 0, 1))
        .collect();
    store.create_notices(&intents, 1).await.unwrap();
    let wait = |n: &faultline::store::ClaimedNotice| faultline::store::NoticeOutcome {
        id: n.id,
        state: "queued",
        channel: None,
        language: None,
        body: None,
        provider_id: None,
        reason: Some("waiting for the end of quiet hours".into()),
        due_at: Some(1_000),
        failed_channels: None,
        segments: None,
        refund_attempt: true,
    };
    let (handed_out, waiting) = store
        .refill(&[], claim(4), &[], 2, |claim| {
            assert_eq!(claim.notices.len(), 4);
            assert!(
                claim.contacts.is_empty(),
                "none of them is in the directory"
            );
            let (send, end) = claim.notices.split_at(2);
            let ended = end.iter().map(wait).collect();
            (ended, (send.to_vec(), end.to_vec()))
        })
        .await
        .unwrap();
    let count = |state: &'static str| store.count_notices(Some("F-REFILL"), "outage", state);
    assert_eq!(
        count("sending").await.unwrap(),
        2,
        "only the two handed out"
    );
    assert_eq!(count("queued").await.unwrap(), 8);
    for n in &waiting {
        let view = store.notices_of(&n.customer_id, "outage").await.unwrap();
        assert_eq!(view[0].state, "queued");
        assert_eq!(view[0].attempts, 0, "finding quiet hours is not an attempt");
    }
    let claimed_again = store
        .refill(&[], claim(100), &[], 3, |c| (Vec::new(), c.notices))
        .await
        .unwrap();
    assert_eq!(
        claimed_again.len(),
        6,
        "the waiting ones are not due until their quiet hours end"
    );
    assert!(claimed_again
        .iter()
        .all(|n| !handed_out.iter().chain(&waiting).any(|h| h.id == n.id)));
}

/// A claim after a cursor takes the most urgent notices after it first, then the rest of what
/// it asked for from the front of the queue: nothing behind the cursor is left out.
async fn a_claim_after_a_cursor_takes_what_follows_it_then_the_front(backend: Backend) {
    let (url, _dir) = fresh_database(backend, &unique_prefix()).await;
    let store = faultline::store::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let intents: Vec<_> = (0..6)
        .map(|i| outage_intent(format!("K{i}"), "F-CURSOR", i / 2, 10 - i))
        .collect();
    store.create_notices(&intents, 1).await.unwrap();
    let take = |after, limit| {
        let store = store.clone();
        async move {
            let request = faultline::store::ClaimRequest {
                limit,
                after,
                ..Default::default()
            };
            let mut claimed = store
                .refill(&[], request, &[], 100, |c| (Vec::new(), c.notices))
                .await
                .unwrap();
            claimed.sort_by_key(|n| n.key());
            claimed
        }
    };
    // Queue order: K1 K0 (priority 0), K3 K2 (1), K5 K4 (2).
    let first = take(None, 2).await;
    let names = |v: &[faultline::store::ClaimedNotice]| {
        v.iter().map(|n| n.customer_id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&first), ["K1", "K0"]);
    let key = |name: &'static str| {
        let store = store.clone();
        async move {
            let id = store.notices_of(name, "outage").await.unwrap()[0].id;
            let (priority, due_at) = match name {
                "K3" => (1, 7),
                _ => (2, 5),
            };
            faultline::store::QueueKey {
                priority,
                due_at,
                id,
            }
        }
    };
    // After K3: K2 and K5 follow it (from the front, the two would be K3 and K2).
    assert_eq!(names(&take(Some(key("K3").await), 2).await), ["K2", "K5"]);
    // After K5 only K4 follows; the rest comes from the front: K3, behind the cursor.
    assert_eq!(names(&take(Some(key("K5").await), 3).await), ["K3", "K4"]);
    assert!(take(None, 10).await.is_empty(), "all six are claimed");
}

/// The WAL position benchmarks difference over a phase: PostgreSQL's grows with every write;
/// SQLite has none to report.
async fn the_wal_position_grows_with_writes_on_postgres(backend: Backend) {
    let (url, _dir) = fresh_database(backend, &unique_prefix()).await;
    let store = faultline::store::Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let before = store.wal_position().await.unwrap();
    let intents: Vec<_> = (0..100)
        .map(|i| outage_intent(format!("W{i:03}"), "F-WAL", 0, 1))
        .collect();
    store.create_notices(&intents, 1).await.unwrap();
    let after = store.wal_position().await.unwrap();
    match backend {
        Backend::Sqlite => assert_eq!((before, after), (None, None)),
        Backend::Postgres => assert!(after.unwrap() > before.unwrap(), "{before:?} → {after:?}"),
    }
}

/// Rows waiting in PostgreSQL's staged outbox (SQLite never stages): (staged notices, batches).
async fn staged_rows(backend: Backend, url: &str) -> (i64, i64) {
    if backend == Backend::Sqlite {
        return (0, 0);
    }
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    (count("staged_notices").await, count("notice_batches").await)
}

/// Commits `notices` as an ingest batch does (on PostgreSQL 1,000 or more are staged).
async fn commit_outbox(
    store: &faultline::store::Store,
    notices: Vec<faultline::store::NoticeIntent>,
    now: i64,
) {
    let write = faultline::store::BatchWrite {
        notices,
        now,
        ..Default::default()
    };
    store.commit_batch(&write).await.unwrap();
}

/// A fresh database with `n` outage notices of `fault` (customers `{prefix}0000`…, priority
/// 1, due at 1) committed as an ingest batch: staged on PostgreSQL.
async fn fanned_out(
    backend: Backend,
    prefix: &str,
    fault: &str,
    n: usize,
) -> (faultline::store::Store, String, tempfile::TempDir) {
    let name = format!("fan_{}", unique_prefix());
    let (url, dir) = fresh_database(backend, &name).await;
    let store = faultline::store::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let intents: Vec<_> = (0..n)
        .map(|i| outage_intent(format!("{prefix}{i:04}"), fault, 1, 1))
        .collect();
    commit_outbox(&store, intents, 1).await;
    (store, url, dir)
}

/// One claim of what `request` asks for at time 10, moving its staged cursor past what it
/// took, as the sender does; the customers claimed.
async fn claim_once(
    store: &faultline::store::Store,
    request: &mut faultline::store::ClaimRequest,
) -> Vec<String> {
    let claimed = store
        .refill(&[], request.clone(), &[], 10, |c| (Vec::new(), c.notices))
        .await
        .unwrap();
    if let Some(last) = claimed.iter().filter_map(|n| n.staged_key()).max() {
        request.after_staged = Some(last);
    }
    claimed.into_iter().map(|n| n.customer_id).collect()
}

/// Claims until nothing is left; the customers claimed.
async fn claim_the_rest(
    store: &faultline::store::Store,
    request: &mut faultline::store::ClaimRequest,
) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let more = claim_once(store, request).await;
        if more.is_empty() {
            return all;
        }
        all.extend(more);
    }
}

/// A fan-out of 1,500 outage notices in one ingest commit: PostgreSQL stages them (one narrow
/// row each, turned into a notice when claimed), SQLite writes them; either way every reader
/// sees the same outbox. Counts include the waiting notices, a momentary suppression reaches
/// them, critical customers and an urgent queued notice are claimed first, each notice is
/// claimed once, and a cancellation or a look at one customer settles what is still staged.
async fn a_large_fan_out_is_one_outbox_whether_staged_or_not(backend: Backend) {
    let (url, _dir) = fresh_database(backend, &format!("staged_{}", unique_prefix())).await;
    let store = faultline::store::Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let critical = |i: usize| i % 50 == 0;
    let intents: Vec<_> = (0..1500)
        .map(|i| outage_intent(format!("S{i:04}"), "F-BIG", i64::from(!critical(i)), 1))
        .collect();
    commit_outbox(&store, intents, 1).await;
    let staged = staged_rows(backend, &url).await;
    match backend {
        Backend::Postgres => assert_eq!(staged, (1500, 2), "one batch per priority"),
        Backend::Sqlite => assert_eq!(staged, (0, 0)),
    }
    let queued = || store.count_notices(Some("F-BIG"), "outage", "queued");
    assert_eq!(queued().await.unwrap(), 1500);
    let breakdown = store.notice_breakdown("F-BIG").await.unwrap();
    assert_eq!(breakdown, [(None, "queued".to_owned(), 1500)]);
    // Ten customers' outages were momentary.
    let momentary: Vec<(String, i64)> = (1..=10).map(|i| (format!("S{i:04}"), 1)).collect();
    let suppress = faultline::store::BatchWrite {
        suppressions: vec![faultline::store::Suppression {
            pairs: momentary,
            kind: "outage",
            reason: "momentary",
        }],
        now: 2,
        ..Default::default()
    };
    store.commit_batch(&suppress).await.unwrap();
    let suppressed = store.count_notices(Some("F-BIG"), "outage", "suppressed");
    assert_eq!(suppressed.await.unwrap(), 10);
    assert_eq!(queued().await.unwrap(), 1490);
    let one = store.notices_of("S0001", "outage").await.unwrap();
    assert_eq!(one[0].state, "suppressed");
    assert_eq!(one[0].reason.as_deref(), Some("momentary"));
    // An urgent notice queued the ordinary way, and a customer looked at one by one.
    let urgent = outage_intent("URGENT".into(), "F-SMALL", 0, 1);
    store.create_notices(&[urgent], 3).await.unwrap();
    let seen = store.notices_of("S0020", "outage").await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].state, "queued", "a staged notice is a queued one");

    let mut request = claim(31);
    let first = store
        .refill(&[], request.clone(), &[], 10, |c| (Vec::new(), c.notices))
        .await
        .unwrap();
    let mut firsts: Vec<&str> = first.iter().map(|n| n.customer_id.as_str()).collect();
    firsts.sort_unstable();
    let mut expected: Vec<String> = (0..1500)
        .filter(|&i| critical(i))
        .map(|i| format!("S{i:04}"))
        .collect();
    expected.push("URGENT".into());
    assert_eq!(
        firsts, expected,
        "the urgent notice and the critical customers first"
    );
    let mut claimed: Vec<String> = firsts.iter().map(|c| c.to_string()).collect();
    request.limit = 200;
    claimed.extend(claim_the_rest(&store, &mut request).await);
    claimed.sort_unstable();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!(before, claimed.len(), "no notice claimed twice");
    assert_eq!(
        claimed.len(),
        1491,
        "all but the ten suppressed, and the urgent one"
    );
    assert_eq!(
        staged_rows(backend, &url).await,
        (0, 0),
        "nothing left staged"
    );
    assert_eq!(queued().await.unwrap(), 0);
    let sending = store.count_notices(Some("F-BIG"), "outage", "sending");
    assert_eq!(sending.await.unwrap(), 1490);
    let per_customer = store.notices_per_customer("outage").await.unwrap();
    assert!(per_customer.iter().all(|(_, n)| *n == 1), "one notice each");

    // A second fan-out cancelled before any claim: every staged notice ends suppressed.
    let next: Vec<_> = (0..1200)
        .map(|i| outage_intent(format!("T{i:04}"), "F-CANCEL", 1, 1))
        .collect();
    commit_outbox(&store, next, 20).await;
    let cancelled = store.cancel_queued_notices("F-CANCEL", "cancelled by an operator", 21);
    assert_eq!(cancelled.await.unwrap(), 1200);
    let one = store.notices_of("T0007", "outage").await.unwrap();
    assert_eq!(one[0].reason.as_deref(), Some("cancelled by an operator"));
    let left = store
        .refill(&[], claim(10), &[], 30, |c| (Vec::new(), c.notices))
        .await
        .unwrap();
    assert!(left.is_empty(), "nothing to claim: {left:?}");
    assert_eq!(
        staged_rows(backend, &url).await,
        (0, 0),
        "the empty batch is gone"
    );
}

/// Two daemons' claims on one outbox of 1,500 waiting notices (staged on PostgreSQL), taken
/// at the same time: together they claim every notice, and no notice twice.
async fn two_claimers_share_a_large_fan_out_without_overlap(backend: Backend) {
    let (_store, url, _dir) = fanned_out(backend, "D", "F-SHARE", 1500).await;
    // Both take a first claim before either goes on, so both take part on SQLite too, whose
    // claims take turns.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let claimer = |url: String| {
        let barrier = barrier.clone();
        async move {
            let store = faultline::store::Store::connect(&url, 2).await.unwrap();
            let mut request = claim(64);
            let mut mine = claim_once(&store, &mut request).await;
            barrier.wait().await;
            mine.extend(claim_the_rest(&store, &mut request).await);
            mine
        }
    };
    let (a, b) = tokio::join!(claimer(url.clone()), claimer(url.clone()));
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both claimed: {} and {}",
        a.len(),
        b.len()
    );
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    all.sort_unstable();
    let claimed = all.len();
    all.dedup();
    assert_eq!(
        (claimed, all.len()),
        (1500, 1500),
        "each notice claimed once"
    );
}

const ETR_ON_OUTAGE: faultline::store::Dependency = faultline::store::Dependency {
    kind: "etr_update",
    variant: None,
    on: "outage",
};

/// An `etr_update` claimed while its outage notice still waits (staged, on PostgreSQL) sees
/// that outage notice as queued, so it gives way to it.
async fn a_waiting_outage_notice_is_related_as_queued(backend: Backend) {
    let (store, _url, _dir) = fanned_out(backend, "E", "F-ETR", 1200).await;
    let etr = faultline::store::NoticeIntent {
        kind: "etr_update",
        variant: "1700000000000".into(),
        ..outage_intent("E0042".into(), "F-ETR", 0, 1)
    };
    store.create_notices(&[etr], 2).await.unwrap();
    let related = store
        .refill(&[], claim(1), &[ETR_ON_OUTAGE], 10, |c| {
            assert_eq!(c.notices[0].kind, "etr_update");
            (Vec::new(), c.related)
        })
        .await
        .unwrap();
    let states: Vec<(&str, &str)> = related
        .iter()
        .map(|r| (r.customer_id.as_str(), r.state.as_str()))
        .collect();
    assert_eq!(states, [("E0042", "queued")]);
}

both_backends!(
    a_waiting_outage_notice_is_related_as_queued,
    a_momentary_outage_of_a_large_fault_sends_nothing,
    two_claimers_share_a_large_fan_out_without_overlap,
    a_large_fan_out_is_one_outbox_whether_staged_or_not,
    a_large_notice_set_creates_only_the_notices_not_there_yet,
    a_refill_records_what_it_ends_in_the_claims_transaction,
    a_claim_after_a_cursor_takes_what_follows_it_then_the_front,
    the_wal_position_grows_with_writes_on_postgres,
    a_shrinking_fault_restores_the_customers_it_lets_go,
    overlapping_faults_make_one_outage_and_one_restoration_notice,
    a_momentary_outage_sends_nothing,
    episodes_survive_a_restart,
);
