//! From faults and people to an assignment problem and back: the slots each fault needs, who
//! may take which slot (the hard constraints), what each choice costs (the soft ones, as one
//! integer), and the solved assignment with the cost terms that chose it.

use std::collections::{BinaryHeap, HashMap};

use geo::{Distance, Geodesic, Point};
use rstar::primitives::GeomWithData;
use rstar::{PointDistance, RTree};

use super::solver::Row;
use crate::domain::{Coord, FaultId, Skill, SkillLevel, StaffId, StaffStatus};

/// One position a fault needs filled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub fault: FaultId,
    pub skill: Skill,
    /// Tells apart several slots of one skill at one fault.
    pub index: u16,
}

/// A slot with what it requires.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub key: SlotKey,
    pub min_level: SkillLevel,
    pub at: Coord,
    /// Higher is more important (see [`super::priority`]).
    pub priority: i64,
}

/// A staff member as the planner sees them.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: StaffId,
    pub skills: Vec<(Skill, SkillLevel)>,
    pub at: Coord,
    pub status: StaffStatus,
    /// Hours on assignment since their last rest.
    pub hours_worked: f64,
    pub max_shift_hours: f64,
    /// The slot they are dispatched to now, if any (moving them costs a disruption).
    pub current: Option<SlotKey>,
    /// Faults they declined (or left unanswered): not offered again.
    pub declined: Vec<FaultId>,
}

impl Person {
    /// An imported staff member, at their depot, rested and not dispatched.
    pub fn from_record(r: &crate::directory::StaffRecord) -> Self {
        Self {
            id: r.id.clone(),
            skills: r.skills.clone(),
            at: r.depot,
            status: r.status,
            hours_worked: 0.0,
            max_shift_hours: r.max_shift_hours,
            current: None,
            declined: Vec::new(),
        }
    }

    fn level(&self, skill: Skill) -> Option<SkillLevel> {
        self.skills
            .iter()
            .filter(|(s, _)| *s == skill)
            .map(|(_, l)| *l)
            .max()
    }
}

/// A coordinator's decision the solver must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub slot: SlotKey,
    pub staff: StaffId,
}

/// The weights of the soft constraints (configuration `[staffing]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Road distance ÷ geodesic distance (1.0: as the crow flies).
    pub road_factor: f64,
    /// Added to the cost of calling in someone on call (≈ metres of travel at priority 1).
    pub on_call: i64,
    /// Added when someone already dispatched elsewhere is moved.
    pub disruption: i64,
    /// Cost of an unfilled slot per point of its priority; large, so that filling more
    /// important slots always beats travel.
    pub unfilled: i64,
    /// Cheapest candidates kept per slot (the sparse arcs).
    pub candidates: usize,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            road_factor: 1.3,
            on_call: 20_000,
            disruption: 50_000,
            unfilled: 100_000_000,
            candidates: 64,
        }
    }
}

/// Why a person was chosen for a slot: the terms of the cost that chose them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Terms {
    /// Road metres (geodesic × road factor).
    pub travel_m: i64,
    pub priority: i64,
    pub on_call: i64,
    pub disruption: i64,
    pub total: i64,
}

/// One filled slot.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub slot: SlotKey,
    pub staff: StaffId,
    pub pinned: bool,
    pub terms: Terms,
}

/// The solved plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub assignments: Vec<Assignment>,
    pub unfilled: Vec<SlotKey>,
    /// The solver's objective (pinned slots excluded).
    pub cost: i64,
}

/// Whether `p` may take `slot` at all: skill and level, not off duty, not past the fatigue
/// limit, not someone who declined this fault.
pub fn qualified(p: &Person, slot: &Slot) -> bool {
    p.status != StaffStatus::OffDuty
        && p.hours_worked < p.max_shift_hours
        && !p.declined.contains(&slot.key.fault)
        && p.level(slot.key.skill)
            .is_some_and(|l| l.get() >= slot.min_level.get())
}

/// The cost of `p` taking `slot`, term by term.
pub fn terms(p: &Person, slot: &Slot, w: &Weights) -> Terms {
    let metres = Geodesic.distance(
        Point::new(p.at.lon, p.at.lat),
        Point::new(slot.at.lon, slot.at.lat),
    );
    let travel_m = (metres * w.road_factor).round() as i64;
    let on_call = if p.status == StaffStatus::OnCall {
        w.on_call
    } else {
        0
    };
    let disruption = match &p.current {
        Some(current) if *current != slot.key => w.disruption,
        _ => 0,
    };
    Terms {
        travel_m,
        priority: slot.priority,
        on_call,
        disruption,
        total: travel_m * slot.priority.max(1) + on_call + disruption,
    }
}

