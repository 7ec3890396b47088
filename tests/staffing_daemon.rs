//! Staffing inside the daemon, on both databases: a fault's crew is planned from the stored
//! staff as soon as the fault is committed, pinned overrides survive the re-plan that the next
//! event triggers (and are audited), and restoration releases the crew.

mod common;

use std::collections::HashSet;

use common::*;
use faultline::domain::{FaultId, Skill, StaffId, StaffStatus};
use faultline::staffing::plan::SlotKey;

async fn planned_for(app: &TestApp, fault: &str) -> Vec<faultline::store::AssignmentRow> {
    app.store
        .assignments()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.slot.fault.as_str() == fault)
        .collect()
}

async fn dispatched(app: &TestApp, fault: &str) -> Vec<faultline::domain::StaffId> {
    planned_for(app, fault)
        .await
        .into_iter()
        .filter(|a| a.state == "dispatched")
        .filter_map(|a| a.staff_id)
        .collect()
}

async fn crews_follow_faults_and_pins_stick(backend: Backend) {
    let app = spawn_app(backend).await;
    let staff = app.import_staff().await;
    // A critical fault: the shipped rules ask for 2 lineworkers (one ≥ 2), a safety officer ≥ 2
    // and a damage assessor.
    app.publish(&[include_bytes!("../samples/events/detected-radius.json")])
        .await;
    let store = app.store.clone();
    eventually("a crew is planned for F-1002", || {
        let store = store.clone();
        async move {
            store
                .assignments()
                .await
                .unwrap()
                .iter()
                .filter(|a| a.slot.fault.as_str() == "F-1002")
                .count()
                == 4
        }
    })
    .await;
    let plan = planned_for(&app, "F-1002").await;
    let mut people = HashSet::new();
    for a in &plan {
        let id = a
            .staff_id
            .as_ref()
            .expect("the sample staff can fill a critical crew");
        assert!(people.insert(id.clone()), "{id} twice");
        let person = staff.iter().find(|s| &s.id == id).unwrap();
        assert_ne!(person.status, StaffStatus::OffDuty);
        assert!(person
            .skills
            .iter()
            .any(|(s, l)| *s == a.slot.skill && l.get() >= a.min_level));
        assert!(
            a.terms.travel_m > 0 && a.terms.priority >= 1_000_000,
            "{a:?}"
        );
    }

    // The coordinator pins someone else, a level-3 lineworker who is on call, to lineworker #2.
    let chosen: HashSet<&StaffId> = plan.iter().filter_map(|a| a.staff_id.as_ref()).collect();
    let other = staff
        .iter()
        .find(|s| {
            s.status == StaffStatus::OnCall
                && !chosen.contains(&s.id)
                && s.skills
                    .iter()
                    .any(|(k, l)| *k == Skill::Lineworker && l.get() == 3)
        })
        .unwrap();
    let slot = SlotKey {
        fault: FaultId::parse("F-1002").unwrap(),
        skill: Skill::Lineworker,
        index: 2,
    };
    app.store
        .pin(&slot, 1, &other.id, "coordinator:anna", "knows the site", 1)
        .await
        .unwrap();
    // Another fault triggers a re-plan; the pin stays and the pinned person is nowhere else.
    app.publish(&[include_bytes!("../samples/events/detected-devices.json")])
        .await;
    eventually("F-1003 is planned too", || {
        let store = store.clone();
        async move {
            store
                .assignments()
                .await
                .unwrap()
                .iter()
                .any(|a| a.slot.fault.as_str() == "F-1003")
        }
    })
    .await;
    let all = app.store.assignments().await.unwrap();
    let pinned: Vec<_> = all.iter().filter(|a| a.pinned).collect();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].slot, slot);
    assert_eq!(pinned[0].staff_id.as_ref(), Some(&other.id));
    assert_eq!(
        all.iter()
            .filter(|a| a.staff_id.as_ref() == Some(&other.id))
            .count(),
        1,
        "the pinned person is not planned elsewhere"
    );
    let audit = app.store.staffing_audit().await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (
            audit[0].actor.as_str(),
            audit[0].action.as_str(),
            audit[0].reason.as_str()
        ),
        ("coordinator:anna", "pin", "knows the site")
    );

    // Restoration releases the crew, pinned or not.
    let restored = br#"{"v":1,"event_id":"evt-r2","fault_id":"F-1002","kind":"restored","seq":5,"occurred_at":"2026-11-23T18:00:00Z"}"#;
    app.publish(&[restored]).await;
    eventually("F-1002's crew is released", || {
        let store = store.clone();
        async move {
            !store
                .assignments()
                .await
                .unwrap()
                .iter()
                .any(|a| a.slot.fault.as_str() == "F-1002")
        }
    })
    .await;
    assert!(!planned_for(&app, "F-1003").await.is_empty());
}

