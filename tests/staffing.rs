//! Crew assignment: the sparse exact solver against an independent dense Hungarian algorithm on
//! hundreds of seeded instances (scarce ones included), incremental re-solves after every kind
//! of change, validity on the
//! sample staff, reallocation to a more critical fault, and pinned overrides.

use std::collections::HashSet;

use faultline::bench::staffing::{instance, rows};
use faultline::domain::{Coord, FaultId, Skill, SkillLevel, StaffStatus};
use faultline::staffing::plan::{self, Person, Pin, Slot, SlotKey, Weights};
use faultline::staffing::reference::{greedy, hungarian};
use faultline::staffing::rules::needs;
use faultline::staffing::solver::{Row, Solver};
use faultline::staffing::warm::{Solve, WarmPlanner};
use rand::{Rng, SeedableRng};

/// A random sparse instance: costs in a narrow range (many ties) or a wide one, some rows with
/// no arcs, unfilled costs sometimes below the arcs' (leaving a slot open is then cheaper).
fn random_rows(seed: u64) -> (usize, Vec<Row>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let staff = rng.random_range(1..=14);
    let n = rng.random_range(1..=12);
    let spread = if rng.random_bool(0.5) { 5 } else { 10_000 };
    let density = rng.random_range(0.1..1.0);
    let rows = (0..n)
        .map(|_| Row {
            arcs: (0..staff as u32)
                .filter_map(|j| {
                    let cost = rng.random_range(0..spread);
                    rng.random_bool(density).then_some((j, cost))
                })
                .collect(),
            unfilled: rng.random_range(0..spread * 2),
        })
        .collect();
    (staff, rows)
}

fn valid(staff: usize, rows: &[Row], assigned: &[Option<usize>], cost: i64) {
    let mut used = HashSet::new();
    let mut total = 0;
    for (row, a) in rows.iter().zip(assigned) {
        match a {
            Some(j) => {
                assert!(*j < staff && used.insert(*j), "no one twice");
                let arc = row.arcs.iter().find(|(col, _)| *col as usize == *j);
                total += arc.expect("only along an arc").1;
            }
            None => total += row.unfilled,
        }
    }
    assert_eq!(total, cost, "the reported cost is the assignment's");
}

#[test]
fn equal_cost_to_the_hungarian_algorithm_on_500_seeded_instances() {
    for seed in 0..500 {
        let (staff, rows) = random_rows(seed);
        let solver = Solver::solve(staff, rows.clone());
        let (_, reference) = hungarian(staff, &rows);
        assert_eq!(solver.total_cost(), reference, "seed {seed}");
        assert!(solver.certify(), "seed {seed}: certificate");
        valid(staff, &rows, &solver.assignment(), solver.total_cost());
        let (g, greedy_cost) = greedy(staff, &rows);
        valid(staff, &rows, &g, greedy_cost);
        assert!(greedy_cost >= reference, "seed {seed}");
    }
}

#[test]
fn equal_cost_on_seeded_storms_ample_and_scarce() {
    let w = Weights {
        candidates: usize::MAX,
        ..Weights::default()
    };
    for seed in 0..40 {
        for scarcity in [1.0, 8.0] {
            let (slots, people) = instance(seed, 30, 25, scarcity);
            let rows = rows(&slots, &people, &w);
            let solver = Solver::solve(people.len(), rows.clone());
            assert_eq!(
                solver.total_cost(),
                hungarian(people.len(), &rows).1,
                "seed {seed}"
            );
            if scarcity > 1.0 {
                let filled = solver.assignment().iter().flatten().count();
                assert!(filled <= people.len());
            }
        }
    }
}

#[test]
fn adding_rows_to_a_solved_problem_equals_solving_it_whole() {
    for seed in 0..200 {
        let (staff, rows) = random_rows(1000 + seed);
        let half = rows.len() / 2;
        let mut warm = Solver::solve(staff, rows[..half].to_vec());
        for row in &rows[half..] {
            warm.add_row(row.clone());
        }
        assert_eq!(warm.total_cost(), hungarian(staff, &rows).1, "seed {seed}");
        assert!(warm.certify());
    }
}

