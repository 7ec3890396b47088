//! Exact minimum-cost assignment of slots to staff over sparse candidate arcs: successive
//! shortest augmenting paths (Dijkstra on reduced costs, with node potentials), one slot at a
//! time.
//!
//! Every slot (row) is either given one staff member (column) through one of its arcs or left
//! unfilled at its own cost — modelled as a private column only that row can use, so a solution
//! always exists. Each augmentation is a shortest path in the residual graph, and the potentials
//! keep every reduced cost non-negative, so after the last row the matching is optimal (no
//! negative cycle is left). Adding slots later (a new fault) only augments the new rows from the
//! current matching and potentials, which is what makes an incremental re-solve cheap.
//! Changing a slot's options (its priority, its candidates, its end) goes through
//! [`Solver::replace_row`], which unmatches only the rows the change can improve and augments
//! them again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One slot's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// (staff column, cost ≥ 0) for every staff member who may take the slot.
    pub arcs: Vec<(u32, i64)>,
    /// What leaving the slot unfilled costs (≥ 0).
    pub unfilled: i64,
}

const NONE: usize = usize::MAX;
const INF: i64 = i64::MAX / 4;

/// The matching and the dual potentials, kept between calls so that new rows are augmented
/// from where the last solve stopped.
#[derive(Debug, Clone)]
pub struct Solver {
    staff: usize,
    rows: Vec<Row>,
    /// Column matched to each row: a staff column, or `staff + row` (its unfilled column).
    row_col: Vec<usize>,
    row_cost: Vec<i64>,
    /// Row matched to each column (staff columns, then one unfilled column per row).
    col_row: Vec<usize>,
    pi_row: Vec<i64>,
    pi_col: Vec<i64>,
    /// The potential every free column shares (the sink's).
    pi_free: i64,
    /// Rows with an arc into each staff column; may hold rows that no longer have one (checked
    /// on use), which is cheaper than removing them on every change. It grows with every
    /// replaced row, so a long-lived solver is rebuilt now and then (`staffing::warm` does).
    col_rows: Vec<Vec<u32>>,
}

impl Solver {
    /// An empty problem over `staff` staff columns.
    pub fn new(staff: usize) -> Self {
        Self {
            staff,
            rows: Vec::new(),
            row_col: Vec::new(),
            row_cost: Vec::new(),
            col_row: vec![NONE; staff],
            pi_row: Vec::new(),
            pi_col: vec![0; staff],
            pi_free: 0,
            col_rows: vec![Vec::new(); staff],
        }
    }

    /// Solves a whole problem.
    pub fn solve(staff: usize, rows: Vec<Row>) -> Self {
        let mut solver = Self::new(staff);
        for row in rows {
            solver.add_row(row);
        }
        solver
    }

    /// Adds a slot and re-optimises; returns its row index.
    pub fn add_row(&mut self, row: Row) -> usize {
        let r = self.rows.len();
        debug_assert!(row
            .arcs
            .iter()
            .all(|&(j, c)| (j as usize) < self.staff && c >= 0));
        self.index_arcs(r, &row);
        self.rows.push(row);
        self.row_col.push(NONE);
        self.row_cost.push(0);
        self.col_row.push(NONE);
        self.pi_col.push(self.pi_free);
        self.pi_row.push(0);
        self.reset_potential(r);
        self.augment(r);
        r
    }