async fn status_and_position_changes_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_staff().await;
    let id = StaffId::parse("S70001").unwrap();
    let at = faultline::domain::Coord::new(11.5, 53.6).unwrap();
    assert!(app
        .store
        .update_staff(
            &id,
            Some(StaffStatus::OffDuty),
            Some(at),
            "coordinator:ben",
            "sick",
            7
        )
        .await
        .unwrap());
    let states = app.store.staff_states().await.unwrap();
    let s = states.iter().find(|s| s.record.id == id).unwrap();
    assert_eq!((s.record.status, s.at), (StaffStatus::OffDuty, at));
    let unknown = StaffId::parse("NOBODY").unwrap();
    assert!(!app
        .store
        .update_staff(&unknown, Some(StaffStatus::OnShift), None, "x", "y", 8)
        .await
        .unwrap());
    let audit = app.store.staffing_audit().await.unwrap();
    assert_eq!(audit.len(), 1, "only the change that happened is audited");
    assert!(audit[0].detail.contains("off_duty"), "{:?}", audit[0]);
}

/// `faultline staffing …` against this test's database; (success, stdout + stderr).
fn staffing_cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("staffing")
        .args(args)
        .env(
            "FAULTLINE__DATABASE__URL",
            app.settings.database.url.expose(),
        )
        .env("FAULTLINE__LOG__FILTER", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn the_staffing_command_shows_pins_and_releases(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_staff().await;
    app.publish(&[include_bytes!("../samples/events/detected-radius.json")])
        .await;
    let store = app.store.clone();
    eventually("a crew is planned", || {
        let store = store.clone();
        async move { !store.assignments().await.unwrap().is_empty() }
    })
    .await;
    let (ok, shown) = staffing_cli(&app, &["show"]);
    assert!(
        ok && shown.contains("F-1002") && shown.contains("lineworker"),
        "{shown}"
    );
    // The call-centre forecast covers the languages of the customers out.
    let (ok, calls) = staffing_cli(&app, &["calls"]);
    assert!(ok, "{calls}");
    let languages: Vec<&str> = calls.lines().filter(|l| l.contains("calls/h")).collect();
    assert!(!languages.is_empty(), "{calls}");
    assert!(
        languages
            .iter()
            .all(|l| l.contains("Erlang C") && l.contains("gap")),
        "{calls}"
    );
    let pin = [
        "pin",
        "--fault",
        "F-1002",
        "--skill",
        "damage_assessor",
        "--staff",
        "S70002",
        "--by",
        "coordinator:cli",
        "--why",
        "local knowledge",
    ];
    let (ok, out) = staffing_cli(&app, &pin);
    assert!(ok, "{out}");
    let (_, shown) = staffing_cli(&app, &["show"]);
    let line = shown
        .lines()
        .find(|l| l.contains("damage_assessor"))
        .unwrap();
    assert!(line.contains("S70002") && line.contains("pinned"), "{line}");
    let no_slot = [
        "pin",
        "--fault",
        "F-1002",
        "--skill",
        "tree_trimmer",
        "--staff",
        "S70002",
        "--by",
        "x",
        "--why",
        "y",
    ];
    let (ok, out) = staffing_cli(&app, &no_slot);
    assert!(!ok && out.contains("no tree_trimmer slot"), "{out}");
    let (ok, _) = staffing_cli(
        &app,
        &[
            "release",
            "--staff",
            "S70002",
            "--by",
            "coordinator:cli",
            "--why",
            "done",
        ],
    );
    assert!(ok);
    let (ok, out) = staffing_cli(
        &app,
        &[
            "set", "--staff", "NOBODY", "--status", "on_call", "--by", "x", "--why", "y",
        ],
    );
    assert!(!ok && out.contains("no staff member NOBODY"), "{out}");
    let (ok, _) = staffing_cli(
        &app,
        &["rested", "--staff", "S70002", "--by", "coordinator:cli"],
    );
    assert!(ok);
    let actions: Vec<String> = app
        .store
        .staffing_audit()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, vec!["pin", "release", "rested"]);
}

