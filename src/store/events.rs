//! The event log: every payload received, with what became of it.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_millis, on_pool, Store, StoreError};

/// What became of a received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    /// Changed fault state.
    Applied,
    /// `seq` not above the fault's last one: kept, state untouched.
    Stale,
    /// Valid but meaningless in the fault's state (e.g. `updated` after `restored`).
    Ignored,
    /// An `event_id` already accepted: acknowledged and ignored.
    Duplicate,
    /// Invalid: kept with the reason and republished to the dead-letter topic.
    Rejected,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Stale => "stale",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
}

/// An event log row to write.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event_id: Option<String>,
    pub fault_id: Option<String>,
    pub kind: Option<String>,
    pub seq: Option<i64>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub status: EventStatus,
    pub reason: Option<String>,
}

/// An event log row as read back.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: i64,
    pub event_id: Option<String>,
    pub fault_id: Option<String>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub received_at: DateTime<Utc>,
    pub status: String,
    pub reason: Option<String>,
}

impl Store {
    /// Has this `event_id` been accepted before (applied, stale or ignored)?
    pub async fn event_accepted(&self, event_id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM events WHERE event_id = $1 AND status IN ('applied', 'stale', 'ignored')";
        let n = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql).bind(event_id).fetch_one(pool).await?);
        Ok(n > 0)
    }

    /// Which of these `event_id`s have been accepted before (one query for a whole batch).
    pub async fn accepted_event_ids(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut found = std::collections::HashSet::new();
        for chunk in ids.chunks(super::CHUNK_ROWS) {
            let rows: Vec<String> = on_pool!(self, pool, Db => {
                let mut q = sqlx::QueryBuilder::<Db>::new("SELECT event_id FROM events WHERE status IN ('applied', 'stale', 'ignored') AND event_id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.clone());
                }
                q.push(")");
                q.build_query_scalar().fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }

    /// Newest first; `status` filters (e.g. `rejected` for the dead letters).
    pub async fn list_events(
        &self,
        status: Option<EventStatus>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = "SELECT id, event_id, fault_id, topic, payload, received_at, status, reason FROM events \
                   WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2";
        let status = status.map(|s| s.as_str().to_owned());
        let rows = on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).bind(status).bind(limit).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?,
                             r.try_get::<i64, _>(5)?, r.try_get(6)?, r.try_get(7)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        rows.into_iter()
            .map(
                |(id, event_id, fault_id, topic, payload, at, status, reason)| {
                    Ok(StoredEvent {
                        id,
                        event_id,
                        fault_id,
                        topic,
                        payload,
                        received_at: from_millis(at)?,
                        status,
                        reason,
                    })
                },
            )
            .collect()
    }

    /// The newest event log row id: a cheap progress probe (it equals the row count on SQLite;
    /// on PostgreSQL ids may skip values).
    pub async fn newest_event_row(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COALESCE(MAX(id), 0) FROM events";
        let n =
            on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?);
        Ok(n)
    }

    /// Event log rows per status.
    pub async fn event_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT status, COUNT(*) FROM events GROUP BY status ORDER BY status";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, i64)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }
}