    /// Gives row `r` new options and re-optimises. A slot that is gone becomes
    /// `Row::default()`: no arcs, nothing to leave it unfilled, so it holds nobody.
    ///
    /// Unmatching `r` frees its column, and a free column must sit at the shared potential
    /// `pi_free` for the certificate to hold. Raising it there can make another row's arc into
    /// it negative — that row would rather have the freed person — so that row is unmatched
    /// too, and so on. Every row unmatched this way then gets a potential that suits its own
    /// arcs and is augmented afresh; rows the change cannot improve keep their match.
    pub fn replace_row(&mut self, r: usize, row: Row) {
        debug_assert!(row
            .arcs
            .iter()
            .all(|&(j, c)| (j as usize) < self.staff && c >= 0));
        self.index_arcs(r, &row);
        self.rows[r] = row;
        let mut pending = Vec::new();
        let mut freed = Vec::new();
        self.unmatch(r, &mut pending, &mut freed);
        while let Some(k) = freed.pop() {
            self.pi_col[k] = self.pi_free;
            let Some(users) = self.col_rows.get(k) else {
                continue; // a row's own unfilled column: only that row, which is pending
            };
            for i in users.clone() {
                let i = i as usize;
                let cost = self.cost(i, k);
                if self.row_col[i] != NONE
                    && cost < INF
                    && cost + self.pi_row[i] - self.pi_col[k] < 0
                {
                    self.unmatch(i, &mut pending, &mut freed);
                }
            }
        }
        for &i in &pending {
            self.reset_potential(i);
        }
        for i in pending {
            self.augment(i);
        }
    }

    /// Unmatches row `i`, noting it and the column it frees.
    fn unmatch(&mut self, i: usize, pending: &mut Vec<usize>, freed: &mut Vec<usize>) {
        let k = self.row_col[i];
        if k != NONE {
            self.col_row[k] = NONE;
            self.row_col[i] = NONE;
            self.row_cost[i] = 0;
            freed.push(k);
        }
        pending.push(i);
    }

    /// An unmatched row's potential may be anything that keeps its own arcs' reduced costs
    /// non-negative: the least such.
    fn reset_potential(&mut self, r: usize) {
        self.pi_row[r] = self
            .arcs(r)
            .map(|(j, c)| self.pi_col[j] - c)
            .max()
            .unwrap_or(0);
    }

    fn index_arcs(&mut self, r: usize, row: &Row) {
        for &(j, _) in &row.arcs {
            let users = &mut self.col_rows[j as usize];
            if users.last() != Some(&(r as u32)) {
                users.push(r as u32);
            }
        }
    }

