//! The outage state machine on its own: overlapping faults, updates, seq, momentary, planned,
//! remapping. A 10×10 grid of customers makes the expected sets easy to see.

use faultline::domain::{Coord, CustomerId, FaultId};
use faultline::ingest::event::{parse_event, FaultEvent, Limits};
use faultline::mapping::{CustomerIndex, MappedCustomer};
use faultline::outage::{
    Applied, EtrNews, FaultState, MemberState, OutageBook, OutageChange, OutageRules,
};

const LIMITS: Limits = Limits {
    max_payload_bytes: 1 << 20,
    max_vertices: 100_000,
};

/// Customers on a 10×10 grid at (i + 0.5, j + 0.5); id "c{i}_{j}", feeder "F{i}".
fn book() -> OutageBook {
    let customers = (0..10)
        .flat_map(|i| (0..10).map(move |j| (i, j)))
        .map(|(i, j)| MappedCustomer {
            id: CustomerId::parse(&format!("c{i}_{j}")).unwrap(),
            at: Coord::new(i as f64 + 0.5, j as f64 + 0.5).unwrap(),
            feeder: Some(format!("F{i}")),
            service_point: None,
            critical: i == 0 && j == 0,
        })
        .collect();
    OutageBook::new(
        CustomerIndex::build(customers),
        OutageRules::new(std::time::Duration::from_secs(300)),
    )
}

fn event(json: &str) -> FaultEvent {
    parse_event(json.as_bytes(), LIMITS).unwrap()
}

fn square(id: &str, kind: &str, seq: u64, at: &str, x0: f64, x1: f64) -> FaultEvent {
    event(&format!(
        r#"{{"v":1,"event_id":"{id}-{seq}-{kind}","fault_id":"{id}","kind":"{kind}","seq":{seq},"occurred_at":"{at}",
           "area":{{"type":"Polygon","coordinates":[[[{x0},0],[{x1},0],[{x1},10],[{x0},10],[{x0},0]]]}}}}"#
    ))
}

fn simple(id: &str, kind: &str, seq: u64, at: &str) -> FaultEvent {
    event(&format!(
        r#"{{"v":1,"event_id":"{id}-{seq}","fault_id":"{id}","kind":"{kind}","seq":{seq},"occurred_at":"{at}"}}"#
    ))
}

