//! Outage episodes and the notice outbox, written in the ingest batch's transaction so that a
//! notice exists exactly when the outage change that calls for it exists.

use super::{on_pool, Store, StoreError};

/// A customer's outage episode began.
#[derive(Debug, Clone)]
pub struct EpisodeStart {
    pub customer_id: String,
    pub started_at: i64,
    pub fault_id: String,
}

/// A customer's open episode ended (a customer has at most one open episode).
#[derive(Debug, Clone)]
pub struct EpisodeEnd {
    pub customer_id: String,
    pub ended_at: i64,
}

/// A notice to create, unless one exists for the same (customer, episode, kind).
#[derive(Debug, Clone)]
pub struct NoticeIntent {
    pub customer_id: String,
    pub episode_started_at: i64,
    pub kind: &'static str,
    /// Tells apart several notices of one kind in one episode: the ETR announced, the advance
    /// offset of a planned notice; empty for the rest.
    pub variant: String,
    pub fault_id: String,
    /// 0 is sent first: critical customers, then outage notices, then the rest.
    pub priority: i64,
    pub due_at: i64,
}

/// Queued notices of `kind` for these (customer, episode) pairs are not to be sent.
#[derive(Debug, Clone)]
pub struct Suppression {
    pub pairs: Vec<(String, i64)>,
    pub kind: &'static str,
    pub reason: &'static str,
}

impl Store {
    /// Notices by kind and state, for one fault or all (inspection, status, tests); staged
    /// notices count as queued.
    pub async fn count_notices(
        &self,
        fault_id: Option<&str>,
        kind: &str,
        state: &str,
    ) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM outbox WHERE ($1 IS NULL OR fault_id = $1) AND kind = $2 AND state = $3";
        let fault_id = fault_id.map(str::to_owned);
        let n = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql).bind(fault_id).bind(kind).bind(state).fetch_one(pool).await?);
        Ok(n)
    }

    /// The variants of a fault's notices of one kind, sorted (inspection and tests).
    pub async fn notice_variants(
        &self,
        fault_id: &str,
        kind: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT variant FROM outbox WHERE fault_id = $1 AND kind = $2 ORDER BY variant";
        let rows = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, String>(sql).bind(fault_id).bind(kind).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Customers with at least one notice of `kind` (staged ones included), and how many each
    /// has, sorted by customer.
    pub async fn notices_per_customer(&self, kind: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT customer_id, COUNT(*) FROM outbox WHERE kind = $1 GROUP BY customer_id ORDER BY customer_id";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, i64)>(sql).bind(kind).fetch_all(pool).await?);
        Ok(rows)
    }

    /// Restoration notices with no outage notice of the same episode: always 0 when episodes
    /// are tracked right, across restarts too (tests).
    pub async fn unpaired_restorations(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM outbox r WHERE r.kind = 'restored' AND NOT EXISTS \
                   (SELECT 1 FROM outbox o WHERE o.kind = 'outage' AND o.customer_id = r.customer_id \
                   AND o.episode_started_at = r.episode_started_at)";
        let n =
            on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?);
        Ok(n)
    }

    /// Creates notices outside an ingest batch (scheduled jobs); returns how many were new.
    pub async fn create_notices(
        &self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> Result<u64, StoreError> {
        let created = on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            let created = super::bulk::BulkWrite::insert_notices(&mut *tx, notices, now).await?;
            tx.commit().await?;
            created
        });
        Ok(created)
    }

    /// Erases the text of notices created before `before` (the retention purge); the row, its
    /// state and timing stay for statistics. Notices keep no addresses, so the body (which names
    /// the customer) is the personal data. Returns how many were erased.
    pub async fn purge_notice_bodies(&self, before: i64) -> Result<u64, StoreError> {
        let sql = "UPDATE notices SET body = NULL WHERE created_at < $1 AND body IS NOT NULL";
        let n = on_pool!(self, pool, _Db => sqlx::query(sql).bind(before).execute(pool).await?.rows_affected());
        Ok(n)
    }

    /// (customer, start) of every open outage episode.
    pub async fn open_episodes(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT customer_id, started_at FROM outage_episodes WHERE ended_at IS NULL";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, i64)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }
}

/// Consecutive runs of intents with the same kind, variant and fault.
pub(crate) fn same_kind_runs(notices: &[NoticeIntent]) -> Vec<&[NoticeIntent]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=notices.len() {
        let boundary = i == notices.len() || {
            let (a, b) = (&notices[i - 1], &notices[i]);
            (a.kind, &a.variant, &a.fault_id) != (b.kind, &b.variant, &b.fault_id)
        };
        if boundary && i > start {
            runs.push(&notices[start..i]);
            start = i;
        }
    }
    runs
}

/// Writes episodes and notices inside the caller's transaction. A macro rather than a generic
/// function: it expands inside `on_pool!`, where the backend's concrete types are known.
macro_rules! write_notices {
    ($tx:expr, $db:ty, $w:expr) => {{
        $crate::store::bulk::BulkWrite::insert_episodes(&mut *$tx, &$w.episode_starts).await?;
        // One statement for all of a batch's ends; `column1`/`column2` name a VALUES list's
        // columns in both SQLite and PostgreSQL.
        for chunk in $w.episode_ends.chunks($crate::store::CHUNK_ROWS) {
            let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE outage_episodes SET ended_at = v.column2 FROM (");
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.customer_id.clone()).push_bind(e.ended_at);
            });
            q.push(") AS v WHERE outage_episodes.customer_id = v.column1 AND outage_episodes.ended_at IS NULL");
            q.build().persistent(false).execute(&mut *$tx).await?;
        }
        if !$w.notices.is_empty() {
            let started = std::time::Instant::now();
            $crate::store::bulk::BulkWrite::outbox_notices(&mut *$tx, &$w.notices, $w.now).await?;
            $crate::telemetry::metrics::OUTBOX_WRITE.observe(started.elapsed().as_secs_f64());
        }
        for s in &$w.suppressions {
            let which = $crate::store::staged::Settle::Pairs(s.kind, &s.pairs);
            $crate::store::bulk::BulkWrite::suppress_staged(&mut *$tx, which, s.reason, $w.now).await?;
            for chunk in s.pairs.chunks($crate::store::CHUNK_ROWS) {
                let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE notices SET state = 'suppressed', reason = ");
                q.push_bind(s.reason).push(", updated_at = ").push_bind($w.now)
                    .push(" WHERE state = 'queued' AND kind = ").push_bind(s.kind)
                    .push(" AND (customer_id, episode_started_at) IN (");
                let mut list = q.separated(", ");
                for (c, e) in chunk {
                    list.push("(").push_bind_unseparated(c.clone()).push_unseparated(", ").push_bind_unseparated(*e).push_unseparated(")");
                }
                q.push(")");
                q.build().persistent(false).execute(&mut *$tx).await?;
            }
        }
    }};
}
pub(crate) use write_notices;

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(kind: &'static str, fault: &str) -> NoticeIntent {
        NoticeIntent {
            customer_id: "C1".into(),
            episode_started_at: 0,
            kind,
            variant: String::new(),
            fault_id: fault.into(),
            priority: 1,
            due_at: 0,
        }
    }

    #[test]
    fn runs_split_where_kind_or_fault_changes() {
        let notices = [
            intent("outage", "F1"),
            intent("outage", "F1"),
            intent("restored", "F1"),
            intent("outage", "F2"),
        ];
        let lengths: Vec<usize> = same_kind_runs(&notices).iter().map(|r| r.len()).collect();
        assert_eq!(lengths, vec![2, 1, 1]);
        assert!(same_kind_runs(&[]).is_empty());
    }
}
