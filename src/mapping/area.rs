//! Fault areas, prepared once so that testing a point is cheap however complex the polygon.
//!
//! A polygon is cut into a grid of cells over its bounding box. Each cell is classified once:
//! wholly inside, wholly outside, or touched by an edge. Points in the first two kinds are
//! answered by a lookup; only points in boundary cells are ray cast, and then only against the
//! edges that cross their grid row. With 4,096 vertices a point test costs a handful of
//! comparisons instead of 4,096 edge tests.

use geo::{Distance, Geodesic, Haversine, Point};

use crate::domain::Coord;

/// A validated fault area in WGS84 (longitude, latitude) coordinates.
#[derive(Debug, Clone, PartialEq)]
pub enum AreaShape {
    /// Polygons, each an exterior ring then holes; every ring closed. A `Polygon` is one entry.
    Polygons(Vec<Vec<Vec<[f64; 2]>>>),
    /// A geodesic circle.
    Circle { center: Coord, radius_m: f64 },
}

/// An area ready for fast point tests.
#[derive(Debug, Clone)]
pub enum PreparedArea {
    Polygons(PreparedPolygons),
    Circle { center: Coord, radius_m: f64 },
}

impl PreparedArea {
    pub fn new(shape: &AreaShape) -> Self {
        match shape {
            AreaShape::Polygons(polys) => Self::Polygons(PreparedPolygons::new(polys)),
            AreaShape::Circle { center, radius_m } => Self::Circle {
                center: *center,
                radius_m: *radius_m,
            },
        }
    }

    /// The box, `[min_lon, min_lat, max_lon, max_lat]`, that holds every point of the area.
    pub fn envelope(&self) -> [f64; 4] {
        match self {
            Self::Polygons(p) => p.bbox,
            Self::Circle { center, radius_m } => circle_envelope(*center, *radius_m),
        }
    }

    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        match self {
            Self::Polygons(p) => p.contains(lon, lat),
            Self::Circle { center, radius_m } => within_radius(*center, *radius_m, lon, lat),
        }
    }
}

/// Bounding box of a circle, widened by 1 % so no point inside is missed.
fn circle_envelope(center: Coord, radius_m: f64) -> [f64; 4] {
    let dlat = radius_m / 110_574.0 * 1.01;
    let cos = center.lat.to_radians().cos().max(0.01);
    let dlon = (radius_m / (111_320.0 * cos) * 1.01).min(180.0);
    [
        center.lon - dlon,
        (center.lat - dlat).max(-90.0),
        center.lon + dlon,
        (center.lat + dlat).min(90.0),
    ]
}

/// Geodesic distance test. Haversine (a sphere) is within 0.5 % of the ellipsoid, so it
/// settles all but a thin shell near the rim, where the exact (Karney) geodesic decides.
fn within_radius(center: Coord, radius_m: f64, lon: f64, lat: f64) -> bool {
    let a = Point::new(center.lon, center.lat);
    let b = Point::new(lon, lat);
    let approx = Haversine.distance(a, b);
    if approx <= radius_m * 0.994 {
        true
    } else if approx > radius_m * 1.006 {
        false
    } else {
        Geodesic.distance(a, b) <= radius_m
    }
}

const OUTSIDE: u8 = 0;
const INSIDE: u8 = 1;
const BOUNDARY: u8 = 2;

#[derive(Debug, Clone, Copy)]
struct Edge {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Edge {
    /// Does a ray from (px, py) towards +x cross this edge? Half-open in y, so a ray through a
    /// vertex counts exactly one of the two edges that meet there.
    #[inline]
    fn crosses(&self, px: f64, py: f64) -> bool {
        if (self.y0 > py) != (self.y1 > py) {
            let x = self.x0 + (py - self.y0) * (self.x1 - self.x0) / (self.y1 - self.y0);
            px < x
        } else {
            false
        }
    }
}

/// Polygons (with holes) prepared as a classified grid plus per-row edge lists.
#[derive(Debug, Clone)]
pub struct PreparedPolygons {
    bbox: [f64; 4],
    nx: usize,
    ny: usize,
    cell_w: f64,
    cell_h: f64,
    cells: Vec<u8>,
    edges: Vec<Edge>,
    /// Edge indices per grid row: every edge whose y-range overlaps the row.
    rows: Vec<Vec<u32>>,
}

impl PreparedPolygons {
    pub fn new(polygons: &[Vec<Vec<[f64; 2]>>]) -> Self {
        let edges: Vec<Edge> = polygons
            .iter()
            .flatten()
            .flat_map(|ring| {
                ring.windows(2).map(|w| Edge {
                    x0: w[0][0],
                    y0: w[0][1],
                    x1: w[1][0],
                    y1: w[1][1],
                })
            })
            .collect();
        let mut bbox = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        for e in &edges {
            bbox[0] = bbox[0].min(e.x0.min(e.x1));
            bbox[1] = bbox[1].min(e.y0.min(e.y1));
            bbox[2] = bbox[2].max(e.x0.max(e.x1));
            bbox[3] = bbox[3].max(e.y0.max(e.y1));
        }
        // About 2·√edges cells a side keeps boundary cells to a few edges each.
        let side = ((edges.len() as f64).sqrt() * 2.0).ceil().clamp(4.0, 256.0) as usize;
        let (nx, ny) = (side, side);
        let cell_w = ((bbox[2] - bbox[0]) / nx as f64).max(f64::MIN_POSITIVE);
        let cell_h = ((bbox[3] - bbox[1]) / ny as f64).max(f64::MIN_POSITIVE);
        let mut prepared = Self {
            bbox,
            nx,
            ny,
            cell_w,
            cell_h,
            cells: vec![OUTSIDE; nx * ny],
            edges,
            rows: vec![Vec::new(); ny],
        };
        prepared.index_edges();
        prepared.classify_cells();
        prepared
    }