    /// The arcs of row `r`, its unfilled column included.
    fn arcs(&self, r: usize) -> impl Iterator<Item = (usize, i64)> + '_ {
        let row = &self.rows[r];
        row.arcs
            .iter()
            .map(|&(j, c)| (j as usize, c))
            .chain(std::iter::once((self.staff + r, row.unfilled)))
    }

    /// Dijkstra from row `r` to the nearest free column, then flips the path.
    fn augment(&mut self, r: usize) {
        let cols = self.col_row.len();
        let mut dist_col = vec![INF; cols];
        let mut dist_row = vec![INF; self.rows.len()];
        let mut via = vec![NONE; cols]; // the row each column was reached from
        let mut done = vec![false; cols];
        let mut heap = BinaryHeap::new();
        dist_row[r] = 0;
        self.relax(r, 0, &mut dist_col, &mut via, &mut heap);
        let (sink, reach) = loop {
            let Some(Reverse((d, j))) = heap.pop() else {
                unreachable!("every row has its own unfilled column");
            };
            if done[j] || d > dist_col[j] {
                continue;
            }
            done[j] = true;
            let i = self.col_row[j];
            if i == NONE {
                break (j, d);
            }
            // Along the matched arc back to its row: reduced cost 0.
            let di = d + self.pi_col[j] - self.row_cost[i] - self.pi_row[i];
            dist_row[i] = di;
            self.relax(i, di, &mut dist_col, &mut via, &mut heap);
        };
        for (pi, d) in self.pi_row.iter_mut().zip(&dist_row) {
            *pi += (*d).min(reach);
        }
        for (pi, d) in self.pi_col.iter_mut().zip(&dist_col) {
            *pi += (*d).min(reach);
        }
        self.pi_free += reach;
        let mut j = sink;
        loop {
            let i = via[j];
            let previous = self.row_col[i];
            self.row_col[i] = j;
            self.col_row[j] = i;
            self.row_cost[i] = self.cost(i, j);
            if i == r {
                break;
            }
            j = previous;
        }
    }

    fn relax(
        &self,
        i: usize,
        di: i64,
        dist_col: &mut [i64],
        via: &mut [usize],
        heap: &mut BinaryHeap<Reverse<(i64, usize)>>,
    ) {
        for (j, c) in self.arcs(i) {
            if j == self.row_col[i] {
                continue;
            }
            let d = di + c + self.pi_row[i] - self.pi_col[j];
            debug_assert!(d >= di, "reduced costs stay non-negative");
            if d < dist_col[j] {
                dist_col[j] = d;
                via[j] = i;
                heap.push(Reverse((d, j)));
            }
        }
    }

    fn cost(&self, i: usize, j: usize) -> i64 {
        self.arcs(i)
            .find(|&(col, _)| col == j)
            .map_or(INF, |(_, c)| c)
    }

    /// Checks the optimality certificate: the potentials are a feasible dual (no arc has a
    /// negative reduced cost), every chosen arc is tight, and no free column could be reached
    /// more cheaply than the sink. Together they prove no cheaper assignment exists.
    pub fn certify(&self) -> bool {
        let arcs_ok = (0..self.rows.len()).all(|i| {
            self.arcs(i).all(|(j, c)| {
                let reduced = c + self.pi_row[i] - self.pi_col[j];
                reduced >= 0 && (j != self.row_col[i] || reduced == 0)
            })
        });
        let columns_ok = self.col_row.iter().zip(&self.pi_col).all(|(&row, &pi)| {
            if row == NONE {
                pi == self.pi_free
            } else {
                pi <= self.pi_free
            }
        });
        arcs_ok && columns_ok && self.row_col.iter().all(|&j| j != NONE)
    }

    /// The staff member given to each slot (`None`: unfilled).
    pub fn assignment(&self) -> Vec<Option<usize>> {
        self.row_col
            .iter()
            .map(|&j| (j < self.staff).then_some(j))
            .collect()
    }

    /// The total cost of the current assignment.
    pub fn total_cost(&self) -> i64 {
        self.row_cost.iter().sum()
    }

    /// Row `r`'s options, as last given.
    pub fn row(&self, r: usize) -> &Row {
        &self.rows[r]
    }

    /// How many rows there are (ended ones included).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cost of the option chosen for each slot.
    pub fn row_costs(&self) -> &[i64] {
        &self.row_cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_cheaper_global_choice_over_the_greedy_one() {
        // Greedy gives slot 0 staff 0 (cost 1) and leaves slot 1 to staff 1 (cost 100): 101.
        // Optimal: slot 0 → staff 1 (2), slot 1 → staff 0 (3): 5.
        let rows = vec![
            Row {
                arcs: vec![(0, 1), (1, 2)],
                unfilled: 1000,
            },
            Row {
                arcs: vec![(0, 3), (1, 100)],
                unfilled: 1000,
            },
        ];
        let s = Solver::solve(2, rows);
        assert_eq!(s.assignment(), vec![Some(1), Some(0)]);
        assert_eq!(s.total_cost(), 5);
    }

    #[test]
    fn scarcity_leaves_the_cheapest_slot_to_leave_unfilled() {
        let rows = vec![
            Row {
                arcs: vec![(0, 10)],
                unfilled: 50,
            },
            Row {
                arcs: vec![(0, 10)],
                unfilled: 500,
            },
        ];
        let s = Solver::solve(1, rows);
        assert_eq!(s.assignment(), vec![None, Some(0)]);
        assert_eq!(s.total_cost(), 60);
    }

    #[test]
    fn a_row_without_arcs_is_unfilled() {
        let s = Solver::solve(
            3,
            vec![Row {
                arcs: vec![],
                unfilled: 7,
            }],
        );
        assert_eq!((s.assignment(), s.total_cost()), (vec![None], 7));
    }
}
