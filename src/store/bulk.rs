//! The row sets a large fault writes in one go — relation rows, episodes, notices, a million
//! each for a big storm — written the fastest way each backend offers: SQLite takes multi-row
//! `VALUES` statements (parsing is cheap in-process); PostgreSQL takes large sets by binary
//! `COPY` and the rest (or a set that meets existing rows) as a few arrays per statement
//! through `UNNEST`, so the server neither parses nor plans tens of thousands of placeholders.

use std::future::Future;

use sqlx::{PgConnection, QueryBuilder, Sqlite, SqliteConnection};

use super::copy::copy_fresh;
use super::notices::{same_kind_runs, EpisodeStart, NoticeIntent};
use super::staged;
use super::CHUNK_ROWS;

/// A customer joins a fault: (fault, customer, relation state, since).
pub(crate) type Join<'a> = (&'a str, &'a str, &'a str, i64);

/// Rows per SQLite notice insert: 4 bound values each, within its 32,766 parameters.
const SQLITE_NOTICE_ROWS: usize = 8000;
/// Rows per PostgreSQL array statement: big enough that statements are few, small enough
/// that one statement's arrays stay a few MiB.
const PG_ROWS: usize = 100_000;
/// From this many rows on, PostgreSQL gets them by `COPY` first (see [`copy_fresh`]); below,
/// the savepoint and the second round trip a conflict costs are not worth it. Copied rows go
/// in the order of their unique key: each B-tree insert then lands next to the previous one
/// (a million notice rows: 3.1 s in map order, 2.5 s sorted).
const PG_COPY_ROWS: usize = 1000;

/// The notices' unique key, in the order of its index.
fn notice_key(n: &NoticeIntent) -> (&str, i64, &str, &str) {
    (&n.customer_id, n.episode_started_at, n.kind, &n.variant)
}

