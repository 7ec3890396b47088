//! Which customers does an area or a device cover? An R-tree over every customer's service
//! point narrows an area to the customers in its bounding box; the prepared area decides each.

pub mod area;
pub mod geojson;

use std::collections::HashMap;

use rstar::primitives::GeomWithData;
use rstar::{RTree, AABB};

pub use area::{AreaShape, PreparedArea};
pub use geojson::{parse_area, AreaError};

use crate::domain::{Coord, CustomerId};

/// Index of a customer in the [`CustomerIndex`]: small, copyable, stable for the process.
pub type CustomerIdx = u32;

/// What mapping needs to know about a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedCustomer {
    pub id: CustomerId,
    pub at: Coord,
    pub feeder: Option<String>,
    pub service_point: Option<String>,
    pub critical: bool,
}

/// Where an unplaced customer is: no position at all. `Coord::new` refuses NaN, so no
/// customer read from the directory is here, and the index never puts it in the R-tree.
const NOWHERE: Coord = Coord {
    lon: f64::NAN,
    lat: f64::NAN,
};

impl MappedCustomer {
    /// An erased customer (docs/DATA.md, "Erasure"): kept under their index, which must stay
    /// stable for the process, but in no area, on no device and on no map.
    pub fn unplaced(id: CustomerId) -> Self {
        Self {
            id,
            at: NOWHERE,
            feeder: None,
            service_point: None,
            critical: false,
        }
    }

    /// False for an [`unplaced`](Self::unplaced) customer.
    pub fn is_placed(&self) -> bool {
        self.at.lon.is_finite() && self.at.lat.is_finite()
    }

    /// Equal for the index: two unplaced entries of one id are, though NaN equals nothing.
    fn same_as(&self, other: &Self) -> bool {
        self == other || (self.id == other.id && !self.is_placed() && !other.is_placed())
    }
}

type Entry = GeomWithData<[f64; 2], CustomerIdx>;

/// All customers, spatially indexed and by grid device.
#[derive(Debug, Default)]
pub struct CustomerIndex {
    customers: Vec<MappedCustomer>,
    by_id: HashMap<CustomerId, CustomerIdx>,
    tree: RTree<Entry>,
    by_device: HashMap<String, Vec<CustomerIdx>>,
}

