//! GeoJSON area → validated [`AreaShape`]. Every refusal says exactly what is wrong, because the
//! reason is what an operator reads in the dead-letter record.

use geo::{Intersects, Line};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use serde_json::Value;

use super::area::AreaShape;
use crate::domain::Coord;

/// Why an area was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AreaError {
    #[error("area: `type` must be Polygon, MultiPolygon or Point, got {0}")]
    UnsupportedType(String),
    #[error("area: `coordinates` is missing or not an array of the right depth")]
    BadCoordinates,
    #[error("area: position {0} is not a [lon, lat] pair of numbers")]
    BadPosition(String),
    #[error("area: position [{lon}, {lat}] is outside WGS84 (lon -180..180, lat -90..90)")]
    OutOfRange { lon: f64, lat: f64 },
    #[error("area: ring {ring} has {count} positions; a closed ring needs at least 4")]
    TooFewPositions { ring: String, count: usize },
    #[error("area: ring {0} is not closed (first and last position differ)")]
    NotClosed(String),
    #[error("area: ring {0} intersects itself")]
    SelfIntersection(String),
    #[error("area: {count} vertices exceed the limit of {limit}")]
    TooManyVertices { count: usize, limit: usize },
    #[error("area: a Point area needs `radius_m` > 0 (metres)")]
    BadRadius,
}

/// Parses a GeoJSON geometry (and the event's `radius_m` for a Point).
pub fn parse_area(
    geometry: &Value,
    radius_m: Option<f64>,
    max_vertices: usize,
) -> Result<AreaShape, AreaError> {
    let kind = geometry
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("(none)");
    let coords = geometry
        .get("coordinates")
        .ok_or(AreaError::BadCoordinates)?;
    match kind {
        "Point" => {
            let center = position(coords)?;
            match radius_m {
                Some(r) if r.is_finite() && r > 0.0 => Ok(AreaShape::Circle {
                    center,
                    radius_m: r,
                }),
                _ => Err(AreaError::BadRadius),
            }
        }
        "Polygon" => {
            let polygon = polygon(coords, 0, max_vertices)?;
            Ok(AreaShape::Polygons(vec![polygon]))
        }
        "MultiPolygon" => {
            let parts = coords.as_array().ok_or(AreaError::BadCoordinates)?;
            if parts.is_empty() {
                return Err(AreaError::BadCoordinates);
            }
            let mut budget = max_vertices;
            let mut polygons = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let polygon = polygon(part, i, budget).map_err(|e| match e {
                    AreaError::TooManyVertices { .. } => AreaError::TooManyVertices {
                        count: count_positions(coords),
                        limit: max_vertices,
                    },
                    other => other,
                })?;
                budget -= polygon.iter().map(Vec::len).sum::<usize>();
                polygons.push(polygon);
            }
            Ok(AreaShape::Polygons(polygons))
        }
        other => Err(AreaError::UnsupportedType(crate::domain::excerpt(other))),
    }
}

fn count_positions(v: &Value) -> usize {
    match v.as_array() {
        Some(a) if a.first().is_some_and(Value::is_number) => 1,
        Some(a) => a.iter().map(count_positions).sum(),
        None => 0,
    }
}

fn position(v: &Value) -> Result<Coord, AreaError> {
    let pair = v.as_array().filter(|a| a.len() >= 2);
    let (lon, lat) = match pair.map(|a| (a[0].as_f64(), a[1].as_f64())) {
        Some((Some(lon), Some(lat))) => (lon, lat),
        _ => return Err(AreaError::BadPosition(truncate(&v.to_string(), 40))),
    };
    Coord::new(lon, lat).map_err(|_| AreaError::OutOfRange { lon, lat })
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn polygon(v: &Value, index: usize, max_vertices: usize) -> Result<Vec<Vec<[f64; 2]>>, AreaError> {
    let rings = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or(AreaError::BadCoordinates)?;
    let total = count_positions(v);
    if total > max_vertices {
        return Err(AreaError::TooManyVertices {
            count: total,
            limit: max_vertices,
        });
    }
    let mut out = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let name = if r == 0 {
            format!("{index}.exterior")
        } else {
            format!("{index}.hole{}", r - 1)
        };
        let positions = ring.as_array().ok_or(AreaError::BadCoordinates)?;
        let ring: Vec<[f64; 2]> = positions
            .iter()
            .map(|p| position(p).map(|c| [c.lon, c.lat]))
            .collect::<Result<_, _>>()?;
        if ring.len() < 4 {
            return Err(AreaError::TooFewPositions {
                ring: name,
                count: ring.len(),
            });
        }
        if ring.first() != ring.last() {
            return Err(AreaError::NotClosed(name));
        }
        if ring_self_intersects(&ring) {
            return Err(AreaError::SelfIntersection(name));
        }
        out.push(ring);
    }
    Ok(out)
}

