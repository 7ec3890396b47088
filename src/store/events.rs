//! The event log: every payload received, with what became of it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use super::{from_millis, on_pool, Store, StoreError, CHUNK_ROWS};

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
    /// A rejected payload's [`payload_digest`], by which a redelivery of it is recognised.
    pub digest: Option<String>,
}

/// What a rejected payload is recognised by when the broker delivers it again: SHA-256 (hex)
/// of its topic, its stored reason and its stored payload. The reason is part of it because a
/// payload over the size limit is stored by its head only, and its reason names its size.
pub fn payload_digest(topic: &str, reason: &str, payload: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(topic.as_bytes());
    hash.update([0]);
    hash.update(reason.as_bytes());
    hash.update([0]);
    hash.update(payload);
    crate::domain::hex(&hash.finalize())
}

/// An event log row as read back (the event log's listing, the dead letters' outbox).
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

/// The columns of a [`StoredEvent`], in the order of [`EventColumns`].
const EVENT_COLUMNS: &str = "id, event_id, fault_id, topic, payload, received_at, status, reason";
type EventColumns = (
    i64,
    Option<String>,
    Option<String>,
    String,
    Vec<u8>,
    i64,
    String,
    Option<String>,
);

impl StoredEvent {
    fn read(
        (id, event_id, fault_id, topic, payload, at, status, reason): EventColumns,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id,
            event_id,
            fault_id,
            topic,
            payload,
            received_at: from_millis(at)?,
            status,
            reason,
        })
    }
}

impl Store {
    /// Has this `event_id` been accepted before (applied, stale or ignored)?
    pub async fn event_accepted(&self, event_id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM events WHERE event_id = $1 AND status IN ('applied', 'stale', 'ignored')";
        let n = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql).bind(event_id).fetch_one(pool).await?);
        Ok(n > 0)
    }

    /// Which of these `event_id`s have been accepted before (one query for a whole batch).
    pub async fn accepted_event_ids(&self, ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let sql = "SELECT event_id FROM events WHERE status IN ('applied', 'stale', 'ignored') AND event_id IN (";
        self.found_among(sql, ids).await
    }

    /// The values of `values` that `select` (a query ending in `IN (`, selecting one text
    /// column) finds, a chunk of values per query.
    async fn found_among(
        &self,
        select: &str,
        values: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        for chunk in values.chunks(CHUNK_ROWS) {
            let rows: Vec<String> = on_pool!(self, pool, Db => {
                let mut q = QueryBuilder::<Db>::new(select);
                let mut list = q.separated(", ");
                for value in chunk {
                    list.push_bind(value.clone());
                }
                q.push(")");
                q.build_query_scalar().persistent(false).fetch_all(pool).await?
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
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE ($1 IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"
        );
        let status = status.map(|s| s.as_str().to_owned());
        let rows: Vec<EventColumns> = on_pool!(self, pool, _Db => {
            sqlx::query_as(&sql).bind(status).bind(limit).fetch_all(pool).await?
        });
        rows.into_iter().map(StoredEvent::read).collect()
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

/// The dead-letter outbox: rejected rows whose letters are not acknowledged by the broker yet.
impl Store {
    /// Takes up to `limit` rejected rows whose letters are due, oldest first, for `owner` (the
    /// daemon's `mqtt.client_id`): rows no daemon has taken, and rows `owner` took before (its
    /// letters in flight when it stopped). A row another daemon took is left to that daemon.
    pub async fn claim_dead_letters(
        &self,
        owner: &str,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // The outer condition repeats the inner one: on PostgreSQL a row another daemon took
        // meanwhile is re-checked after its lock and skipped, instead of taken twice.
        let sql = format!(
            "UPDATE events SET dead_letter_by = $1 WHERE id IN (SELECT id FROM events \
             WHERE status = 'rejected' AND dead_letter_at IS NULL \
             AND (dead_letter_by IS NULL OR dead_letter_by = $1) ORDER BY id LIMIT $2) \
             AND (dead_letter_by IS NULL OR dead_letter_by = $1) RETURNING {EVENT_COLUMNS}"
        );
        let rows: Vec<EventColumns> = on_pool!(self, pool, _Db => {
            sqlx::query_as(&sql).bind(owner).bind(limit).fetch_all(pool).await?
        });
        let mut letters = rows
            .into_iter()
            .map(StoredEvent::read)
            .collect::<Result<Vec<_>, StoreError>>()?;
        letters.sort_by_key(|l| l.id);
        Ok(letters)
    }

    /// Rejected rows whose letters the broker has not acknowledged yet (a gauge of the metrics:
    /// it stays above 0 while the broker cannot be reached).
    pub async fn dead_letters_due(&self) -> Result<i64, StoreError> {
        let sql =
            "SELECT COUNT(*) FROM events WHERE status = 'rejected' AND dead_letter_at IS NULL";
        let n =
            on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?);
        Ok(n)
    }

    /// Marks these rows' letters as acknowledged by the broker at `at` (epoch milliseconds).
    pub async fn mark_dead_letters(&self, ids: &[i64], at: i64) -> Result<(), StoreError> {
        for chunk in ids.chunks(CHUNK_ROWS) {
            on_pool!(self, pool, Db => {
                let mut q = QueryBuilder::<Db>::new("UPDATE events SET dead_letter_at = ");
                q.push_bind(at).push(" WHERE id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build().persistent(false).execute(pool).await?;
            });
        }
        Ok(())
    }

    /// Which of these [`payload_digest`]s belong to a payload rejected before. Every rejected
    /// row is stored with its digest, so a redelivery is recognised however the daemon that
    /// stored the first copy stopped. Rows older than migration 0015 have none: a payload
    /// rejected before the upgrade and redelivered after it is dead-lettered once more.
    pub async fn rejected_digests(
        &self,
        digests: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let sql =
            "SELECT payload_digest FROM events WHERE status = 'rejected' AND payload_digest IN (";
        self.found_among(sql, digests).await
    }
}