async fn unanswered_dispatches_time_out_and_coordinators_answer_for_staff(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.restart_with(faultline::clock::Clock::System, |s| {
        s.staffing.answer_timeout_mins = 0; // every dispatch times out at the next re-plan
        s.staffing.replan_secs = 1;
    })
    .await;
    app.import_staff().await;
    app.publish(&[include_bytes!("../samples/events/detected-radius.json")])
        .await;
    let store = app.store.clone();
    eventually("someone's dispatch times out", || {
        let store = store.clone();
        async move {
            store
                .staffing_audit()
                .await
                .unwrap()
                .iter()
                .any(|a| a.actor == "timeout" && a.action == "declined")
        }
    })
    .await;
    // With a zero timeout every re-plan expires every dispatch before it stores the next plan,
    // so a reader can catch the plan with nobody dispatched, and a coordinator's answer races
    // the next expiry. A long timeout from here on keeps the plan still for the rest.
    app.restart_with(faultline::clock::Clock::System, |s| {
        s.staffing.answer_timeout_mins = 60;
    })
    .await;
    let declined: HashSet<String> = app
        .store
        .staff_declines()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, staff)| staff)
        .collect();
    assert!(!declined.is_empty(), "the timeouts are kept as declines");
    eventually("someone is dispatched after the timeouts", || async {
        !dispatched(&app, "F-1002").await.is_empty()
    })
    .await;
    let plan = planned_for(&app, "F-1002").await;
    // A timed-out row may still name its person, as `declined`, which records the refusal
    // rather than offering again.
    assert!(
        plan.iter()
            .filter(|a| a.state != "declined")
            .filter_map(|a| a.staff_id.as_ref())
            .all(|s| !declined.contains(s.as_str())),
        "nobody who timed out is offered the fault again"
    );
    // A coordinator accepts for someone dispatched now.
    let dispatched = plan
        .iter()
        .find(|a| a.state == "dispatched")
        .and_then(|a| a.staff_id.clone())
        .expect("someone is dispatched");
    let (ok, out) = staffing_cli(
        &app,
        &[
            "accept",
            "--staff",
            dispatched.as_str(),
            "--by",
            "coordinator:eve",
        ],
    );
    assert!(ok && out.contains("accepted F-1002"), "{out}");
    let (ok, out) = staffing_cli(
        &app,
        &[
            "decline",
            "--staff",
            dispatched.as_str(),
            "--by",
            "coordinator:eve",
        ],
    );
    assert!(!ok && out.contains("no dispatch waiting"), "{out}");
}

