//! ETR updates (appeared, or at least `notify.etr_change_minutes` from the one last announced,
//! and the "still working on it" follow-up when an ETR passes), planned-outage advance notices at
//! their offsets, and the cancellation notice, on a manual clock and the real broker and
//! databases. The customers prefer SMS, so the short SMS wording (local times, one segment) is
//! what the log records.

mod common;

use common::*;

const CUSTOMERS: &str = "customer_id,name,lon,lat,phone,email,push_token,language,channels,quiet_hours,timezone,critical,feeder,service_point\n\
    K1,A. Anders,11.80,53.40,+4915100000021,,,en,sms,,Europe/Berlin,,TS-1,TS-1 Bus 1\n\
    K2,B. Berger,11.80,53.40,+4915100000022,,,de,sms,,Europe/Berlin,,TS-1,TS-1 Bus 2\n\
    K3,C. Chen,11.80,53.40,+4915100000023,,,zh,sms,,Europe/Berlin,,TS-2,TS-2 Bus 1\n";

type Kit = LogDaemon;

async fn start(backend: Backend, now: &str) -> Kit {
    log_daemon(backend, CUSTOMERS, now.parse().unwrap(), |_| {}).await
}

impl Kit {
    async fn applied(&self, n: i64) {
        wait_events(&self.store, n).await;
    }