/// Bulk writes on one connection (inside the caller's transaction).
pub(crate) trait BulkWrite {
    /// Inserts notice rows, skipping any that exist; resolves to the number created.
    fn insert_notices(
        &mut self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Writes the outbox of an outage change: on PostgreSQL a large set is staged (see
    /// [`super::staged`]), anything else inserted as by [`Self::insert_notices`]. Resolves to the
    /// number of notices written or staged.
    fn outbox_notices(
        &mut self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Suppresses the staged notices `which` selects (they become `suppressed` notices with
    /// `reason`); queued ones are left to the caller. Returns how many.
    fn suppress_staged(
        &mut self,
        which: staged::Settle<'_>,
        reason: &str,
        now: i64,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Inserts episode starts, skipping any that exist.
    fn insert_episodes(
        &mut self,
        starts: &[EpisodeStart],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Upserts fault–customer relation rows (a customer rejoining a fault is out again).
    fn join_members(
        &mut self,
        joins: &[Join<'_>],
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

const EPISODES_CONFLICT: &str = " ON CONFLICT (customer_id, started_at) DO NOTHING";
const MEMBERS_CONFLICT: &str = " ON CONFLICT (fault_id, customer_id) DO UPDATE SET \
    state = excluded.state, since = excluded.since, restored_at = NULL";
const NOTICES_CONFLICT: &str =
    " ON CONFLICT (customer_id, episode_started_at, kind, variant) DO NOTHING";

impl BulkWrite for SqliteConnection {
    /// Rows that share kind, variant and fault (all of a fan-out) bind those once per statement
    /// and only what varies per row, which makes statements of 8,000 rows possible.
    async fn insert_notices(
        &mut self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        let mut created = 0;
        for group in same_kind_runs(notices) {
            let first = &group[0];
            for chunk in group.chunks(SQLITE_NOTICE_ROWS) {
                let mut q = QueryBuilder::<Sqlite>::new(
                        "INSERT INTO notices (customer_id, episode_started_at, priority, due_at, kind, \
                         variant, fault_id, state, created_at, updated_at) \
                         SELECT v.column1, v.column2, v.column3, v.column4, ",
                    );
                q.push_bind(first.kind)
                    .push(", ")
                    .push_bind(first.variant.clone());
                q.push(", ")
                    .push_bind(first.fault_id.clone())
                    .push(", 'queued', ");
                q.push_bind(now).push(", ").push_bind(now).push(" FROM (");
                q.push_values(chunk, |mut b, n| {
                    b.push_bind(n.customer_id.clone())
                        .push_bind(n.episode_started_at)
                        .push_bind(n.priority)
                        .push_bind(n.due_at);
                });
                // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
                q.push(") AS v WHERE true").push(NOTICES_CONFLICT);
                created += q
                    .build()
                    .persistent(false)
                    .execute(&mut *self)
                    .await?
                    .rows_affected();
            }
        }
        Ok(created)
    }

    async fn outbox_notices(
        &mut self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        self.insert_notices(notices, now).await
    }

    /// SQLite stages nothing.
    async fn suppress_staged(
        &mut self,
        _: staged::Settle<'_>,
        _: &str,
        _: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(0)
    }

    async fn insert_episodes(&mut self, starts: &[EpisodeStart]) -> Result<(), sqlx::Error> {
        for chunk in starts.chunks(CHUNK_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outage_episodes (customer_id, started_at, first_fault_id) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.customer_id.clone())
                    .push_bind(e.started_at)
                    .push_bind(e.fault_id.clone());
            });
            q.push(EPISODES_CONFLICT);
            q.build().persistent(false).execute(&mut *self).await?;
        }
        Ok(())
    }

    async fn join_members(&mut self, joins: &[Join<'_>]) -> Result<(), sqlx::Error> {
        for chunk in joins.chunks(CHUNK_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO customer_outages (fault_id, customer_id, state, since) ",
            );
            q.push_values(chunk, |mut b, (f, c, s, at)| {
                b.push_bind(f.to_string())
                    .push_bind(c.to_string())
                    .push_bind(s.to_string())
                    .push_bind(*at);
            });
            q.push(MEMBERS_CONFLICT);
            q.build().persistent(false).execute(&mut *self).await?;
        }
        Ok(())
    }
}

impl BulkWrite for PgConnection {
    async fn insert_notices(
        &mut self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        if notices.len() >= PG_COPY_ROWS {
            let mut sorted: Vec<&NoticeIntent> = notices.iter().collect();
            sorted.sort_unstable_by(|a, b| notice_key(a).cmp(&notice_key(b)));
            let target = "notices (customer_id, episode_started_at, priority, due_at, kind, \
                 variant, fault_id, state, created_at, updated_at)";
            let copied = copy_fresh(self, target, 10, &sorted, |f, n| {
                f.text(&n.customer_id)
                    .int(n.episode_started_at)
                    .int(n.priority)
                    .int(n.due_at)
                    .text(n.kind)
                    .text(&n.variant)
                    .text(&n.fault_id)
                    .text("queued")
                    .int(now)
                    .int(now);
            });
            if let Some(n) = copied.await? {
                return Ok(n);
            }
        }
        let sql = format!(
                "INSERT INTO notices (customer_id, episode_started_at, priority, due_at, kind, variant, \
                 fault_id, state, created_at, updated_at) \
                 SELECT c, e, p, d, k, v, f, 'queued', $8, $8 FROM UNNEST($1::text[], $2::bigint[], \
                 $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[]) AS u(c, e, p, d, k, v, f)\
                 {NOTICES_CONFLICT}"
            );
        let mut created = 0;
        for chunk in notices.chunks(PG_ROWS) {
            let column = |f: fn(&NoticeIntent) -> String| chunk.iter().map(f).collect::<Vec<_>>();
            let number = |f: fn(&NoticeIntent) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
            created += sqlx::query(&sql)
                .bind(column(|n| n.customer_id.clone()))
                .bind(number(|n| n.episode_started_at))
                .bind(number(|n| n.priority))
                .bind(number(|n| n.due_at))
                .bind(column(|n| n.kind.to_owned()))
                .bind(column(|n| n.variant.clone()))
                .bind(column(|n| n.fault_id.clone()))
                .bind(now)
                .execute(&mut *self)
                .await?
                .rows_affected();
        }
        Ok(created)
    }

    async fn outbox_notices(
        &mut self,
        notices: &[NoticeIntent],
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        if notices.len() >= staged::STAGE_ROWS {
            if let Some(n) = staged::stage(self, notices, now).await? {
                return Ok(n);
            }
        }
        self.insert_notices(notices, now).await
    }

    async fn suppress_staged(
        &mut self,
        which: staged::Settle<'_>,
        reason: &str,
        now: i64,
    ) -> Result<u64, sqlx::Error> {
        staged::settle(self, which, Some(reason), now).await
    }

    async fn insert_episodes(&mut self, starts: &[EpisodeStart]) -> Result<(), sqlx::Error> {
        if starts.len() >= PG_COPY_ROWS {
            let mut sorted: Vec<&EpisodeStart> = starts.iter().collect();
            sorted.sort_unstable_by(|a, b| {
                (&a.customer_id, a.started_at).cmp(&(&b.customer_id, b.started_at))
            });
            let target = "outage_episodes (customer_id, started_at, first_fault_id)";
            let copied = copy_fresh(self, target, 3, &sorted, |f, e| {
                f.text(&e.customer_id).int(e.started_at).text(&e.fault_id);
            });
            if copied.await?.is_some() {
                return Ok(());
            }
        }
        let sql = format!(
            "INSERT INTO outage_episodes (customer_id, started_at, first_fault_id) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[]){EPISODES_CONFLICT}"
        );
        for chunk in starts.chunks(PG_ROWS) {
            sqlx::query(&sql)
                .bind(
                    chunk
                        .iter()
                        .map(|e| e.customer_id.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(chunk.iter().map(|e| e.started_at).collect::<Vec<_>>())
                .bind(chunk.iter().map(|e| e.fault_id.clone()).collect::<Vec<_>>())
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    async fn join_members(&mut self, joins: &[Join<'_>]) -> Result<(), sqlx::Error> {
        if joins.len() >= PG_COPY_ROWS {
            let mut sorted: Vec<&Join<'_>> = joins.iter().collect();
            sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let target = "customer_outages (fault_id, customer_id, state, since)";
            let copied = copy_fresh(
                self,
                target,
                4,
                &sorted,
                |f, (fault, customer, state, since)| {
                    f.text(fault).text(customer).text(state).int(*since);
                },
            );
            if copied.await?.is_some() {
                return Ok(());
            }
        }
        let sql = format!(
                "INSERT INTO customer_outages (fault_id, customer_id, state, since) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[]){MEMBERS_CONFLICT}"
            );
        for chunk in joins.chunks(PG_ROWS) {
            let text = |f: for<'j> fn(&'j Join<'j>) -> &'j str| {
                chunk
                    .iter()
                    .map(|j| f(j).to_owned())
                    .collect::<Vec<String>>()
            };
            sqlx::query(&sql)
                .bind(text(|j| j.0))
                .bind(text(|j| j.1))
                .bind(text(|j| j.2))
                .bind(chunk.iter().map(|j| j.3).collect::<Vec<i64>>())
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}