impl CustomerIndex {
    /// Builds the index in one pass; bulk loading packs the R-tree far better than inserts.
    pub fn build(customers: Vec<MappedCustomer>) -> Self {
        let mut index = Self::default();
        index.customers.reserve(customers.len());
        index.by_id.reserve(customers.len());
        let mut repeated = false;
        for customer in customers {
            if let Some(&idx) = index.by_id.get(&customer.id) {
                // A repeated id: the later row wins, as with an upsert.
                index.customers[idx as usize] = customer;
                repeated = true;
                continue;
            }
            index
                .by_id
                .insert(customer.id.clone(), index.customers.len() as CustomerIdx);
            index.customers.push(customer);
        }
        let entries = index
            .customers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_placed())
            .map(|(idx, c)| Entry::new([c.at.lon, c.at.lat], idx as CustomerIdx))
            .collect();
        index.tree = RTree::bulk_load(entries);
        for idx in 0..index.customers.len() {
            index.link_devices(idx as CustomerIdx);
        }
        if repeated {
            tracing::debug!("repeated customer ids in the index input; the last of each won");
        }
        index
    }

    pub fn len(&self) -> usize {
        self.customers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.customers.is_empty()
    }

    pub fn get(&self, idx: CustomerIdx) -> &MappedCustomer {
        &self.customers[idx as usize]
    }

    /// The customers who have a place: all but the unplaced (erased) ones, by index.
    pub fn placed(&self) -> impl Iterator<Item = CustomerIdx> + '_ {
        self.customers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_placed())
            .map(|(idx, _)| idx as CustomerIdx)
    }

    pub fn idx_of(&self, id: &CustomerId) -> Option<CustomerIdx> {
        self.by_id.get(id).copied()
    }

    /// Adds or replaces a customer. Returns its index, or `None` when nothing changed.
    pub fn upsert(&mut self, customer: MappedCustomer) -> Option<CustomerIdx> {
        match self.by_id.get(&customer.id).copied() {
            Some(idx) if self.customers[idx as usize].same_as(&customer) => None,
            Some(idx) => {
                let old = self.customers[idx as usize].clone();
                if old.is_placed() {
                    self.tree.remove(&Entry::new([old.at.lon, old.at.lat], idx));
                }
                self.unlink_devices(idx, &old);
                self.place(idx, &customer);
                self.customers[idx as usize] = customer;
                self.link_devices(idx);
                Some(idx)
            }
            None => {
                let idx = self.customers.len() as CustomerIdx;
                self.place(idx, &customer);
                self.by_id.insert(customer.id.clone(), idx);
                self.customers.push(customer);
                self.link_devices(idx);
                Some(idx)
            }
        }
    }

    /// Puts a customer's position in the R-tree, unless they are unplaced.
    fn place(&mut self, idx: CustomerIdx, customer: &MappedCustomer) {
        if customer.is_placed() {
            self.tree
                .insert(Entry::new([customer.at.lon, customer.at.lat], idx));
        }
    }

    fn link_devices(&mut self, idx: CustomerIdx) {
        let c = &self.customers[idx as usize];
        for device in [&c.feeder, &c.service_point].into_iter().flatten() {
            self.by_device.entry(device.clone()).or_default().push(idx);
        }
    }

    fn unlink_devices(&mut self, idx: CustomerIdx, old: &MappedCustomer) {
        for device in [&old.feeder, &old.service_point].into_iter().flatten() {
            if let Some(list) = self.by_device.get_mut(device) {
                list.retain(|&i| i != idx);
            }
        }
    }

    /// Customers inside `area` or on one of `devices`, sorted and without repeats.
    pub fn affected(&self, area: Option<&PreparedArea>, devices: &[String]) -> Vec<CustomerIdx> {
        let mut out = match area {
            Some(area) => self.in_area(area),
            None => Vec::new(),
        };
        for device in devices {
            if let Some(list) = self.by_device.get(device) {
                out.extend_from_slice(list);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn in_area(&self, area: &PreparedArea) -> Vec<CustomerIdx> {
        let [x0, y0, x1, y1] = area.envelope();
        let envelope = AABB::from_corners([x0, y0], [x1, y1]);
        self.tree
            .locate_in_envelope(&envelope)
            .filter(|e| area.contains(e.geom()[0], e.geom()[1]))
            .map(|e| e.data)
            .collect()
    }

    /// Customers within `radius_m` of `at` (an equirectangular distance: exact enough at the
    /// few hundred metres this is used for).
    pub fn near(&self, at: Coord, radius_m: f64) -> Vec<CustomerIdx> {
        const M_PER_DEG: f64 = 111_320.0;
        let cos = at.lat.to_radians().cos().max(0.01);
        let (dlat, dlon) = (radius_m / M_PER_DEG, radius_m / (M_PER_DEG * cos));
        let envelope = AABB::from_corners(
            [at.lon - dlon, at.lat - dlat],
            [at.lon + dlon, at.lat + dlat],
        );
        self.tree
            .locate_in_envelope(&envelope)
            .filter(|e| {
                let dx = (e.geom()[0] - at.lon) * M_PER_DEG * cos;
                let dy = (e.geom()[1] - at.lat) * M_PER_DEG;
                dx.hypot(dy) <= radius_m
            })
            .map(|e| e.data)
            .collect()
    }

    /// Is this one customer covered? Used when a customer is imported during an outage.
    pub fn covers(
        &self,
        idx: CustomerIdx,
        area: Option<&PreparedArea>,
        devices: &[String],
    ) -> bool {
        let c = &self.customers[idx as usize];
        if !c.is_placed() {
            return false;
        }
        area.is_some_and(|a| a.contains(c.at.lon, c.at.lat))
            || devices
                .iter()
                .any(|d| c.feeder.as_deref() == Some(d) || c.service_point.as_deref() == Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str, lon: f64, lat: f64, feeder: &str) -> MappedCustomer {
        MappedCustomer {
            id: CustomerId::parse(id).unwrap(),
            at: Coord::new(lon, lat).unwrap(),
            feeder: Some(feeder.into()),
            service_point: Some(format!("{feeder} {id}")),
            critical: false,
        }
    }

    fn unit_square() -> PreparedArea {
        PreparedArea::new(&AreaShape::Polygons(vec![vec![vec![
            [0.0, 0.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.0, 1.0],
            [0.0, 0.0],
        ]]]))
    }

    #[test]
    fn areas_devices_and_moves() {
        let mut index = CustomerIndex::build(vec![
            customer("a", 0.5, 0.5, "F1"),
            customer("b", 1.5, 0.5, "F2"),
            customer("c", 5.0, 5.0, "F2"),
        ]);
        let square = unit_square();
        assert_eq!(index.affected(Some(&square), &[]), vec![0]);
        assert_eq!(index.affected(Some(&square), &["F2".into()]), vec![0, 1, 2]);
        assert_eq!(index.affected(None, &["F2 c".into()]), vec![2]);
        // Moving b into the square and onto F1.
        let moved = customer("b", 0.6, 0.6, "F1");
        assert_eq!(index.upsert(moved.clone()), Some(1));
        assert_eq!(index.upsert(moved), None, "unchanged upsert is a no-op");
        assert_eq!(index.affected(Some(&square), &[]), vec![0, 1]);
        assert_eq!(index.affected(None, &["F2".into()]), vec![2]);
        assert_eq!(index.upsert(customer("d", 0.1, 0.1, "F9")), Some(3));
        assert_eq!(index.affected(Some(&square), &[]), vec![0, 1, 3]);
        assert!(index.covers(3, None, &["F9".into()]));
    }

    #[test]
    fn unplaced_customers_keep_their_index_and_are_nowhere() {
        let square = unit_square();
        let mut index = CustomerIndex::build(vec![
            customer("a", 0.5, 0.5, "F1"),
            customer("b", 0.6, 0.6, "F1"),
        ]);
        let erased = MappedCustomer::unplaced(CustomerId::parse("a").unwrap());
        assert!(!erased.is_placed() && customer("a", 0.5, 0.5, "F1").is_placed());
        assert_eq!(index.upsert(erased.clone()), Some(0));
        assert_eq!(
            index.upsert(erased.clone()),
            None,
            "unplaced twice is no change"
        );
        assert_eq!(index.affected(Some(&square), &["F1".into()]), vec![1]);
        assert!(!index.covers(0, Some(&square), &["F1".into()]));
        assert_eq!(index.near(Coord::new(0.5, 0.5).unwrap(), 50_000.0), vec![1]);
        // Imported again: placed where the new row says, under the same index.
        assert_eq!(index.upsert(customer("a", 0.2, 0.2, "F2")), Some(0));
        assert_eq!(index.affected(Some(&square), &["F2".into()]), vec![0, 1]);
        // A first load may hold unplaced customers too; none is in the tree.
        let built = CustomerIndex::build(vec![erased, customer("b", 0.6, 0.6, "F1")]);
        assert_eq!(built.affected(Some(&square), &[]), vec![1]);
        assert_eq!(built.placed().collect::<Vec<_>>(), vec![1]);
    }
}