/// Whether two non-neighbouring edges of a closed ring meet. Candidate pairs come from an
/// R-tree of edge boxes, so a ring of n edges costs about n·log n, not n² (geo's own validity
/// check is quadratic, too slow for the 100k-vertex limit).
pub fn ring_self_intersects(ring: &[[f64; 2]]) -> bool {
    let n = ring.len() - 1; // edges in a closed ring
    if n < 3 {
        return true;
    }
    let boxes: Vec<GeomWithData<Rectangle<[f64; 2]>, usize>> = (0..n)
        .map(|i| GeomWithData::new(Rectangle::from_corners(ring[i], ring[i + 1]), i))
        .collect();
    let tree = RTree::bulk_load(boxes);
    let line = |i: usize| Line::new(ring[i], ring[i + 1]);
    for i in 0..n {
        let envelope = AABB::from_corners(ring[i], ring[i + 1]);
        for other in tree.locate_in_envelope_intersecting(&envelope) {
            let j = other.data;
            if j <= i {
                continue;
            }
            let neighbours = j == i + 1 || (i == 0 && j == n - 1);
            if neighbours {
                // Neighbours share a vertex; they are wrong only if they fold back onto each
                // other (a spike), i.e. overlap along a stretch.
                if folds_back(ring[i], ring[i + 1], ring[(j + 1) % (n + 1)], j == i + 1) {
                    return true;
                }
                continue;
            }
            if line(i).intersects(&line(j)) {
                return true;
            }
        }
    }
    false
}

/// For neighbouring edges a→b and b→c: does c lie back on a→b (collinear, pointing backwards)?
fn folds_back(a: [f64; 2], b: [f64; 2], c: [f64; 2], consecutive: bool) -> bool {
    if !consecutive {
        return false;
    }
    let cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]);
    let dot = (b[0] - a[0]) * (c[0] - b[0]) + (b[1] - a[1]) * (c[1] - b[1]);
    cross == 0.0 && dot < 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_valid_shapes() {
        let poly = json!({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]});
        assert!(matches!(parse_area(&poly, None, 100), Ok(AreaShape::Polygons(p)) if p.len() == 1));
        let multi = json!({"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]]],[[[2,0],[3,0],[3,1],[2,0]]]]});
        assert!(
            matches!(parse_area(&multi, None, 100), Ok(AreaShape::Polygons(p)) if p.len() == 2)
        );
        let point = json!({"type":"Point","coordinates":[11.8,53.4]});
        assert!(matches!(
            parse_area(&point, Some(50.0), 100),
            Ok(AreaShape::Circle { .. })
        ));
    }

    #[test]
    fn refuses_with_specific_reasons() {
        let cases = [
            (
                json!({"type":"Polygon","coordinates":[[[11.8,53.4],[11.9,53.4],[11.8,53.4]]]}),
                None,
                "at least 4",
            ),
            (
                json!({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}),
                None,
                "not closed",
            ),
            (
                json!({"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}),
                None,
                "intersects itself",
            ),
            (
                json!({"type":"Point","coordinates":[191.0,95.0]}),
                Some(5.0),
                "outside WGS84",
            ),
            (
                json!({"type":"Point","coordinates":[11.0,53.0]}),
                Some(-5.0),
                "radius_m",
            ),
            (
                json!({"type":"Point","coordinates":[11.0,53.0]}),
                None,
                "radius_m",
            ),
            (
                json!({"type":"LineString","coordinates":[[0,0],[1,1]]}),
                None,
                "LineString",
            ),
            (
                json!({"type":"Polygon","coordinates":[[[0,0],["x",0],[1,1],[0,0]]]}),
                None,
                "not a [lon, lat]",
            ),
        ];
        for (geometry, radius, expected) in cases {
            let err = parse_area(&geometry, radius, 100).unwrap_err().to_string();
            assert!(err.contains(expected), "{geometry}: {err}");
        }
        let square = json!({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]});
        let err = parse_area(&square, None, 4).unwrap_err();
        assert_eq!(err, AreaError::TooManyVertices { count: 5, limit: 4 });
    }

    #[test]
    fn self_intersection_finds_touching_and_spikes() {
        // A ring visiting (1,1) twice: a figure eight touching at a vertex.
        let eight = [
            [0.0, 0.0],
            [1.0, 1.0],
            [2.0, 0.0],
            [2.0, 2.0],
            [1.0, 1.0],
            [0.0, 2.0],
            [0.0, 0.0],
        ];
        assert!(ring_self_intersects(&eight));
        let spike = [[0.0, 0.0], [2.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]];
        assert!(ring_self_intersects(&spike));
        let square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];
        assert!(!ring_self_intersects(&square));
    }
}