    /// Bodies the log channel wrote for `kind`, by customer.
    fn bodies(&self, kind: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = read_lines(&self.log)
            .into_iter()
            .filter(|l| l["kind"] == kind)
            .map(|l| {
                (
                    l["customer_id"].as_str().unwrap().to_owned(),
                    l["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

fn event(id: &str, fault: &str, kind: &str, seq: u32, at: &str, extra: &str) -> String {
    format!(
        r#"{{"v":1,"event_id":"{id}","fault_id":"{fault}","kind":"{kind}","seq":{seq},"occurred_at":"{at}"{extra}}}"#
    )
}

async fn etr_updates_and_follow_ups(backend: Backend) {
    let kit = start(backend, "2026-11-24T11:00:00Z").await;
    let devices = r#","devices":["TS-1"]"#;
    kit.publish(
        "E-1",
        &[event(
            "e1",
            "E-1",
            "detected",
            1,
            "2026-11-24T10:00:00Z",
            &format!(r#","cause":"storm","etr":"2026-11-24T14:00:00Z"{devices}"#),
        )],
    )
    .await;
    wait_for_notices(&kit.store, "E-1", "outage", "sent", 2).await;

    // Ten minutes later than before: below the 30-minute threshold, nobody is told.
    kit.publish(
        "E-1",
        &[event(
            "e2",
            "E-1",
            "updated",
            2,
            "2026-11-24T10:30:00Z",
            r#","etr":"2026-11-24T14:10:00Z""#,
        )],
    )
    .await;
    kit.applied(2).await;
    assert_eq!(
        kit.store.notices_per_customer("etr_update").await.unwrap(),
        vec![]
    );

    // 80 minutes later: everyone out on the fault hears the new estimate, in local time.
    kit.publish(
        "E-1",
        &[event(
            "e3",
            "E-1",
            "updated",
            3,
            "2026-11-24T10:45:00Z",
            r#","etr":"2026-11-24T15:30:00Z""#,
        )],
    )
    .await;
    wait_for_notices(&kit.store, "E-1", "etr_update", "sent", 2).await;
    let bodies = kit.bodies("etr_update");
    assert!(bodies[0].1.contains("by 24.11. 16:30"), "{bodies:?}");
    assert!(bodies[1].1.contains("bis 24.11. 16:30"), "{bodies:?}");

    // The ETR passes with the power still out: one follow-up each, however often the job runs.
    kit.clock.set("2026-11-24T15:31:00Z".parse().unwrap());
    assert_eq!(kit.running.jobs.etr_followups().await.unwrap(), 2);
    assert_eq!(kit.running.jobs.etr_followups().await.unwrap(), 0);
    wait_for_notices(&kit.store, "E-1", "etr_update", "sent", 4).await;
    let followups: Vec<_> = kit
        .bodies("etr_update")
        .into_iter()
        .filter(|(_, b)| b.contains("still working") || b.contains("arbeiten weiter"))
        .collect();
    assert_eq!(followups.len(), 2, "{followups:?}");

    kit.publish(
        "E-1",
        &[event(
            "e4",
            "E-1",
            "restored",
            4,
            "2026-11-24T15:31:00Z",
            "",
        )],
    )
    .await;
    wait_for_notices(&kit.store, "E-1", "restored", "sent", 2).await;
    assert_eq!(
        kit.store.notices_per_customer("etr_update").await.unwrap(),
        vec![("K1".to_owned(), 2), ("K2".to_owned(), 2)]
    );

    // Retention: nothing is old enough yet; 91 days on, every body is erased, once.
    assert_eq!(kit.running.jobs.purge().await.unwrap(), 0);
    kit.clock.set("2027-02-24T16:00:00Z".parse().unwrap());
    assert_eq!(kit.running.jobs.purge().await.unwrap(), 8);
    assert_eq!(kit.running.jobs.purge().await.unwrap(), 0);
    kit.running.shutdown().await;
}

async fn planned_advance_notices_and_cancellation(backend: Backend) {
    let kit = start(backend, "2026-11-24T09:00:00Z").await;
    let window = |devices: &str, starts: &str, ends: &str| {
        format!(
            r#","cause":"planned_maintenance","devices":["{devices}"],"starts_at":"{starts}","ends_at":"{ends}""#
        )
    };
    // 47 hours ahead: the 48 h notice is due at once; the 2 h one later.
    kit.publish(
        "P-1",
        &[event(
            "p1",
            "P-1",
            "planned",
            1,
            "2026-11-24T09:00:00Z",
            &window("TS-1", "2026-11-26T08:00:00Z", "2026-11-26T12:00:00Z"),
        )],
    )
    .await;
    // Five days ahead: nothing yet.
    kit.publish(
        "P-3",
        &[event(
            "p3",
            "P-3",
            "planned",
            1,
            "2026-11-24T09:00:00Z",
            &window("TS-2", "2026-11-29T08:00:00Z", "2026-11-29T09:00:00Z"),
        )],
    )
    .await;
    kit.applied(2).await;
    assert_eq!(kit.running.jobs.planned_notices().await.unwrap(), 2);
    wait_for_notices(&kit.store, "P-1", "planned", "sent", 2).await;
    let bodies = kit.bodies("planned");
    assert!(
        bodies[0].1.contains("26.11. 09:00 to about 26.11. 13:00"),
        "{bodies:?}"
    );

    // 90 minutes before the start: the 2 h reminder.
    kit.clock.set("2026-11-26T06:30:00Z".parse().unwrap());
    assert_eq!(kit.running.jobs.planned_notices().await.unwrap(), 2);
    wait_for_notices(&kit.store, "P-1", "planned", "sent", 4).await;

    // Announced an hour ahead: only the nearest reminder, not a late 48 h one.
    kit.publish(
        "P-2",
        &[event(
            "p2",
            "P-2",
            "planned",
            1,
            "2026-11-26T06:30:00Z",
            &window("TS-2", "2026-11-26T07:30:00Z", "2026-11-26T08:00:00Z"),
        )],
    )
    .await;
    kit.applied(3).await;
    assert_eq!(kit.running.jobs.planned_notices().await.unwrap(), 1);
    wait_for_notices(&kit.store, "P-2", "planned", "sent", 1).await;
    let k3 = kit.store.notices_of("K3", "planned").await.unwrap();
    assert_eq!(k3.len(), 1);

    // Cancelled after notices went out: everyone told. Cancelled before any went out: silence.
    kit.publish(
        "P-1",
        &[event(
            "p1c",
            "P-1",
            "cancelled",
            2,
            "2026-11-26T06:30:00Z",
            "",
        )],
    )
    .await;
    kit.publish(
        "P-3",
        &[event(
            "p3c",
            "P-3",
            "cancelled",
            2,
            "2026-11-26T06:30:00Z",
            "",
        )],
    )
    .await;
    kit.applied(5).await;
    wait_for_notices(&kit.store, "P-1", "planned_cancelled", "sent", 2).await;
    wait_for_notices(&kit.store, "P-3", "planned_cancelled", "suppressed", 1).await;
    let cancelled = kit.bodies("planned_cancelled");
    assert!(cancelled[0].1.contains("is cancelled"), "{cancelled:?}");
    assert_eq!(
        kit.store.notices_per_customer("planned").await.unwrap(),
        vec![
            ("K1".to_owned(), 2),
            ("K2".to_owned(), 2),
            ("K3".to_owned(), 1)
        ]
    );
    kit.running.shutdown().await;
}

both_backends!(
    etr_updates_and_follow_ups,
    planned_advance_notices_and_cancellation
);
