//! `faultline bench staffing`: seeded storms of slots and staff; the sparse exact solver side by
//! side with the dense Hungarian algorithm and greedy nearest-qualified.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::domain::{Coord, FaultId, Skill, SkillLevel, StaffId, StaffStatus};
use crate::staffing::plan::{self, Person, Slot, SlotKey, Weights};
use crate::staffing::reference;
use crate::staffing::solver::{Row, Solver};
use crate::staffing::warm::WarmPlanner;

/// The five field skills of the benchmark (call-centre agents are a pool, not slots).
pub const SKILLS: [Skill; 5] = [
    Skill::Lineworker,
    Skill::TreeTrimmer,
    Skill::SubstationTech,
    Skill::SafetyOfficer,
    Skill::DamageAssessor,
];

/// A seeded storm: `slots` slots over faults of 1–6 slots each, `staff` people around an area
/// of about 100 × 100 km. Each person has one main skill and, one time in three, a second
/// (cross-training); `scarcity` > 1 thins the people who hold the first skill (lineworkers),
/// so that slots must stay unfilled.
pub fn instance(seed: u64, staff: usize, slots: usize, scarcity: f64) -> (Vec<Slot>, Vec<Person>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let coord = |rng: &mut rand::rngs::StdRng| Coord {
        lon: rng.random_range(11.0..12.5),
        lat: rng.random_range(53.0..54.0),
    };
    let level = |rng: &mut rand::rngs::StdRng| SkillLevel::new(rng.random_range(1..=3)).ok();
    let mut out = Vec::with_capacity(slots);
    let mut fault = 0;
    while out.len() < slots {
        fault += 1;
        let at = coord(&mut rng);
        let priority = rng.random_range(1..=1000);
        let Ok(id) = FaultId::parse(&format!("B-{fault}")) else {
            continue;
        };
        for index in 0..rng.random_range(1..=6u16).min((slots - out.len()) as u16) {
            let skill = SKILLS[rng.random_range(0..SKILLS.len())];
            let min_level = if rng.random_bool(0.3) { 2 } else { 1 };
            out.push(Slot {
                key: SlotKey {
                    fault: id.clone(),
                    skill,
                    index,
                },
                min_level: SkillLevel::new(min_level).unwrap_or(SkillLevel::MIN),
                at,
                priority,
            });
        }
    }
    let mut people = Vec::with_capacity(staff);
    while people.len() < staff {
        let main = SKILLS[rng.random_range(0..SKILLS.len())];
        if main == Skill::Lineworker && rng.random_bool(1.0 - 1.0 / scarcity.max(1.0)) {
            continue;
        }
        let mut skills: Vec<(Skill, SkillLevel)> =
            level(&mut rng).map(|l| (main, l)).into_iter().collect();
        if rng.random_bool(1.0 / 3.0) {
            let other = SKILLS[rng.random_range(0..SKILLS.len())];
            let thinned =
                other == Skill::Lineworker && rng.random_bool(1.0 - 1.0 / scarcity.max(1.0));
            if let (true, false, Some(l)) = (other != main, thinned, level(&mut rng)) {
                skills.push((other, l));
            }
        }
        let status = match rng.random_range(0..10) {
            0..=5 => StaffStatus::OnShift,
            6..=8 => StaffStatus::OnCall,
            _ => StaffStatus::OffDuty,
        };
        let Ok(id) = StaffId::parse(&format!("P{:05}", people.len())) else {
            continue;
        };
        people.push(Person {
            id,
            skills,
            at: coord(&mut rng),
            status,
            hours_worked: rng.random_range(0.0..10.0),
            max_shift_hours: 16.0,
            current: None,
            declined: Vec::new(),
        });
    }
    (out, people)
}

/// The solver's rows for an instance (every qualified person an arc when `candidates` is
/// `usize::MAX`).
pub fn rows(slots: &[Slot], people: &[Person], w: &Weights) -> Vec<Row> {
    let refs: Vec<&Person> = people.iter().collect();
    let candidates = plan::Candidates::new(&refs);
    slots.iter().map(|s| candidates.row(s, w)).collect()
}

/// How the bench is run.
#[derive(Debug, Clone)]
pub struct StaffingArgs {
    pub staff: usize,
    pub slots: usize,
    pub seed: u64,
    /// Also time the dense Hungarian algorithm on the full instance (minutes at 5,000 × 2,000).
    pub hungarian: bool,
}