/// Solves the assignment exactly. Pinned slots keep their person (whatever the rules say — a
/// coordinator's override sticks) and that person is not offered elsewhere. A cold plan: the
/// daemon keeps a [`WarmPlanner`](super::warm::WarmPlanner) between re-plans instead.
pub fn plan(slots: &[Slot], people: &[Person], pins: &[Pin], w: &Weights) -> Plan {
    super::warm::WarmPlanner::default().plan(slots, people, pins, w)
}

/// The pinned slots' assignments, and the slots left to solve.
pub(super) fn split_pinned<'s>(
    slots: &'s [Slot],
    people: &[Person],
    pins: &[Pin],
    w: &Weights,
) -> (Vec<Assignment>, Vec<&'s Slot>) {
    let mut pinned = Vec::new();
    let mut open = Vec::new();
    for slot in slots {
        match pins.iter().find(|p| p.slot == slot.key) {
            Some(pin) => {
                let terms = people
                    .iter()
                    .find(|p| p.id == pin.staff)
                    .map(|p| terms(p, slot, w))
                    .unwrap_or_default();
                pinned.push(Assignment {
                    slot: slot.key.clone(),
                    staff: pin.staff.clone(),
                    pinned: true,
                    terms,
                });
            }
            None => open.push(slot),
        }
    }
    (pinned, open)
}

/// People indexed for the nearest-qualified search: one R-tree per skill over points on the
/// unit sphere, where straight-line (chord) distance orders people by great-circle distance.
pub struct Candidates<'a> {
    people: &'a [&'a Person],
    trees: HashMap<Skill, RTree<GeomWithData<[f64; 3], u32>>>,
}

/// Mean Earth radius, metres.
const EARTH_M: f64 = 6_371_008.8;

fn on_sphere(c: Coord) -> [f64; 3] {
    let (lat, lon) = (c.lat.to_radians(), c.lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

impl<'a> Candidates<'a> {
    pub fn new(people: &'a [&'a Person]) -> Self {
        Self::without(people, |_| false)
    }

    /// Candidates among `people` except those `skip` names (people pinned elsewhere); arcs
    /// still number people by their place in `people`.
    pub fn without(people: &'a [&'a Person], skip: impl Fn(&Person) -> bool) -> Self {
        let mut points: HashMap<Skill, Vec<GeomWithData<[f64; 3], u32>>> = HashMap::new();
        for (j, p) in people.iter().enumerate().filter(|(_, p)| !skip(p)) {
            let mut skills: Vec<Skill> = p.skills.iter().map(|(s, _)| *s).collect();
            skills.sort_unstable();
            skills.dedup();
            for skill in skills {
                points
                    .entry(skill)
                    .or_default()
                    .push(GeomWithData::new(on_sphere(p.at), j as u32));
            }
        }
        let trees = points
            .into_iter()
            .map(|(skill, pts)| (skill, RTree::bulk_load(pts)))
            .collect();
        Self { people, trees }
    }

    /// The sparse arcs of one slot: its `w.candidates` cheapest qualified people, found by
    /// walking outwards from the slot. Travel only grows along the walk and the other terms
    /// are never negative, so the walk stops once the travel alone of the next person would
    /// cost more than the dearest candidate kept: the kept ones are exactly the cheapest.
    pub fn row(&self, slot: &Slot, w: &Weights) -> Row {
        let unfilled = slot.priority.max(1).saturating_mul(w.unfilled);
        let Some(tree) = self.trees.get(&slot.key.skill) else {
            return Row {
                arcs: Vec::new(),
                unfilled,
            };
        };
        let here = on_sphere(slot.at);
        let mut kept: BinaryHeap<(i64, u32)> = BinaryHeap::new();
        for point in tree.nearest_neighbor_iter(&here) {
            if kept.len() >= w.candidates {
                let chord = point.distance_2(&here).sqrt();
                let sphere_m = 2.0 * EARTH_M * (chord / 2.0).min(1.0).asin();
                // The ellipsoid's distances differ from the sphere's by well under 1 %.
                let floor = (sphere_m * 0.99 * w.road_factor) as i64 * slot.priority.max(1);
                if kept.peek().is_some_and(|&(dearest, _)| floor > dearest) {
                    break;
                }
            }
            let p = self.people[point.data as usize];
            if !qualified(p, slot) {
                continue;
            }
            kept.push((terms(p, slot, w).total, point.data));
            if kept.len() > w.candidates {
                kept.pop();
            }
        }
        let mut arcs: Vec<(u32, i64)> = kept.into_iter().map(|(c, j)| (j, c)).collect();
        arcs.sort_unstable();
        Row { arcs, unfilled }
    }
}
