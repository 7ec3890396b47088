//! What the solver is checked and measured against: a dense Hungarian algorithm (exact, O(n²m),
//! independent of the sparse solver's code) and the greedy nearest-qualified rule a dispatcher
//! would follow by hand.

use super::solver::Row;

/// Cost of a pair that has no arc: never chosen while the slot's unfilled column is cheaper.
const NO_ARC: i64 = i64::MAX / 8;

/// Exact assignment by the classic dense Hungarian algorithm (potentials u, v; one row added
/// per phase), over the full matrix: staff columns, then one unfilled column per row.
/// Returns (staff per slot, total cost).
// The textbook's 1-based indices run over several arrays at once; iterators would hide them.
#[allow(clippy::needless_range_loop)]
pub fn hungarian(staff: usize, rows: &[Row]) -> (Vec<Option<usize>>, i64) {
    let n = rows.len();
    let m = staff + n;
    let cost = |i: usize, j: usize| -> i64 {
        if j >= staff {
            return if j - staff == i {
                rows[i].unfilled
            } else {
                NO_ARC
            };
        }
        rows[i]
            .arcs
            .iter()
            .find(|&&(col, _)| col as usize == j)
            .map_or(NO_ARC, |&(_, c)| c)
    };
    // 1-based as in the textbook formulation: column 0 is the virtual start.
    let mut u = vec![0i64; n + 1];
    let mut v = vec![0i64; m + 1];
    let mut p = vec![0usize; m + 1]; // row matched to column j (0: none)
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![i64::MAX; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = i64::MAX;
            let mut j1 = 0;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if cur < minv[j] {
                    minv[j] = cur;
                    way[j] = j0;
                }
                if minv[j] < delta {
                    delta = minv[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assigned = vec![None; n];
    let mut total = 0;
    for j in 1..=m {
        if p[j] != 0 {
            let i = p[j] - 1;
            total += cost(i, j - 1);
            if j - 1 < staff {
                assigned[i] = Some(j - 1);
            }
        }
    }
    (assigned, total)
}

/// Greedy: slots in the given order (most important first), each takes its cheapest free
/// candidate if that beats leaving it unfilled. Returns (staff per slot, total cost).
pub fn greedy(staff: usize, rows: &[Row]) -> (Vec<Option<usize>>, i64) {
    let mut taken = vec![false; staff];
    let mut total = 0;
    let assigned = rows
        .iter()
        .map(|row| {
            let best = row
                .arcs
                .iter()
                .filter(|&&(j, c)| !taken[j as usize] && c < row.unfilled)
                .min_by_key(|&&(_, c)| c);
            match best {
                Some(&(j, c)) => {
                    taken[j as usize] = true;
                    total += c;
                    Some(j as usize)
                }
                None => {
                    total += row.unfilled;
                    None
                }
            }
        })
        .collect();
    (assigned, total)
}
