//! Faults and the customer ↔ fault relation, written in one transaction per ingest batch.

use std::collections::BTreeMap;

use sqlx::{QueryBuilder, Row};

use super::{millis, on_pool, opt_from_millis, EventRecord, Store, StoreError, CHUNK_ROWS};
use crate::domain::{FaultId, Skill};
use crate::ingest::event::Severity;
use crate::mapping::parse_area;
use crate::outage::{Fault, FaultArea, FaultState};

/// A change to the customer ↔ fault relation.
#[derive(Debug, Clone)]
pub enum MemberOp {
    /// Customers (re)join a fault in `state` (`out` or `planned`) as of `at`.
    Join {
        fault_id: String,
        customers: Vec<String>,
        state: &'static str,
        at: i64,
    },
    /// Customers leave a fault, ending in `state` (`restored` or `cancelled`) at `at`.
    Leave {
        fault_id: String,
        customers: Vec<String>,
        state: &'static str,
        at: i64,
    },
    /// A planned outage started: its planned members are out from `at`.
    Activate { fault_id: String, at: i64 },
    /// The fault closed: every current member leaves, ending in `state`, at `at`. The same as a
    /// `Leave` of all members, in one statement whatever the fault's size.
    Close {
        fault_id: String,
        state: &'static str,
        at: i64,
    },
}

impl MemberOp {
    fn fault_id(&self) -> &str {
        match self {
            Self::Join { fault_id, .. }
            | Self::Leave { fault_id, .. }
            | Self::Activate { fault_id, .. }
            | Self::Close { fault_id, .. } => fault_id,
        }
    }
}

/// Splits ops into rounds that can each be written together. Ops on different faults touch
/// different rows, so they commute; ops on one fault keep their order. Round k holds the k-th op
/// of every fault, so a batch of many faults needs as many rounds as its busiest fault has ops.
fn rounds(ops: &[MemberOp]) -> Vec<Vec<&MemberOp>> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<&MemberOp>> = Vec::new();
    for op in ops {
        let k = seen.entry(op.fault_id()).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(op);
        *k += 1;
    }
    rounds
}

/// Everything one ingest batch writes, in one transaction.
#[derive(Debug, Default)]
pub struct BatchWrite {
    pub events: Vec<EventRecord>,
    pub faults: Vec<FaultRow>,
    pub members: Vec<MemberOp>,
    pub episode_starts: Vec<super::EpisodeStart>,
    pub episode_ends: Vec<super::EpisodeEnd>,
    pub notices: Vec<super::NoticeIntent>,
    pub suppressions: Vec<super::Suppression>,
    /// Milliseconds; `created_at`/`updated_at` of new rows.
    pub now: i64,
}

/// A fault as stored.
#[derive(Debug, Clone)]
pub struct FaultRow {
    pub fault_id: String,
    pub state: String,
    pub cause: String,
    pub severity: String,
    pub area: Option<String>,
    pub radius_m: Option<f64>,
    pub devices: String,
    pub etr: Option<i64>,
    pub etr_announced: Option<i64>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub seq: Option<i64>,
    pub detected_at: Option<i64>,
    pub restored_at: Option<i64>,
    pub momentary: bool,
    pub crew_needs: String,
    pub note: Option<String>,
    pub updated_at: i64,
}

impl FaultRow {
    pub fn from_fault(f: &Fault) -> Self {
        let crew: BTreeMap<&str, u32> =
            f.crew_needs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        Self {
            fault_id: f.id.as_str().to_owned(),
            state: f.state.as_str().to_owned(),
            cause: f.cause.clone(),
            severity: f.severity.as_str().to_owned(),
            area: f.area.as_ref().map(|a| a.geojson.to_string()),
            radius_m: f.area.as_ref().and_then(|a| a.radius_m),
            devices: serde_json::to_string(&f.devices).unwrap_or_else(|_| "[]".into()),
            etr: f.etr.map(millis),
            etr_announced: f.etr_announced.map(millis),
            starts_at: f.starts_at.map(millis),
            ends_at: f.ends_at.map(millis),
            seq: f.seq.map(|s| s as i64),
            detected_at: f.detected_at.map(millis),
            restored_at: f.restored_at.map(millis),
            momentary: f.momentary,
            crew_needs: serde_json::to_string(&crew).unwrap_or_else(|_| "{}".into()),
            note: f.note.clone(),
            updated_at: millis(f.updated_at),
        }
    }