async fn on_call_agents_are_called_out_when_calls_surge(backend: Backend) {
    let mut app = spawn_app(backend).await;
    // A call-heavy storm: more calls than the agents on shift can answer.
    app.restart_with(faultline::clock::Clock::System, |s| {
        s.staffing.call_center.calls_per_customer = 20.0;
        s.staffing.replan_secs = 1;
    })
    .await;
    let staff = app.import_staff().await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let event = format!(
        r#"{{"v":1,"event_id":"surge-1","fault_id":"S-9","kind":"detected","occurred_at":"{now}","cause":"storm","area":{{"type":"Point","coordinates":[11.83,53.44]}},"radius_m":3000}}"#
    );
    app.publish(&[event.as_bytes()]).await;
    let store = app.store.clone();
    let surge = || {
        let store = store.clone();
        async move {
            store
                .assignments()
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.slot.fault.as_str().starts_with("call-centre:"))
                .collect::<Vec<_>>()
        }
    };
    eventually("on-call agents are called out", || async {
        surge().await.iter().any(|a| a.state == "dispatched")
    })
    .await;
    let called = surge().await;
    for a in &called {
        let id = a.staff_id.as_ref().unwrap();
        let person = staff.iter().find(|s| &s.id == id).unwrap();
        assert_eq!(person.status, StaffStatus::OnCall, "{id} was on call");
        assert!(person.skills.iter().any(|(s, _)| *s == Skill::CallCenter));
        let language = a.slot.fault.as_str().split(':').nth(1).unwrap();
        assert!(
            person.languages.iter().any(|l| l.as_str() == language),
            "{id} speaks {language}"
        );
    }
    let fault = called[0].slot.fault.as_str().to_owned();
    assert!(
        app.store
            .count_notices(Some(&fault), "callout", "queued")
            .await
            .unwrap()
            > 0,
        "call-outs wait in the outbox (no channel in this test)"
    );
    // One declines: they are not asked again today.
    let who = called[0].staff_id.clone().unwrap();
    let (ok, out) = staffing_cli(
        &app,
        &[
            "decline",
            "--staff",
            who.as_str(),
            "--by",
            "coordinator:eve",
        ],
    );
    assert!(ok, "{out}");
    eventually("the decliner is off the call-out list", || async {
        let rows = surge().await;
        !rows.is_empty() && rows.iter().all(|a| a.staff_id.as_ref() != Some(&who))
    })
    .await;
}

async fn answers_given_while_a_plan_is_computed_survive_its_save(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.import_staff().await;
    app.publish(&[include_bytes!("../samples/events/detected-radius.json")])
        .await;
    eventually("two people are dispatched", || async {
        dispatched(&app, "F-1002").await.len() >= 2
    })
    .await;
    // No re-plan of the daemon's own from here: the test plays the re-plan.
    app.stop().await;
    app.store = faultline::store::Store::connect(app.settings.database.url.expose(), 2)
        .await
        .unwrap();
    let read = app.store.assignments().await.unwrap();
    let people = dispatched(&app, "F-1002").await;
    let (yes, no) = (&people[0], &people[1]);
    let now = chrono::Utc::now().timestamp_millis();
    for (who, accept) in [(yes, true), (no, false)] {
        let answered = app.store.answer_dispatch(who, accept, "sms", now).await;
        assert!(
            answered.unwrap().is_some(),
            "{who:?} had a dispatch waiting"
        );
    }
    // The re-plan stores what it computed from its earlier read: both still `dispatched`.
    let unpinned: Vec<_> = read.into_iter().filter(|a| !a.pinned).collect();
    app.store.save_plan(&unpinned, now + 1).await.unwrap();
    let after = planned_for(&app, "F-1002").await;
    let state_of = |who| {
        after
            .iter()
            .find(|a| a.staff_id.as_ref() == Some(who))
            .map(|a| (a.state.as_str(), a.answered_at))
    };
    assert_eq!(state_of(yes), Some(("accepted", Some(now))));
    assert_eq!(state_of(no), Some(("declined", Some(now))));
    // Answered once: nothing waits for either of them any more.
    for who in [yes, no] {
        let again = app.store.answer_dispatch(who, true, "sms", now).await;
        assert_eq!(again.unwrap(), None, "{who:?} has no dispatch waiting");
    }
}

both_backends!(
    answers_given_while_a_plan_is_computed_survive_its_save,
    crews_follow_faults_and_pins_stick,
    status_and_position_changes_are_audited,
    the_staffing_command_shows_pins_and_releases,
    unanswered_dispatches_time_out_and_coordinators_answer_for_staff,
    on_call_agents_are_called_out_when_calls_surge
);
