//! The plan kept warm between re-plans. The daemon re-plans after every outage change, decline
//! and override; most of the problem is what it was the last time, so the solver keeps its
//! matching and potentials, and only the slots whose options changed are re-optimised: a new
//! slot is added, a slot whose candidates or costs moved is replaced, a slot that ended holds
//! nobody (see [`Solver::replace_row`]). Each step keeps the solution optimal, so the result is
//! the cold solve's (the tests hold them to equal cost after every kind of change).
//!
//! A cold solve is cheaper when much has changed, and is taken then: when the people are not
//! the same ones (an import), when over a quarter of the slots changed, or when ended slots
//! make up over half the rows.

use std::collections::{HashMap, HashSet};

use super::plan::Weights;
use super::plan::{split_pinned, terms, Assignment, Candidates, Person, Pin, Plan, Slot, SlotKey};
use super::solver::{Row, Solver};
use crate::domain::StaffId;

/// A planner that remembers its last solve.
#[derive(Debug, Default)]
pub struct WarmPlanner {
    warm: Option<Warm>,
}

#[derive(Debug)]
struct Warm {
    solver: Solver,
    /// The people of the last solve, in column order.
    columns: Vec<StaffId>,
    /// The row of each slot still open.
    rows: HashMap<SlotKey, usize>,
}

/// How the last plan was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solve {
    Cold,
    /// Re-optimised from the last solve: slots added, slots changed, slots ended.
    Warm {
        added: usize,
        changed: usize,
        ended: usize,
    },
}

impl WarmPlanner {
    /// Plans exactly like [`plan`](super::plan::plan), from the last solve where it can.
    pub fn plan(&mut self, slots: &[Slot], people: &[Person], pins: &[Pin], w: &Weights) -> Plan {
        self.plan_with(slots, people, pins, w).0
    }

    /// [`WarmPlanner::plan`], and how the plan was reached.
    pub fn plan_with(
        &mut self,
        slots: &[Slot],
        people: &[Person],
        pins: &[Pin],
        w: &Weights,
    ) -> (Plan, Solve) {
        let (assignments, open) = split_pinned(slots, people, pins, w);
        let pinned: HashSet<&StaffId> = pins.iter().map(|p| &p.staff).collect();
        let everyone: Vec<&Person> = people.iter().collect();
        let candidates = Candidates::without(&everyone, |p| pinned.contains(&p.id));
        let rows: Vec<(&SlotKey, Row)> = open
            .iter()
            .map(|slot| (&slot.key, candidates.row(slot, w)))
            .collect();
        let how = self.solve(people, rows);
        let mut result = Plan {
            assignments,
            ..Plan::default()
        };
        let Some(warm) = &self.warm else {
            return (result, how);
        };
        let chosen = warm.solver.assignment();
        for slot in open {
            let Some(&r) = warm.rows.get(&slot.key) else {
                continue;
            };
            result.cost += warm.solver.row_costs()[r];
            match chosen[r] {
                Some(j) => result.assignments.push(Assignment {
                    slot: slot.key.clone(),
                    staff: people[j].id.clone(),
                    pinned: false,
                    terms: terms(&people[j], slot, w),
                }),
                None => result.unfilled.push(slot.key.clone()),
            }
        }
        (result, how)
    }

    fn solve(&mut self, people: &[Person], rows: Vec<(&SlotKey, Row)>) -> Solve {
        let same_people = self.warm.as_ref().is_some_and(|warm| {
            warm.columns.len() == people.len()
                && warm.columns.iter().zip(people).all(|(id, p)| *id == p.id)
        });
        let warm = match self.warm.as_mut() {
            Some(warm) if same_people => warm,
            _ => return self.cold(people, rows),
        };
        let open: HashSet<&SlotKey> = rows.iter().map(|(key, _)| *key).collect();
        let ended: Vec<SlotKey> = warm
            .rows
            .keys()
            .filter(|key| !open.contains(key))
            .cloned()
            .collect();
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        for (key, row) in rows.iter() {
            match warm.rows.get(*key) {
                Some(&r) if warm.solver.row(r) == row => {}
                Some(&r) => changed.push((r, row)),
                None => added.push((*key, row)),
            }
        }
        let tombstones = warm.solver.len() - warm.rows.len() + ended.len();
        if changed.len() * 4 > rows.len() || tombstones * 2 > warm.solver.len() + added.len() {
            return self.cold(people, rows);
        }
        let how = Solve::Warm {
            added: added.len(),
            changed: changed.len(),
            ended: ended.len(),
        };
        for key in ended {
            if let Some(r) = warm.rows.remove(&key) {
                warm.solver.replace_row(r, Row::default());
            }
        }
        for (r, row) in changed {
            warm.solver.replace_row(r, row.clone());
        }
        for (key, row) in added {
            let r = warm.solver.add_row(row.clone());
            warm.rows.insert(key.clone(), r);
        }
        how
    }

    fn cold(&mut self, people: &[Person], rows: Vec<(&SlotKey, Row)>) -> Solve {
        let keys = rows
            .iter()
            .enumerate()
            .map(|(r, (key, _))| ((*key).clone(), r))
            .collect();
        let solver = Solver::solve(people.len(), rows.into_iter().map(|(_, row)| row).collect());
        self.warm = Some(Warm {
            solver,
            columns: people.iter().map(|p| p.id.clone()).collect(),
            rows: keys,
        });
        Solve::Cold
    }
}
