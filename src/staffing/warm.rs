//! The plan kept warm between re-plans. The daemon re-plans after every outage change, decline
//! and override; most of the problem is what it was the last time, so the solver keeps its
//! matching and potentials, and only the slots whose options changed are re-optimised: a new
//! slot is added, a slot whose candidates or costs moved is replaced, a slot that ended holds
//! nobody (see [`Solver::replace_row`]). Each step keeps the solution optimal, so the result is
//! the cold solve's (the tests hold them to equal cost after every kind of change).
//!
//! The slots' candidate arcs are kept too: a slot's row is built again only when the slot
//! changed or someone who is, or could become, one of its candidates did (most of a re-plan's
//! time at storm size is the nearest-qualified walks).
//!
//! A cold solve is cheaper when much has changed, and is taken then: when the people are not
//! the same ones (an import), when over a quarter of the slots changed, when ended slots make
//! up over half the rows, or after four times as many row replacements as there are rows.

use std::collections::{HashMap, HashSet};

use super::plan::{qualified, split_pinned, terms, Assignment, Candidates, Person, Pin, Plan};
use super::plan::{Slot, SlotKey, Weights};
use super::solver::{Row, Solver};
use crate::domain::{Coord, FaultId, Skill, SkillLevel, StaffId, StaffStatus};

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
    /// What the rows were built from: the slots, what each person's candidacy depends on,
    /// and the weights.
    slots: HashMap<SlotKey, Slot>,
    facts: Vec<Facts>,
    weights: Weights,
    /// Rows replaced since the last cold solve: the solver's column-to-row index only grows
    /// with them (see `Solver::replace_row`), so a long run of small changes ends in a cold
    /// solve now and then.
    replaced: usize,
}

impl Warm {
    /// Whether `people` are the last solve's columns, in the same order.
    fn same_people(&self, people: &[Person]) -> bool {
        self.columns.len() == people.len()
            && self.columns.iter().zip(people).all(|(id, p)| *id == p.id)
    }
}

/// What a person's place in the candidate arcs depends on: a person whose facts are unchanged
/// is in the same rows at the same costs. (Hours worked matter only against the limit.)
#[derive(Debug, Clone, PartialEq)]
struct Facts {
    skills: Vec<(Skill, SkillLevel)>,
    at: Coord,
    status: StaffStatus,
    rested: bool,
    current: Option<SlotKey>,
    declined: Vec<FaultId>,
    pinned: bool,
}

impl Facts {
    fn of(p: &Person, pinned: bool) -> Self {
        Self {
            skills: p.skills.clone(),
            at: p.at,
            status: p.status,
            rested: p.hours_worked < p.max_shift_hours,
            current: p.current.clone(),
            declined: p.declined.clone(),
            pinned,
        }
    }
}

/// How the last plan was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solve {
    Cold,
    /// Re-optimised from the last solve: slots added, slots changed, slots ended, and rows
    /// whose candidates had to be searched again (the rest were kept).
    Warm {
        added: usize,
        changed: usize,
        ended: usize,
        searched: usize,
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
        let facts: Vec<Facts> = people
            .iter()
            .map(|p| Facts::of(p, pinned.contains(&p.id)))
            .collect();
        let (rows, searched) = self.rows(&open, people, &facts, &pinned, w);
        let mut how = self.solve(people, rows);
        if let Solve::Warm { searched: n, .. } = &mut how {
            *n = searched;
        }
        if let Some(warm) = self.warm.as_mut() {
            warm.slots = open.iter().map(|s| (s.key.clone(), (*s).clone())).collect();
            warm.facts = facts;
            warm.weights = *w;
        }
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

    /// Every open slot's row: the last one where neither the slot nor anyone who is or could
    /// become its candidate changed, built afresh otherwise.
    fn rows<'s>(
        &self,
        open: &[&'s Slot],
        people: &[Person],
        facts: &[Facts],
        pinned: &HashSet<&StaffId>,
        w: &Weights,
    ) -> (Vec<(&'s SlotKey, Row)>, usize) {
        let last = self
            .warm
            .as_ref()
            .filter(|warm| warm.weights == *w && warm.same_people(people));
        let changed: Vec<usize> = last.map_or_else(Vec::new, |warm| {
            (0..people.len())
                .filter(|&j| warm.facts[j] != facts[j])
                .collect()
        });
        let kept = |slot: &Slot| -> Option<Row> {
            let warm = last?;
            let row = warm.solver.row(*warm.rows.get(&slot.key)?);
            let touched = changed
                .iter()
                .any(|&j| touches(row, j, &people[j], facts[j].pinned, slot, w));
            (warm.slots.get(&slot.key) == Some(slot) && !touched).then(|| row.clone())
        };
        let everyone: Vec<&Person> = people.iter().collect();
        let mut candidates = None;
        let mut rows = Vec::with_capacity(open.len());
        let mut searched = 0;
        for slot in open {
            let row = kept(slot).unwrap_or_else(|| {
                searched += 1;
                candidates
                    .get_or_insert_with(|| {
                        Candidates::without(&everyone, |p| pinned.contains(&p.id))
                    })
                    .row(slot, w)
            });
            rows.push((&slot.key, row));
        }
        (rows, searched)
    }

    fn solve(&mut self, people: &[Person], rows: Vec<(&SlotKey, Row)>) -> Solve {
        let warm = match self.warm.as_mut() {
            Some(warm) if warm.same_people(people) => warm,
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
        warm.replaced += changed.len() + ended.len();
        if changed.len() * 4 > rows.len()
            || tombstones * 2 > warm.solver.len() + added.len()
            || warm.replaced > 4 * warm.solver.len().max(64)
        {
            return self.cold(people, rows);
        }
        let how = Solve::Warm {
            added: added.len(),
            changed: changed.len(),
            ended: ended.len(),
            searched: 0, // the caller knows
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
            slots: HashMap::new(),
            facts: Vec::new(),
            weights: Weights::default(),
            replaced: 0,
        });
        Solve::Cold
    }
}

/// Whether a change to person `j` can change this slot's row: they are among its candidates,
/// or may now join them — qualified, and cheaper than (or as cheap as) the dearest kept, or the
/// row keeps fewer than it may, in which case every qualified person is in it.
fn touches(row: &Row, j: usize, p: &Person, pinned: bool, slot: &Slot, w: &Weights) -> bool {
    if row.arcs.iter().any(|&(col, _)| col as usize == j) {
        return true;
    }
    if pinned || !qualified(p, slot) {
        return false;
    }
    let cost = terms(p, slot, w).total;
    row.arcs.len() < w.candidates || row.arcs.iter().any(|&(_, c)| cost <= c)
}