fn changed(a: Applied) -> OutageChange {
    match a {
        Applied::Changed(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[test]
fn overlapping_faults_hold_customers_until_the_last_ends() {
    let mut b = book();
    let c1 = changed(b.apply(&square(
        "A",
        "detected",
        1,
        "2026-11-23T10:00:00Z",
        0.0,
        3.0,
    )));
    assert_eq!((c1.joined.len(), c1.now_out.len()), (30, 30));
    let c2 = changed(b.apply(&square(
        "B",
        "detected",
        1,
        "2026-11-23T10:01:00Z",
        2.0,
        5.0,
    )));
    assert_eq!(
        (c2.joined.len(), c2.now_out.len()),
        (30, 20),
        "column 2 was already out"
    );
    assert_eq!(b.customers_out(), 50);
    let r = changed(b.apply(&simple("A", "restored", 2, "2026-11-23T12:00:00Z")));
    assert_eq!(
        (r.left.len(), r.now_back.len()),
        (30, 20),
        "column 2 still out through B"
    );
    assert_eq!(r.left_state, MemberState::Restored);
    assert!(!r.momentary);
    let idx = b
        .index()
        .idx_of(&CustomerId::parse("c2_5").unwrap())
        .unwrap();
    assert!(b.is_out(idx));
    assert_eq!(b.faults_of(idx).len(), 1);
    assert_eq!(
        b.fault(&FaultId::parse("A").unwrap())
            .unwrap()
            .restored_count,
        30
    );
}

#[test]
fn updates_shrink_and_grow_and_stale_seq_is_ignored() {
    let mut b = book();
    changed(b.apply(&square(
        "A",
        "detected",
        1,
        "2026-11-23T10:00:00Z",
        0.0,
        5.0,
    )));
    let shrink = changed(b.apply(&square("A", "updated", 3, "2026-11-23T10:30:00Z", 0.0, 2.0)));
    assert_eq!(
        (
            shrink.joined.len(),
            shrink.left.len(),
            shrink.now_back.len()
        ),
        (0, 30, 30)
    );
    assert!(matches!(
        b.apply(&square("A", "updated", 2, "2026-11-23T10:20:00Z", 0.0, 9.0)),
        Applied::Stale { last_seq: 3 }
    ));
    assert_eq!(b.customers_out(), 20);
    let grow = changed(b.apply(&square("A", "updated", 4, "2026-11-23T10:40:00Z", 0.0, 4.0)));
    assert_eq!((grow.joined.len(), grow.now_out.len()), (20, 20));
    assert_eq!(
        b.fault(&FaultId::parse("A").unwrap())
            .unwrap()
            .restored_count,
        30
    );
}

#[test]
fn devices_etr_and_momentary() {
    let mut b = book();
    let d = event(
        r#"{"v":1,"event_id":"e1","fault_id":"D","kind":"detected","occurred_at":"2026-11-23T10:00:00Z","devices":["F7"],"etr":"2026-11-23T12:00:00Z","severity":"critical"}"#,
    );
    let c = changed(b.apply(&d));
    assert_eq!(c.joined.len(), 10);
    assert!(c.etr_changed);
    let r = changed(b.apply(&simple("D", "restored", 0, "2026-11-23T10:04:00Z")));
    assert!(r.momentary, "restored 4 minutes later is momentary");
    assert!(b.fault(&FaultId::parse("D").unwrap()).unwrap().momentary);
}

/// An `updated` of fault D at minute `m` past 10:00 with the given `etr` JSON value.
fn etr_update(seq: u64, m: u32, etr: &str) -> FaultEvent {
    event(&format!(
        r#"{{"v":1,"event_id":"u{seq}","fault_id":"D","kind":"updated","seq":{seq},"occurred_at":"2026-11-23T10:{m:02}:00Z","etr":{etr}}}"#
    ))
}

#[test]
fn an_etr_slipping_in_small_steps_is_news_once_the_steps_add_up() {
    let mut b = book();
    let d = event(
        r#"{"v":1,"event_id":"e1","fault_id":"D","kind":"detected","seq":1,"occurred_at":"2026-11-23T10:00:00Z","devices":["F7"],"etr":"2026-11-23T12:00:00Z"}"#,
    );
    assert_eq!(
        changed(b.apply(&d)).etr_news,
        None,
        "the outage notices carry it"
    );
    // Six slips of 20 minutes against a 30-minute threshold: news at +40, +80 and +120.
    let mut news = Vec::new();
    for step in 1..=6u32 {
        let etr = format!(
            r#""2026-11-23T{:02}:{:02}:00Z""#,
            12 + step * 20 / 60,
            step * 20 % 60
        );
        let c = changed(b.apply(&etr_update(u64::from(step) + 1, step, &etr)));
        assert!(c.etr_changed, "step {step} changes the ETR");
        news.push(c.etr_news);
    }
    let at = |s: &str| Some(EtrNews::Estimate(s.parse().unwrap()));
    assert_eq!(
        news,
        vec![
            None,
            at("2026-11-23T12:40:00Z"),
            None,
            at("2026-11-23T13:20:00Z"),
            None,
            at("2026-11-23T14:00:00Z"),
        ]
    );
    // A withdrawal is news once; a repeated null is nothing; a new estimate is news again.
    let w = changed(b.apply(&etr_update(8, 7, "null")));
    let was = "2026-11-23T14:00:00Z".parse().unwrap();
    assert_eq!(w.etr_news, Some(EtrNews::Withdrawn { was }));
    assert_eq!(b.fault(&FaultId::parse("D").unwrap()).unwrap().etr, None);
    assert_eq!(changed(b.apply(&etr_update(9, 8, "null"))).etr_news, None);
    let again = changed(b.apply(&etr_update(10, 9, r#""2026-11-23T15:00:00Z""#)));
    assert_eq!(again.etr_news, at("2026-11-23T15:00:00Z"));
    // Leaving `etr` out says nothing about it.
    let quiet = changed(b.apply(&simple("D", "updated", 11, "2026-11-23T10:10:00Z")));
    assert!(!quiet.etr_changed && quiet.etr_news.is_none());
}

#[test]
fn planned_outages_start_on_tick_and_cancel_cleanly() {
    let mut b = book();
    let p = event(
        r#"{"v":1,"event_id":"p1","fault_id":"P","kind":"planned","occurred_at":"2026-11-23T09:00:00Z","devices":["F1"],"starts_at":"2026-11-26T08:00:00Z","ends_at":"2026-11-26T12:00:00Z"}"#,
    );
    let c = changed(b.apply(&p));
    assert_eq!(
        (c.joined.len(), c.joined_state, c.now_out.len()),
        (10, MemberState::Planned, 0)
    );
    assert!(b.tick("2026-11-26T07:59:00Z".parse().unwrap()).is_empty());
    let started = b.tick("2026-11-26T08:00:00Z".parse().unwrap());
    assert_eq!(started.len(), 1);
    assert!(started[0].activated && started[0].now_out.len() == 10);
    assert_eq!(b.customers_out(), 10);

    let q = event(
        r#"{"v":1,"event_id":"q1","fault_id":"Q","kind":"planned","occurred_at":"2026-11-23T09:00:00Z","devices":["F2"],"starts_at":"2026-11-27T08:00:00Z","ends_at":"2026-11-27T12:00:00Z"}"#,
    );
    changed(b.apply(&q));
    let x = changed(b.apply(&simple("Q", "cancelled", 0, "2026-11-24T09:00:00Z")));
    assert_eq!(
        (x.left.len(), x.left_state, x.now_back.len()),
        (10, MemberState::Cancelled, 0)
    );
    assert_eq!(
        b.fault(&FaultId::parse("Q").unwrap()).unwrap().state,
        FaultState::Cancelled
    );
}

#[test]
fn late_detected_after_restored_is_stale() {
    let mut b = book();
    changed(b.apply(&simple("Z", "restored", 5, "2026-11-23T11:00:00Z")));
    assert!(matches!(
        b.apply(&square(
            "Z",
            "detected",
            1,
            "2026-11-23T10:00:00Z",
            0.0,
            1.0
        )),
        Applied::Stale { .. }
    ));
    assert!(matches!(
        b.apply(&simple("Z", "updated", 6, "2026-11-23T11:05:00Z")),
        Applied::Ignored(_)
    ));
    assert_eq!(b.customers_out(), 0);
}

#[test]
fn remap_brings_new_customers_into_open_faults() {
    let mut b = book();
    changed(b.apply(&square(
        "A",
        "detected",
        1,
        "2026-11-23T10:00:00Z",
        0.0,
        1.0,
    )));
    let newcomer = MappedCustomer {
        id: CustomerId::parse("new").unwrap(),
        at: Coord::new(0.2, 0.2).unwrap(),
        feeder: None,
        service_point: None,
        critical: true,
    };
    let changes = b.remap(vec![newcomer], "2026-11-23T10:05:00Z".parse().unwrap());
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].joined.len(), changes[0].now_out.len()), (1, 1));
    assert_eq!(
        b.fault(&FaultId::parse("A").unwrap())
            .unwrap()
            .critical_affected,
        2
    );
}
