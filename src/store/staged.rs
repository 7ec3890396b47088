//! Staged notices: how PostgreSQL keeps a large fan-out's outbox (docs/NOTICES.md, "Staged
//! notices").
//!
//! A `notices` row is a dozen columns under four B-trees; a million of them took 6–7 s of the
//! fault's commit, and psql's own `COPY` of the bare heap 2.4–3.2 s. What the customers of a
//! fan-out share (fault, kind, variant, priority, due time) is the same for all of them, so the
//! commit writes it once, as a batch, and per customer only a narrow staged row under one
//! key. A claim turns staged rows into `notices` rows already `sending` — the unique key still
//! guards each notice, and a staged row whose notice exists is skipped — and deletes them, in
//! the claim's transaction: a staged row is a queued notice that has no id yet.
//!
//! Whatever needs a waiting notice as a row of its own (a suppression, a cancellation, an
//! operator's look at one customer) *settles* the staged rows it concerns: they become the
//! `queued` notices a direct write would have made, or straight away the `suppressed` ones a
//! suppression would have made of those. SQLite writes notices directly and never stages (its
//! tables exist, empty, so that shared queries read alike).

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection, Row};

use super::copy::copy_fresh;
use super::delivery::{claimed_from, ClaimedNotice};
use super::notices::NoticeIntent;

/// From this many notices on, PostgreSQL stages a set instead of writing it to `notices`.
pub(crate) const STAGE_ROWS: usize = 1000;

/// A set that falls into more batches than this is written directly: a batch is a round trip.
const MAX_BATCHES: usize = 64;

/// Where a claim reads a batch's staged notices from: after the last one claimed (see
/// [`super::ClaimRequest`]; deleted rows stay in the index until a vacuum, and a claim from
/// the batch's front would walk all of them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StagedKey {
    pub batch: i64,
    pub customer_id: String,
}

/// What a batch's notices share.
type BatchOf<'a> = (&'a str, &'static str, &'a str, i64, i64);

fn batch_of(n: &NoticeIntent) -> BatchOf<'_> {
    (&n.fault_id, n.kind, &n.variant, n.priority, n.due_at)
}

/// Stages `notices` inside the caller's transaction: `Some(rows staged)`, or `None` when the
/// set does not suit staging (too many batches, or a customer twice in one batch) and nothing
/// was written.
pub(crate) async fn stage(
    conn: &mut PgConnection,
    notices: &[NoticeIntent],
    now: i64,
) -> Result<Option<u64>, sqlx::Error> {
    let mut batches: BTreeMap<BatchOf<'_>, Vec<&NoticeIntent>> = BTreeMap::new();
    for n in notices {
        batches.entry(batch_of(n)).or_default().push(n);
        if batches.len() > MAX_BATCHES {
            return Ok(None);
        }
    }
    let mut savepoint = conn.begin().await?;
    let mut rows: Vec<(i64, &str, i64)> = Vec::with_capacity(notices.len());
    for ((fault, kind, variant, priority, due_at), members) in &batches {
        let batch: i64 = sqlx::query_scalar(
            "INSERT INTO notice_batches (fault_id, kind, variant, priority, due_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING batch",
        )
        .bind(*fault)
        .bind(*kind)
        .bind(*variant)
        .bind(*priority)
        .bind(*due_at)
        .bind(now)
        .fetch_one(&mut *savepoint)
        .await?;
        rows.extend(
            members
                .iter()
                .map(|n| (batch, n.customer_id.as_str(), n.episode_started_at)),
        );
    }
    // In key order, each index insert lands next to the previous one.
    rows.sort_unstable();
    let target = "staged_notices (batch, customer_id, episode_started_at)";
    let copied = copy_fresh(&mut savepoint, target, 3, &rows, |f, (b, c, e)| {
        f.int(*b).text(c).int(*e);
    })
    .await?;
    match copied {
        Some(_) => savepoint.commit().await?,
        None => savepoint.rollback().await?,
    }
    Ok(copied)
}

/// Due batches, most urgent first: (batch, priority).
pub(crate) async fn due_batches(
    tx: &mut PgConnection,
    now: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    // Sorted here: the claim's transaction rules sorts out (see `claim_pg`).
    let mut due: Vec<(i64, i64, i64)> =
        sqlx::query_as("SELECT priority, due_at, batch FROM notice_batches WHERE due_at <= $1")
            .bind(now)
            .fetch_all(tx)
            .await?;
    due.sort_unstable();
    Ok(due
        .into_iter()
        .map(|(priority, _, batch)| (batch, priority))
        .collect())
}