/// Every kind of change a storm makes, applied to a solved problem one at a time, each followed
/// by a check against the Hungarian reference on the problem as it now stands: a new slot (a
/// fault arrives or grows), a slot whose costs change (its priority moves, its disruption term
/// moves to newly dispatched people), a slot that loses or gains candidates (someone declines,
/// goes off duty, is pinned elsewhere, comes back), and a slot that ends (a fault shrinks or is
/// restored).
#[test]
fn every_kind_of_change_re_solved_incrementally_equals_the_reference() {
    for seed in 0..300 {
        let (staff, mut rows) = random_rows(5000 + seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut warm = Solver::solve(staff, rows.clone());
        for step in 0..12 {
            let r = rng.random_range(0..rows.len());
            let change = rng.random_range(0..5);
            match change {
                0 => {
                    let (_, more) = random_rows(9000 + seed * 16 + step);
                    let row = Row {
                        arcs: more[0]
                            .arcs
                            .iter()
                            .filter(|a| (a.0 as usize) < staff)
                            .copied()
                            .collect(),
                        unfilled: more[0].unfilled,
                    };
                    rows.push(row.clone());
                    warm.add_row(row);
                }
                1 => {
                    let row = &mut rows[r];
                    let factor = rng.random_range(0..4);
                    row.arcs
                        .iter_mut()
                        .for_each(|a| a.1 = a.1 * factor + rng.random_range(0..7));
                    row.unfilled = rng.random_range(0..20_000);
                    warm.replace_row(r, row.clone());
                }
                2 if !rows[r].arcs.is_empty() => {
                    let gone = rng.random_range(0..rows[r].arcs.len());
                    rows[r].arcs.remove(gone);
                    warm.replace_row(r, rows[r].clone());
                }
                3 => {
                    let j = rng.random_range(0..staff as u32);
                    rows[r].arcs.retain(|a| a.0 != j);
                    rows[r].arcs.push((j, rng.random_range(0..50)));
                    warm.replace_row(r, rows[r].clone());
                }
                _ => {
                    rows[r] = Row::default();
                    warm.replace_row(r, Row::default());
                }
            }
            let what = format!("seed {seed}, step {step}, change {change}");
            assert_eq!(warm.total_cost(), hungarian(staff, &rows).1, "{what}");
            assert!(warm.certify(), "{what}");
            valid(staff, &rows, &warm.assignment(), warm.total_cost());
        }
    }
}

/// The daemon's warm planner through a storm's re-plans — faults arriving, a fault's priority
/// rising, people going off duty and coming back, a pin, a dispatched crew's disruption term,
/// faults ending — reaches the cold plan's cost every time, and keeps the pin.
#[test]
fn the_warm_planner_equals_a_cold_plan_through_a_storm() {
    let w = Weights::default();
    for seed in 0..12 {
        let (all_slots, mut people) =
            instance(seed, 300, 160, if seed % 2 == 0 { 0.0 } else { 0.9 });
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut warm = WarmPlanner::default();
        let mut slots: Vec<Slot> = all_slots[..80].to_vec();
        let mut pins: Vec<Pin> = Vec::new();
        for step in 0..10 {
            match step {
                0 => {}
                1 | 2 => slots.extend_from_slice(&all_slots[40 + 40 * step..80 + 40 * step]),
                3 => slots.iter_mut().take(10).for_each(|s| s.priority *= 3),
                4 => people
                    .iter_mut()
                    .take(15)
                    .for_each(|p| p.status = StaffStatus::OffDuty),
                5 => people.iter_mut().take(15).for_each(|p| {
                    p.status = StaffStatus::OnShift;
                    p.at.lon += 0.05; // and they report from somewhere else
                }),
                6 => {
                    let plan = warm.plan(&slots, &people, &pins, &w);
                    let a = &plan.assignments[rng.random_range(0..plan.assignments.len())];
                    pins.push(Pin {
                        slot: a.slot.clone(),
                        staff: a.staff.clone(),
                    });
                }
                7 => {
                    let plan = warm.plan(&slots, &people, &pins, &w);
                    for a in plan.assignments.iter().take(5) {
                        let p = people.iter_mut().find(|p| p.id == a.staff).unwrap();
                        p.current = Some(a.slot.clone());
                    }
                }
                _ => {
                    let gone = rng.random_range(0..slots.len() - 10);
                    // Ten faults' slots end; the pinned one stays (its pin is step 6's).
                    let ended: Vec<SlotKey> = slots[gone..]
                        .iter()
                        .filter(|s| pins.iter().all(|p| p.slot != s.key))
                        .take(10)
                        .map(|s| s.key.clone())
                        .collect();
                    slots.retain(|s| !ended.contains(&s.key));
                }
            }
            // As in the daemon: a pin ends with its slot.
            pins.retain(|p| slots.iter().any(|s| s.key == p.slot));
            let (got, how) = warm.plan_with(&slots, &people, &pins, &w);
            let cold = plan::plan(&slots, &people, &pins, &w);
            assert_eq!(got.cost, cold.cost, "seed {seed}, step {step} ({how:?})");
            assert_eq!(
                got.unfilled.len(),
                cold.unfilled.len(),
                "seed {seed}, step {step}"
            );
            for pin in &pins {
                let kept = got
                    .assignments
                    .iter()
                    .any(|a| a.slot == pin.slot && a.staff == pin.staff);
                assert!(kept, "seed {seed}, step {step}: the pin stands");
            }
            let mut busy = HashSet::new();
            assert!(
                got.assignments.iter().all(|a| busy.insert(a.staff.clone())),
                "no one twice"
            );
            // Faults arriving, a priority rising and faults ending touch a few rows: those
            // re-plans are warm. (A change to many people's terms may go cold; both are exact.)
            if let (1 | 2, Solve::Warm { searched, .. }) = (step, how) {
                assert_eq!(searched, 40, "only the new fault's slots are searched");
            }
            if [1, 2, 3, 8, 9].contains(&step) {
                assert!(
                    matches!(how, Solve::Warm { .. }),
                    "seed {seed}, step {step}: {how:?}"
                );
            }
        }
    }
}

fn sample_people() -> Vec<Person> {
    let text = std::fs::read_to_string("samples/staff.csv").unwrap();
    let report = faultline::directory::parse_staff(&text).unwrap();
    assert!(report.errors.is_empty());
    report.rows.iter().map(Person::from_record).collect()
}

fn slots_for(fault: &str, at: Coord, cause: &str, severity: &str, priority: i64) -> Vec<Slot> {
    let severity = serde_json::from_str(&format!("\"{severity}\"")).unwrap();
    let needs = needs(
        &faultline::config::Settings::defaults().staffing.rules,
        cause,
        severity,
        &Default::default(),
    );
    let mut seen = std::collections::HashMap::new();
    needs
        .into_iter()
        .map(|n| {
            let index = seen.entry(n.skill).or_insert(0u16);
            *index += 1;
            Slot {
                key: SlotKey {
                    fault: FaultId::parse(fault).unwrap(),
                    skill: n.skill,
                    index: *index,
                },
                min_level: n.min_level,
                at,
                priority,
            }
        })
        .collect()
}

#[test]
fn assignments_on_the_sample_staff_respect_every_hard_constraint() {
    let mut people = sample_people();
    // Some are past their fatigue limit.
    for p in people.iter_mut().step_by(7) {
        p.hours_worked = p.max_shift_hours;
    }
    let schwerin = Coord {
        lon: 11.41,
        lat: 53.63,
    };
    let mut slots = Vec::new();
    for (i, (cause, severity)) in [
        ("tree", "major"),
        ("equipment", "minor"),
        ("storm", "critical"),
    ]
    .iter()
    .cycle()
    .take(24)
    .enumerate()
    {
        let at = Coord {
            lon: schwerin.lon + 0.02 * i as f64,
            lat: schwerin.lat + 0.01 * (i % 5) as f64,
        };
        slots.extend(slots_for(
            &format!("F-{i}"),
            at,
            cause,
            severity,
            10 + i as i64,
        ));
    }
    let plan = plan::plan(&slots, &people, &[], &Weights::default());
    assert_eq!(plan.assignments.len() + plan.unfilled.len(), slots.len());
    assert!(!plan.assignments.is_empty());
    let mut booked = HashSet::new();
    for a in &plan.assignments {
        let slot = slots.iter().find(|s| s.key == a.slot).unwrap();
        let p = people.iter().find(|p| p.id == a.staff).unwrap();
        assert!(booked.insert(&p.id), "{} booked twice", p.id);
        assert_ne!(p.status, StaffStatus::OffDuty, "{} is off duty", p.id);
        assert!(
            p.hours_worked < p.max_shift_hours,
            "{} is past the fatigue limit",
            p.id
        );
        assert!(
            p.skills
                .iter()
                .any(|(s, l)| *s == slot.key.skill && l.get() >= slot.min_level.get()),
            "{} lacks {:?} ≥ {}",
            p.id,
            slot.key.skill,
            slot.min_level.get()
        );
        assert_eq!(
            a.terms.total,
            plan::terms(p, slot, &Weights::default()).total
        );
    }
    // An unfilled slot means nobody qualified was left over.
    for key in &plan.unfilled {
        let slot = slots.iter().find(|s| &s.key == key).unwrap();
        assert!(
            !people
                .iter()
                .any(|p| !booked.contains(&p.id) && plan::qualified(p, slot)),
            "{key:?} left open while someone qualified was free"
        );
    }
}

fn lineworker(id: &str, lon: f64) -> Person {
    Person {
        id: faultline::domain::StaffId::parse(id).unwrap(),
        skills: vec![(Skill::Lineworker, SkillLevel::new(3).unwrap())],
        at: Coord { lon, lat: 53.5 },
        status: StaffStatus::OnShift,
        hours_worked: 0.0,
        max_shift_hours: 12.0,
        current: None,
        declined: Vec::new(),
    }
}

fn one_slot(fault: &str, lon: f64, priority: i64) -> Slot {
    Slot {
        key: SlotKey {
            fault: FaultId::parse(fault).unwrap(),
            skill: Skill::Lineworker,
            index: 1,
        },
        min_level: SkillLevel::MIN,
        at: Coord { lon, lat: 53.5 },
        priority,
    }
}

#[test]
fn a_more_critical_fault_takes_the_crew_and_a_pin_keeps_it() {
    let w = Weights::default();
    let mut people = vec![lineworker("S1", 11.0)];
    let minor = one_slot("MINOR-1", 11.01, 5);
    let first = plan::plan(std::slice::from_ref(&minor), &people, &[], &w);
    assert_eq!(first.assignments[0].staff.as_str(), "S1");

    // A hazard far away arrives: moving S1 costs a disruption and 50 km, but an unfilled
    // hazard costs far more.
    people[0].current = Some(minor.key.clone());
    let hazard = one_slot("HAZARD-1", 11.75, 1_000_000);
    let second = plan::plan(&[minor.clone(), hazard.clone()], &people, &[], &w);
    let taken = second
        .assignments
        .iter()
        .find(|a| a.staff.as_str() == "S1")
        .unwrap();
    assert_eq!(taken.slot, hazard.key, "reallocated to the hazard");
    assert!(
        taken.terms.disruption > 0,
        "the move's disruption is on record"
    );
    assert_eq!(second.unfilled, vec![minor.key.clone()]);

    // The coordinator pins S1 to the minor fault: re-solving keeps it.
    let pin = Pin {
        slot: minor.key.clone(),
        staff: people[0].id.clone(),
    };
    let third = plan::plan(&[minor.clone(), hazard.clone()], &people, &[pin], &w);
    let kept = third
        .assignments
        .iter()
        .find(|a| a.slot == minor.key)
        .unwrap();
    assert!(kept.pinned && kept.staff.as_str() == "S1");
    assert_eq!(third.unfilled, vec![hazard.key]);
}

#[test]
fn nearest_qualified_wins_and_on_call_costs_more() {
    let w = Weights::default();
    let near_on_call = Person {
        status: StaffStatus::OnCall,
        ..lineworker("NEAR", 11.0)
    };
    let a_bit_further = lineworker("FURTHER", 11.005); // ≈ 330 m more
    let slot = one_slot("F-1", 10.99, 1);
    let plan = plan::plan(
        std::slice::from_ref(&slot),
        &[near_on_call.clone(), a_bit_further],
        &[],
        &w,
    );
    assert_eq!(
        plan.assignments[0].staff.as_str(),
        "FURTHER",
        "on call costs 20 km-equivalents"
    );
    let far = lineworker("FAR", 11.9);
    let plan = plan::plan(&[slot], &[near_on_call, far], &[], &w);
    assert_eq!(plan.assignments[0].staff.as_str(), "NEAR", "but not 60 km");
    assert!(plan.assignments[0].terms.on_call > 0);
}

#[test]
fn the_nearest_qualified_walk_keeps_exactly_the_cheapest_candidates() {
    let w = Weights {
        candidates: 8,
        ..Weights::default()
    };
    for seed in 0..20 {
        let (slots, mut people) = instance(seed, 300, 60, 1.0);
        for p in people.iter_mut().step_by(3) {
            p.status = StaffStatus::OnCall; // the on-call term reorders neighbours by cost
        }
        let refs: Vec<&Person> = people.iter().collect();
        let candidates = plan::Candidates::new(&refs);
        for slot in &slots {
            let mut walked: Vec<i64> = candidates.row(slot, &w).arcs.iter().map(|a| a.1).collect();
            let mut brute: Vec<i64> = people
                .iter()
                .filter(|p| plan::qualified(p, slot))
                .map(|p| plan::terms(p, slot, &w).total)
                .collect();
            brute.sort_unstable();
            brute.truncate(w.candidates);
            walked.sort_unstable();
            assert_eq!(walked, brute, "seed {seed}, {:?}", slot.key);
        }
    }
}