    fn col(&self, x: f64) -> usize {
        (((x - self.bbox[0]) / self.cell_w) as usize).min(self.nx - 1)
    }

    fn row(&self, y: f64) -> usize {
        (((y - self.bbox[1]) / self.cell_h) as usize).min(self.ny - 1)
    }

    /// Marks every cell an edge's bounding box touches as boundary (conservative, so never
    /// wrong), and files the edge under each row it spans.
    fn index_edges(&mut self) {
        for (i, e) in self.edges.iter().enumerate() {
            let (c0, c1) = (self.col(e.x0.min(e.x1)), self.col(e.x0.max(e.x1)));
            let (r0, r1) = (self.row(e.y0.min(e.y1)), self.row(e.y0.max(e.y1)));
            for r in r0..=r1 {
                self.rows[r].push(i as u32);
                for c in c0..=c1 {
                    self.cells[r * self.nx + c] = BOUNDARY;
                }
            }
        }
    }

    /// A run of non-boundary cells in a row is crossed by no edge, so one exact test at its
    /// first cell classifies the whole run.
    fn classify_cells(&mut self) {
        for r in 0..self.ny {
            let mut run_state = None;
            for c in 0..self.nx {
                let idx = r * self.nx + c;
                if self.cells[idx] == BOUNDARY {
                    run_state = None;
                    continue;
                }
                let state = *run_state.get_or_insert_with(|| {
                    let cx = self.bbox[0] + (c as f64 + 0.5) * self.cell_w;
                    let cy = self.bbox[1] + (r as f64 + 0.5) * self.cell_h;
                    if self.ray_cast(r, cx, cy) {
                        INSIDE
                    } else {
                        OUTSIDE
                    }
                });
                self.cells[idx] = state;
            }
        }
    }

    fn ray_cast(&self, row: usize, px: f64, py: f64) -> bool {
        self.rows[row]
            .iter()
            .filter(|&&i| self.edges[i as usize].crosses(px, py))
            .count()
            % 2
            == 1
    }

    /// Even-odd containment: inside an exterior ring and outside its holes.
    pub fn contains(&self, px: f64, py: f64) -> bool {
        if px < self.bbox[0] || px > self.bbox[2] || py < self.bbox[1] || py > self.bbox[3] {
            return false;
        }
        let (c, r) = (self.col(px), self.row(py));
        match self.cells[r * self.nx + c] {
            INSIDE => true,
            OUTSIDE => false,
            _ => self.ray_cast(r, px, py),
        }
    }

    /// Edge-by-edge reference test, for checking the grid and for benchmarks.
    pub fn contains_naive(&self, px: f64, py: f64) -> bool {
        self.edges.iter().filter(|e| e.crosses(px, py)).count() % 2 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn star(n: usize, cx: f64, cy: f64) -> Vec<[f64; 2]> {
        let mut ring: Vec<[f64; 2]> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                let r = if i % 2 == 0 { 1.0 } else { 0.45 };
                [cx + r * a.cos(), cy + r * a.sin()]
            })
            .collect();
        ring.push(ring[0]);
        ring
    }

    #[test]
    fn grid_agrees_with_naive_ray_casting() {
        let hole: Vec<[f64; 2]> = vec![
            [-0.1, -0.1],
            [0.1, -0.1],
            [0.1, 0.1],
            [-0.1, 0.1],
            [-0.1, -0.1],
        ];
        for n in [8, 64, 1024, 4096] {
            let prepared = PreparedPolygons::new(&[
                vec![star(n, 0.0, 0.0), hole.clone()],
                vec![star(n, 3.0, 0.0)],
            ]);
            let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
            for _ in 0..20_000 {
                let (x, y) = (rng.random_range(-1.5..4.5), rng.random_range(-1.5..1.5));
                assert_eq!(
                    prepared.contains(x, y),
                    prepared.contains_naive(x, y),
                    "n={n} ({x},{y})"
                );
            }
            assert!(!prepared.contains(0.0, 0.0), "the hole is outside");
            assert!(prepared.contains(0.3, 0.0));
            assert!(prepared.contains(3.3, 0.0));
        }
    }

    #[test]
    fn circle_is_geodesic() {
        let c = Coord::new(11.83, 53.44).unwrap();
        let area = PreparedArea::new(&AreaShape::Circle {
            center: c,
            radius_m: 600.0,
        });
        // 0.009° of latitude is about 1,001 m; 0.005° about 556 m.
        assert!(area.contains(11.83, 53.445));
        assert!(!area.contains(11.83, 53.449));
        let env = area.envelope();
        assert!(env[1] < 53.4346 && env[3] > 53.4454);
    }
}