// SKIP LOCKED as for queued notices: several daemons share a batch. The picked rows are
// deleted by their `ctid` (a TID scan): a join back to the table by its key was planned as a
// scan of the whole batch. A staged row whose notice exists is deleted and not returned
// (ON CONFLICT DO NOTHING). No ORDER BY: the claim runs with sorts ruled out (see
// `claim_pg`), and a sort priced so is what set off JIT compilation, 50–110 ms a claim.
const CLAIM_STAGED: &str = "WITH gone AS (DELETE FROM staged_notices WHERE ctid = ANY(ARRAY(\
        SELECT ctid FROM staged_notices WHERE batch = $2 AND customer_id > $4 \
        ORDER BY customer_id LIMIT $3 FOR UPDATE SKIP LOCKED)) \
        RETURNING customer_id, episode_started_at) \
    INSERT INTO notices (customer_id, episode_started_at, priority, due_at, kind, variant, fault_id, \
        state, attempts, created_at, updated_at) \
    SELECT g.customer_id, g.episode_started_at, b.priority, b.due_at, b.kind, b.variant, b.fault_id, \
        'sending', 1, b.created_at, $1 FROM gone g JOIN notice_batches b ON b.batch = $2 \
    ON CONFLICT (customer_id, episode_started_at, kind, variant) DO NOTHING \
    RETURNING id, customer_id, kind, fault_id, episode_started_at, attempts, failed_channels, \
        variant, priority, due_at";

/// Claims up to `limit` staged notices of `batch` straight into `sending`, those after `after`
/// first, then from the batch's front; a batch found empty is deleted.
pub(crate) async fn claim_batch(
    tx: &mut PgConnection,
    batch: i64,
    limit: usize,
    after: Option<&StagedKey>,
    now: i64,
) -> Result<Vec<ClaimedNotice>, sqlx::Error> {
    let mut claimed = Vec::new();
    let mut from = after
        .filter(|k| k.batch == batch)
        .map(|k| k.customer_id.as_str());
    while claimed.len() < limit {
        let rows = sqlx::query(CLAIM_STAGED)
            .bind(now)
            .bind(batch)
            .bind(i64::try_from(limit - claimed.len()).unwrap_or(i64::MAX))
            .bind(from.unwrap_or(""))
            .fetch_all(&mut *tx)
            .await?;
        claimed.extend(claimed_from!(rows, Some(batch))?);
        if from.take().is_none() {
            if claimed.len() < limit {
                // Rows another daemon holds keep the batch (their claim deletes them).
                sqlx::query(
                    "DELETE FROM notice_batches WHERE batch = $1 \
                     AND NOT EXISTS (SELECT 1 FROM staged_notices WHERE batch = $1)",
                )
                .bind(batch)
                .execute(&mut *tx)
                .await?;
            }
            break;
        }
    }
    Ok(claimed)
}

/// Which staged notices to settle.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Settle<'a> {
    /// All of a fault's.
    Fault(&'a str),
    /// All of a customer's.
    Customer(&'a str),
    /// Those of a kind for these (customer, episode) pairs.
    Pairs(&'a str, &'a [(String, i64)]),
}

/// Turns the staged notices `which` names into notices (skipping any whose notice exists):
/// `queued`, or with `suppressed` already `suppressed` for that reason, which spares what is
/// about to suppress them a second write of each. Inside the caller's transaction; returns how
/// many were created.
pub(crate) async fn settle(
    tx: &mut PgConnection,
    which: Settle<'_>,
    suppressed: Option<&str>,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let (pairs, filter) = match which {
        Settle::Fault(_) => ("", "b.fault_id = $4"),
        Settle::Customer(_) => ("", "s.customer_id = $4"),
        Settle::Pairs(..) => (
            ", UNNEST($5::text[], $6::bigint[]) AS p(c, e)",
            "b.kind = $4 AND s.customer_id = p.c AND s.episode_started_at = p.e",
        ),
    };
    let sql = format!(
        "WITH gone AS (DELETE FROM staged_notices s USING notice_batches b{pairs} \
            WHERE s.batch = b.batch AND {filter} \
            RETURNING s.batch, s.customer_id, s.episode_started_at) \
         INSERT INTO notices (customer_id, episode_started_at, priority, due_at, kind, variant, \
            fault_id, state, reason, created_at, updated_at) \
         SELECT g.customer_id, g.episode_started_at, b.priority, b.due_at, b.kind, b.variant, \
            b.fault_id, $2, $3, b.created_at, $1 \
         FROM gone g JOIN notice_batches b ON b.batch = g.batch ORDER BY g.customer_id \
         ON CONFLICT (customer_id, episode_started_at, kind, variant) DO NOTHING"
    );
    let state = if suppressed.is_some() {
        "suppressed"
    } else {
        "queued"
    };
    let query = sqlx::query(&sql).bind(now).bind(state).bind(suppressed);
    let query = match which {
        Settle::Fault(id) | Settle::Customer(id) => query.bind(id),
        Settle::Pairs(kind, pairs) => query
            .bind(kind)
            .bind(pairs.iter().map(|p| p.0.clone()).collect::<Vec<_>>())
            .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>()),
    };
    Ok(query.execute(tx).await?.rows_affected())
}

impl super::Store {
    /// Settles the staged notices `which` names (PostgreSQL; SQLite stages nothing), as
    /// [`settle`] does, in a transaction of its own.
    pub(crate) async fn settle_staged(
        &self,
        which: Settle<'_>,
        suppressed: Option<&str>,
        now: i64,
    ) -> Result<u64, super::StoreError> {
        let Self::Postgres(pool) = self else {
            return Ok(0);
        };
        let mut conn = pool.acquire().await?;
        Ok(settle(&mut conn, which, suppressed, now).await?)
    }
}