/// Runs the benchmark and prints what it measured.
pub fn staffing(args: &StaffingArgs) {
    let w = Weights::default();
    for (name, scarcity) in [("ample", 1.0), ("scarce lineworkers", 20.0)] {
        let (slots, people) = instance(args.seed, args.staff, args.slots, scarcity);
        let (built, sparse) = timed(|| rows(&slots, &people, &w));
        let arcs: usize = sparse.iter().map(|r| r.arcs.len()).sum();
        let (solve, solver) = timed(|| Solver::solve(people.len(), sparse.clone()));
        let certified = solver.certify();
        // One more fault of five slots, augmented from the solved state.
        let (new_slots, _) = instance(args.seed + 1, 0, 5, scarcity);
        let refs: Vec<&Person> = people.iter().collect();
        let candidates = plan::Candidates::new(&refs);
        let mut warm = solver.clone();
        let (incremental, ()) = timed(|| {
            for s in &new_slots {
                warm.add_row(candidates.row(s, &w));
            }
        });
        // The daemon's whole re-plan (candidates rebuilt for every slot, then the warm solve)
        // against planning afresh, after the same new fault.
        let mut grown = slots.clone();
        for s in &new_slots {
            let mut s = s.clone();
            s.key.fault =
                FaultId::parse(&format!("NEW-{}", s.key.fault.as_str())).unwrap_or(s.key.fault);
            grown.push(s);
        }
        let mut planner = WarmPlanner::default();
        planner.plan(&slots, &people, &[], &w);
        let (replan_warm, (_, how)) = timed(|| planner.plan_with(&grown, &people, &[], &w));
        let (replan_cold, _) = timed(|| plan::plan(&grown, &people, &[], &w));
        // Then the busiest person goes off duty (a decline, a status change).
        let mut fewer = people.clone();
        if let Some(j) = solver.assignment().into_iter().flatten().next() {
            fewer[j].status = StaffStatus::OffDuty;
        }
        let (off_warm, (_, off_how)) = timed(|| planner.plan_with(&grown, &fewer, &[], &w));
        let (greedy_time, (_, greedy_cost)) =
            timed(|| reference::greedy(people.len(), &by_priority(&slots, &sparse)));
        let filled = solver.assignment().iter().flatten().count();
        println!(
            "staffing ({name}): {} staff, {} slots, {arcs} candidate arcs (built in {:.0} ms)",
            people.len(),
            slots.len(),
            ms(built)
        );
        println!("    sparse exact solver: {:.1} ms, cost {}, {filled} filled, optimality certificate {}", ms(solve), solver.total_cost(), if certified { "holds" } else { "FAILS" });
        println!(
            "    incremental re-solve after one new fault (5 slots): {:.2} ms",
            ms(incremental)
        );
        println!(
            "    the daemon's re-plan after it: warm {:.1} ms ({how:?}), cold {:.1} ms",
            ms(replan_warm),
            ms(replan_cold)
        );
        println!(
            "    … and after someone assigned goes off duty: warm {:.1} ms ({off_how:?})",
            ms(off_warm)
        );
        println!(
            "    greedy nearest-qualified (by priority): {:.1} ms, cost {} ({:+.2} % over optimal)",
            ms(greedy_time),
            greedy_cost,
            100.0 * (greedy_cost - solver.total_cost()) as f64 / solver.total_cost().max(1) as f64
        );
        // The sparse arcs against every qualified person as an arc: the price of sparsity.
        let all = Weights {
            candidates: usize::MAX,
            ..w
        };
        let (full_build, full_rows) = timed(|| rows(&slots, &people, &all));
        let (full_solve, full) = timed(|| Solver::solve(people.len(), full_rows));
        println!(
            "    every qualified person an arc: {:.0} ms to build, {:.1} ms to solve, cost {} ({})",
            ms(full_build),
            ms(full_solve),
            full.total_cost(),
            if full.total_cost() == solver.total_cost() {
                "the sparse arcs lose nothing".to_owned()
            } else {
                format!(
                    "sparse is {:+} worse",
                    solver.total_cost() - full.total_cost()
                )
            }
        );
        if args.hungarian {
            let (dense, (_, cost)) = timed(|| reference::hungarian(people.len(), &sparse));
            println!(
                "    dense Hungarian: {:.0} ms, cost {cost} ({})",
                ms(dense),
                if cost == solver.total_cost() {
                    "equal"
                } else {
                    "DIFFERENT"
                }
            );
        }
    }
}

/// Rows in the order a dispatcher would fill them: most important fault first.
fn by_priority(slots: &[Slot], rows: &[Row]) -> Vec<Row> {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(slots[i].priority));
    order.into_iter().map(|i| rows[i].clone()).collect()
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