    /// Back to a [`Fault`] (without members); the area is parsed and prepared again.
    pub fn into_fault(self) -> Result<Fault, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("fault {}: {what}", self.fault_id));
        let id = FaultId::parse(&self.fault_id).map_err(|e| corrupt(&e.0))?;
        let state = FaultState::parse(&self.state).ok_or_else(|| corrupt("unknown state"))?;
        let mut f = Fault::new(id, state, super::from_millis(self.updated_at)?);
        if let Some(area) = &self.area {
            let geojson: serde_json::Value =
                serde_json::from_str(area).map_err(|e| corrupt(&e.to_string()))?;
            let shape = parse_area(&geojson, self.radius_m, usize::MAX)
                .map_err(|e| corrupt(&e.to_string()))?;
            f.area = Some(FaultArea::new(geojson, &shape));
        }
        f.cause = self.cause.clone();
        f.severity = Severity::parse(&self.severity).unwrap_or_default();
        f.devices = serde_json::from_str(&self.devices).map_err(|e| corrupt(&e.to_string()))?;
        f.etr = opt_from_millis(self.etr)?;
        f.etr_announced = opt_from_millis(self.etr_announced)?;
        f.starts_at = opt_from_millis(self.starts_at)?;
        f.ends_at = opt_from_millis(self.ends_at)?;
        f.seq = self.seq.map(|s| s as u64);
        f.detected_at = opt_from_millis(self.detected_at)?;
        f.restored_at = opt_from_millis(self.restored_at)?;
        f.momentary = self.momentary;
        let crew: BTreeMap<String, u32> =
            serde_json::from_str(&self.crew_needs).map_err(|e| corrupt(&e.to_string()))?;
        f.crew_needs = crew
            .into_iter()
            .filter_map(|(k, v)| Some((k.parse::<Skill>().ok()?, v)))
            .collect();
        f.note = self.note;
        Ok(f)
    }
}

const FAULT_COLUMNS: &str = "fault_id, state, cause, severity, area, radius_m, devices, etr, starts_at, ends_at, \
                             seq, detected_at, restored_at, momentary, crew_needs, note, updated_at, etr_announced";

