//! All SQL lives here. One [`Store`] serves SQLite (one box) and PostgreSQL (scale-out); the SQL
//! text is shared (`$N` placeholders work in both) and [`on_pool!`] runs the same code against
//! whichever pool is configured, with the backend's own types.

mod api;
mod bulk;
mod copy;
mod delivery;
mod directory;
mod erasure;
mod events;
mod faults;
mod inbound;
mod notices;
mod sqlite_memory;
mod staffing;
mod staged;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use api::{ApiAuditRow, ApiKeyRow, CustomerView, NoticeGroup, NoticeQuery, NoticeRow, Resend};
pub use delivery::{
    BadContact, Claim, ClaimRequest, ClaimedNotice, ContactRow, Dependency, NoticeOutcome,
    NoticeView, QueueKey, RelatedState,
};
pub use erasure::{Erasure, CUSTOMER_PATHS, CUSTOMER_ROUTE};
pub use events::{payload_digest, EventRecord, EventStatus, StoredEvent};
pub use faults::{BatchWrite, FaultRow, MemberOp};
pub use inbound::{Receipt, ReceiptEffect, Replier};
pub use notices::{EpisodeEnd, EpisodeStart, NoticeIntent, Suppression};
pub use staffing::{AssignmentRow, AuditRow, StaffState};
pub use staged::StagedKey;

/// Rows a SQLite statement may run ahead of its reader (see `Store::connect`): a delivery
/// batch's claim or contact rows, at the default `notify.batch_size` and the bench's.
const SQLITE_ROW_CHANNEL: usize = 8192;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// A pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool and `$db` naming its database type.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $db:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
            $crate::store::Store::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Rows per multi-row statement: well under both backends' bind-parameter limits.
pub(crate) const CHUNK_ROWS: usize = 2000;

impl Store {
    /// Opens (and for SQLite creates) the database named by `url`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(StoreError::Connect)?;
            return Ok(Self::Postgres(pool));
        }
        sqlite_memory::without_memory_statistics();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Connect)?
            .create_if_missing(true)
            // WAL lets readers (API, status) run while the ingest transaction writes; NORMAL
            // sync is durable across process crashes, which is what SIGKILL safety needs.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // sqlx hands rows from its SQLite thread to ours through a bounded channel, 50 by
            // default: a claim of 8,192 rows then stops the thread every 50 rows until we have
            // read one, and each stop and start is a futex wake-up. With room for a whole batch
            // the thread runs through and we drain what it left.
            .row_buffer_size(SQLITE_ROW_CHANNEL);
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Connect(sqlx::Error::Io(e)))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Self::Sqlite(pool))
    }

    /// Applies the migrations of the backend (embedded at build time).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Cheap liveness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool, _Db => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// PostgreSQL's current WAL position in bytes (`None` on SQLite). Benchmarks take the
    /// difference over a phase: WAL written is a count of the server's write work that, unlike
    /// time, does not drift with a noisy machine.
    pub async fn wal_position(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(None),
            Self::Postgres(pool) => {
                let sql = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
                Ok(Some(sqlx::query_scalar(sql).fetch_one(pool).await?))
            }
        }
    }

    pub async fn close(&self) {
        on_pool!(self, pool, _Db => pool.close().await)
    }
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time {ms} out of range")))
}

pub(crate) fn opt_from_millis(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(from_millis).transpose()
}