impl Store {
    /// Writes one ingest batch atomically: the event log rows, the faults' new state and the
    /// relation changes. Nothing is acknowledged to the broker before this returns `Ok`.
    pub async fn commit_batch(&self, w: &BatchWrite) -> Result<(), StoreError> {
        let (events, faults, ops) = (&w.events, &w.faults, &w.members);
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            for chunk in events.chunks(CHUNK_ROWS / 2) {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO events (event_id, fault_id, kind, seq, topic, payload, received_at, status, reason, payload_digest) ",
                );
                q.push_values(chunk, |mut b, e| {
                    b.push_bind(e.event_id.clone()).push_bind(e.fault_id.clone()).push_bind(e.kind.clone())
                        .push_bind(e.seq).push_bind(e.topic.clone()).push_bind(e.payload.clone())
                        .push_bind(millis(e.received_at)).push_bind(e.status.as_str()).push_bind(e.reason.clone())
                        .push_bind(e.digest.clone());
                });
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            for chunk in faults.chunks(CHUNK_ROWS / 10) {
                let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO faults ({FAULT_COLUMNS}) "));
                q.push_values(chunk, |mut b, f| {
                    b.push_bind(f.fault_id.clone()).push_bind(f.state.clone()).push_bind(f.cause.clone())
                        .push_bind(f.severity.clone()).push_bind(f.area.clone()).push_bind(f.radius_m)
                        .push_bind(f.devices.clone()).push_bind(f.etr).push_bind(f.starts_at).push_bind(f.ends_at)
                        .push_bind(f.seq).push_bind(f.detected_at).push_bind(f.restored_at).push_bind(f.momentary)
                        .push_bind(f.crew_needs.clone()).push_bind(f.note.clone()).push_bind(f.updated_at)
                        .push_bind(f.etr_announced);
                });
                q.push(
                    " ON CONFLICT (fault_id) DO UPDATE SET state = excluded.state, cause = excluded.cause, \
                     severity = excluded.severity, area = excluded.area, radius_m = excluded.radius_m, \
                     devices = excluded.devices, etr = excluded.etr, starts_at = excluded.starts_at, \
                     ends_at = excluded.ends_at, seq = excluded.seq, detected_at = excluded.detected_at, \
                     restored_at = excluded.restored_at, momentary = excluded.momentary, \
                     crew_needs = excluded.crew_needs, note = excluded.note, updated_at = excluded.updated_at, \
                     etr_announced = excluded.etr_announced",
                );
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            for round in rounds(ops) {
                let joins: Vec<(&str, &str, &str, i64)> = round
                    .iter()
                    .filter_map(|op| match op {
                        MemberOp::Join { fault_id, customers, state, at } => Some((fault_id, customers, state, at)),
                        _ => None,
                    })
                    .flat_map(|(f, cs, s, at)| cs.iter().map(move |c| (f.as_str(), c.as_str(), *s, *at)))
                    .collect();
                super::bulk::BulkWrite::join_members(&mut *tx, &joins).await?;
                // Every fault this round closes, in one statement (VALUES columns are `column1`…
                // in both SQLite and PostgreSQL).
                let closes: Vec<(&str, &str, i64)> = round
                    .iter()
                    .filter_map(|op| match op {
                        MemberOp::Close { fault_id, state, at } => Some((fault_id.as_str(), *state, *at)),
                        _ => None,
                    })
                    .collect();
                for chunk in closes.chunks(CHUNK_ROWS) {
                    let mut q = QueryBuilder::<Db>::new("UPDATE customer_outages SET state = v.column2, restored_at = v.column3 FROM (");
                    q.push_values(chunk, |mut b, (f, s, at)| {
                        b.push_bind(f.to_string()).push_bind(*s).push_bind(*at);
                    });
                    q.push(") AS v WHERE customer_outages.fault_id = v.column1 AND customer_outages.state IN ('out', 'planned')");
                    q.build().persistent(false).execute(&mut *tx).await?;
                }
                for op in round {
                    match op {
                        MemberOp::Leave { fault_id, customers, state, at } => {
                            for chunk in customers.chunks(CHUNK_ROWS) {
                                let mut q = QueryBuilder::<Db>::new("UPDATE customer_outages SET state = ");
                                q.push_bind(*state).push(", restored_at = ").push_bind(*at)
                                    .push(" WHERE fault_id = ").push_bind(fault_id.clone()).push(" AND customer_id IN (");
                                let mut list = q.separated(", ");
                                for c in chunk {
                                    list.push_bind(c.clone());
                                }
                                q.push(")");
                                q.build().persistent(false).execute(&mut *tx).await?;
                            }
                        }
                        MemberOp::Join { .. } | MemberOp::Close { .. } => {}
                        MemberOp::Activate { fault_id, at } => {
                            sqlx::query("UPDATE customer_outages SET state = 'out', since = $1 WHERE fault_id = $2 AND state = 'planned'")
                                .bind(*at).bind(fault_id.clone()).execute(&mut *tx).await?;
                        }
                    }
                }
            }
            super::notices::write_notices!(tx, Db, w);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every fault, open or closed.
    pub async fn load_faults(&self) -> Result<Vec<FaultRow>, StoreError> {
        let sql = format!("SELECT {FAULT_COLUMNS} FROM faults");
        on_pool!(self, pool, _Db => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(FaultRow {
                fault_id: r.try_get(0)?, state: r.try_get(1)?, cause: r.try_get(2)?, severity: r.try_get(3)?,
                area: r.try_get(4)?, radius_m: r.try_get(5)?, devices: r.try_get(6)?, etr: r.try_get(7)?,
                starts_at: r.try_get(8)?, ends_at: r.try_get(9)?, seq: r.try_get(10)?, detected_at: r.try_get(11)?,
                restored_at: r.try_get(12)?, momentary: r.try_get(13)?, crew_needs: r.try_get(14)?,
                note: r.try_get(15)?, updated_at: r.try_get(16)?, etr_announced: r.try_get(17)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>().map_err(StoreError::from)
        })
    }

    /// (fault, customer) pairs whose relation is current (`out` or `planned`).
    pub async fn load_current_members(&self) -> Result<Vec<(String, String)>, StoreError> {
        let sql =
            "SELECT fault_id, customer_id FROM customer_outages WHERE state IN ('out', 'planned')";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, String)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Restored relations per fault.
    pub async fn restored_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT fault_id, COUNT(*) FROM customer_outages WHERE state = 'restored' GROUP BY fault_id";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, i64)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Customers of a fault in one relation state, sorted (inspection and tests).
    pub async fn fault_members(
        &self,
        fault_id: &str,
        state: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT customer_id FROM customer_outages WHERE fault_id = $1 AND state = $2 ORDER BY customer_id";
        let rows = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, String>(sql).bind(fault_id).bind(state).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Customers out right now, because of any active fault, sorted.
    pub async fn customers_out(&self) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT DISTINCT o.customer_id FROM customer_outages o JOIN faults f ON f.fault_id = o.fault_id \
                   WHERE o.state = 'out' AND f.state = 'active' ORDER BY o.customer_id";
        let rows = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// One fault's state and seq (inspection and tests).
    pub async fn fault_state(
        &self,
        fault_id: &str,
    ) -> Result<Option<(String, Option<i64>, bool)>, StoreError> {
        let sql = "SELECT state, seq, momentary FROM faults WHERE fault_id = $1";
        let row = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, Option<i64>, bool)>(sql).bind(fault_id).fetch_optional(pool).await?);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(f: &str) -> MemberOp {
        MemberOp::Join {
            fault_id: f.into(),
            customers: vec![],
            state: "out",
            at: 0,
        }
    }
    fn close(f: &str) -> MemberOp {
        MemberOp::Close {
            fault_id: f.into(),
            state: "restored",
            at: 0,
        }
    }

    #[test]
    fn rounds_keep_per_fault_order_and_merge_across_faults() {
        let ops = [join("A"), close("A"), join("B"), close("B"), join("A")];
        let r = rounds(&ops);
        let ids = |i: usize| {
            r[i].iter()
                .map(|o| (o.fault_id().to_owned(), matches!(o, MemberOp::Join { .. })))
                .collect::<Vec<_>>()
        };
        assert_eq!(r.len(), 3);
        assert_eq!(ids(0), vec![("A".into(), true), ("B".into(), true)]);
        assert_eq!(ids(1), vec![("A".into(), false), ("B".into(), false)]);
        assert_eq!(ids(2), vec![("A".into(), true)]);
    }
}
