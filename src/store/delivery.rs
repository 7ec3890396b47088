//! Delivery's side of the outbox: claiming due notices, reading contacts, recording outcomes.

use sqlx::Row;

use super::{on_pool, Store, StoreError};
use crate::domain::Channel;

/// A notice claimed for sending (its row is `claimed` now, `sending` once its request leaves).
#[derive(Debug, Clone)]
pub struct ClaimedNotice {
    pub id: i64,
    pub customer_id: String,
    pub kind: String,
    pub variant: String,
    pub fault_id: String,
    pub episode_started_at: i64,
    /// Claims so far, this one included.
    pub attempts: i64,
    /// Channels that failed permanently for this notice, `|`-separated.
    pub failed_channels: String,
}

/// (staff id, name, phone, email, languages) of a staff member.
type StaffContact = (String, String, Option<String>, Option<String>, String);

/// A customer's contact row, as stored.
#[derive(Debug, Clone)]
pub struct ContactRow {
    pub customer_id: String,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub push_token: Option<String>,
    pub language: String,
    pub channels: String,
    pub timezone: String,
    pub critical: Option<String>,
    pub quiet_hours: Option<String>,
}

/// What became of a claimed notice.
#[derive(Debug, Clone)]
pub struct NoticeOutcome {
    pub id: i64,
    pub state: &'static str,
    pub channel: Option<String>,
    pub language: Option<String>,
    pub body: Option<String>,
    pub provider_id: Option<String>,
    pub reason: Option<String>,
    /// For a notice put back in the queue (`queued`): when to try again.
    pub due_at: Option<i64>,
    /// The notice's failed channels, when they changed.
    pub failed_channels: Option<String>,
    /// SMS segments the body took.
    pub segments: Option<i64>,
    /// The claim did not count as an attempt (it only found the customer's quiet hours).
    pub refund_attempt: bool,
}

/// A contact a provider refused for good.
#[derive(Debug, Clone)]
pub struct BadContact {
    pub customer_id: String,
    pub channel: Channel,
    pub reason: String,
}

/// A notice as an operator sees it.
#[derive(Debug, Clone)]
pub struct NoticeView {
    pub id: i64,
    pub state: String,
    pub channel: Option<String>,
    pub provider_id: Option<String>,
    pub attempts: i64,
    pub failed_channels: String,
    pub reason: Option<String>,
}

const CLAIM_SQLITE: &str = "UPDATE notices SET state = 'claimed', attempts = attempts + 1, updated_at = $1 \
    WHERE id IN (SELECT id FROM notices WHERE state = 'queued' AND due_at <= $1 ORDER BY priority, due_at, id LIMIT $2) \
    RETURNING id, customer_id, kind, fault_id, episode_started_at, attempts, failed_channels, variant";
// SKIP LOCKED lets several daemons claim from one outbox without waiting on each other.
const CLAIM_POSTGRES: &str = "UPDATE notices SET state = 'claimed', attempts = attempts + 1, updated_at = $1 \
    WHERE id IN (SELECT id FROM notices WHERE state = 'queued' AND due_at <= $1 ORDER BY priority, due_at, id \
    LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, customer_id, kind, fault_id, episode_started_at, attempts, failed_channels, variant";

/// The claimed notices of a claim's `RETURNING` rows.
macro_rules! claimed_from {
    ($rows:expr) => {
        $rows
            .iter()
            .map(|r| {
                Ok(ClaimedNotice {
                    id: r.try_get(0)?,
                    customer_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    fault_id: r.try_get(3)?,
                    episode_started_at: r.try_get(4)?,
                    attempts: r.try_get(5)?,
                    failed_channels: r.try_get(6)?,
                    variant: r.try_get(7)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    };
}

/// Whether an outcome is the common case, sent on the channel planned: written in bulk.
fn plainly_sent(o: &NoticeOutcome) -> bool {
    o.state == "sent" && o.due_at.is_none() && o.failed_channels.is_none()
}

// PostgreSQL takes a wave as one array per column: the statement text never changes, so it is
// parsed and planned once per connection rather than once per wave (a VALUES list of a few
// hundred rows is a new statement of a thousand placeholders every time).
const SENT_PG: &str = "UPDATE notices SET state = 'sent', reason = NULL, sent_at = $1, updated_at = $1, \
    channel = v.channel, language = v.language, body = v.body, provider_id = v.provider_id, \
    segments = v.segments FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
    $7::bigint[]) AS v(id, channel, language, body, provider_id, segments) WHERE notices.id = v.id";
const SENDING_PG: &str = "UPDATE notices SET state = 'sending', updated_at = $1 \
    FROM UNNEST($2::bigint[], $3::bigint[]) AS v(id, attempts) WHERE notices.id = v.id \
    AND notices.attempts = v.attempts AND notices.state = 'claimed' RETURNING notices.id";

/// Records plainly sent outcomes on PostgreSQL inside the caller's transaction.
async fn sent_pg(
    tx: &mut sqlx::PgConnection,
    sent: &[&NoticeOutcome],
    now: i64,
) -> Result<(), sqlx::Error> {
    let text = |f: fn(&NoticeOutcome) -> &Option<String>| {
        sent.iter()
            .map(|o| f(o).clone())
            .collect::<Vec<Option<String>>>()
    };
    sqlx::query(SENT_PG)
        .bind(now)
        .bind(sent.iter().map(|o| o.id).collect::<Vec<i64>>())
        .bind(text(|o| &o.channel))
        .bind(text(|o| &o.language))
        .bind(text(|o| &o.body))
        .bind(text(|o| &o.provider_id))
        .bind(
            sent.iter()
                .map(|o| o.segments)
                .collect::<Vec<Option<i64>>>(),
        )
        .execute(tx)
        .await?;
    Ok(())
}

/// Records the outcomes other than plainly sent, one statement each (they are few).
macro_rules! finish_one_by_one {
    ($tx:expr, $outcomes:expr, $now:expr) => {
        for o in $outcomes {
            sqlx::query(FINISH_ONE)
                .bind(o.state)
                .bind(o.channel.clone())
                .bind(o.language.clone())
                .bind(o.body.clone())
                .bind(o.provider_id.clone())
                .bind(o.reason.clone())
                .bind($now)
                .bind(o.id)
                .bind(o.due_at)
                .bind(o.failed_channels.clone())
                .bind(i64::from(o.refund_attempt))
                .bind(o.segments)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Records outcomes inside the caller's transaction. The common case, sent, is one statement
/// per chunk: a fan-out of a million notices is a million of these.
macro_rules! finish_in {
    ($tx:expr, $db:ty, $outcomes:expr, $now:expr) => {{
        let (sent, other): (Vec<&NoticeOutcome>, Vec<&NoticeOutcome>) =
            $outcomes.iter().partition(|o| plainly_sent(o));
        for chunk in sent.chunks(super::CHUNK_ROWS / 2) {
            let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE notices SET state = 'sent', reason = NULL, sent_at = ");
            q.push_bind($now).push(", updated_at = ").push_bind($now).push(
                ", channel = v.column2, language = v.column3, body = v.column4, provider_id = v.column5, \
                 segments = v.column6 FROM (",
            );
            q.push_values(chunk, |mut b, o| {
                b.push_bind(o.id).push_bind(o.channel.clone()).push_bind(o.language.clone())
                    .push_bind(o.body.clone()).push_bind(o.provider_id.clone()).push_bind(o.segments);
            });
            q.push(") AS v WHERE notices.id = v.column1");
            q.build().persistent(false).execute(&mut *$tx).await?;
        }
        finish_one_by_one!($tx, other, $now);
    }};
}

/// Updates claims that are still as claimed (`claimed`, same attempt number) inside the
/// caller's transaction, with `set` (a fixed SET clause); evaluates to the ids updated.
macro_rules! fenced_in {
    ($tx:expr, $db:ty, $claims:expr, $now:expr, $set:expr) => {{
        let mut marked: Vec<i64> = Vec::with_capacity($claims.len());
        for chunk in $claims.chunks(super::CHUNK_ROWS) {
            let mut q = sqlx::QueryBuilder::<$db>::new($set);
            q.push(", updated_at = ");
            q.push_bind($now).push(" FROM (");
            q.push_values(chunk, |mut b, (id, attempts)| {
                b.push_bind(*id).push_bind(*attempts);
            });
            q.push(
                ") AS v WHERE notices.id = v.column1 AND notices.attempts = v.column2 \
                    AND notices.state = 'claimed' RETURNING notices.id",
            );
            let ids: Vec<i64> = q
                .build_query_scalar()
                .persistent(false)
                .fetch_all(&mut *$tx)
                .await?;
            marked.extend(ids);
        }
        marked
    }};
}

/// Marks claims `sending` on SQLite inside the caller's transaction, fenced like
/// [`fenced_in!`]; returns the ids marked. Every claim is still ours unless a stale claim was
/// taken back meanwhile, so the update counts rows instead of returning them (sqlx hands each
/// returned row from SQLite's thread to ours one at a time: a million hops in a
/// million-notice fan-out), and only a short count asks which ones are ours.
async fn sending_sqlite(
    tx: &mut sqlx::SqliteConnection,
    claims: &[(i64, i64)],
    now: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut marked = 0;
    for chunk in claims.chunks(super::CHUNK_ROWS) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "UPDATE notices SET state = 'sending', updated_at = ",
        );
        q.push_bind(now).push(" FROM (");
        q.push_values(chunk, |mut b, (id, attempts)| {
            b.push_bind(*id).push_bind(*attempts);
        });
        q.push(
            ") AS v WHERE notices.id = v.column1 AND notices.attempts = v.column2 \
             AND notices.state = 'claimed'",
        );
        marked += q
            .build()
            .persistent(false)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    if marked == claims.len() as u64 {
        return Ok(claims.iter().map(|c| c.0).collect());
    }
    // Ours are the ones now `sending` under our attempt number, marked at `now`: a claim
    // number is never handed out twice.
    let mut ours = Vec::with_capacity(marked as usize);
    for chunk in claims.chunks(super::CHUNK_ROWS) {
        let mut q =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT notices.id FROM notices JOIN (");
        q.push_values(chunk, |mut b, (id, attempts)| {
            b.push_bind(*id).push_bind(*attempts);
        });
        q.push(
            ") AS v ON notices.id = v.column1 AND notices.attempts = v.column2 \
             WHERE notices.state = 'sending' AND notices.updated_at = ",
        );
        q.push_bind(now);
        let ids: Vec<i64> = q
            .build_query_scalar()
            .persistent(false)
            .fetch_all(&mut *tx)
            .await?;
        ours.extend(ids);
    }
    Ok(ours)
}

const FINISH_ONE: &str =
    "UPDATE notices SET state = $1, channel = $2, language = $3, body = $4, provider_id = $5, \
    reason = $6, sent_at = CASE WHEN $1 = 'sent' THEN $7 ELSE sent_at END, updated_at = $7, \
    due_at = COALESCE($9, due_at), failed_channels = COALESCE($10, failed_channels), \
    attempts = attempts - $11, segments = $12 WHERE id = $8";

impl Store {
    /// Marks up to `limit` due notices `claimed` (most urgent first) and returns them; each is
    /// marked `sending`, and committed so, before its request leaves.
    pub async fn claim_due_notices(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedNotice>, StoreError> {
        let rows = match self {
            Store::Sqlite(pool) => {
                let rows = sqlx::query(CLAIM_SQLITE)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool);
                claimed_from!(rows.await?)
            }
            Store::Postgres(pool) => {
                // Statistics lag a fan-out: just after a million notices were written the
                // planner still takes the queue for nearly empty, and plans a bitmap scan and a
                // sort of every queued notice per claim (0.1–0.5 s each; 20 s of a
                // million-notice fan-out). The queue index holds them in claim order already:
                // ruling the sort out makes a claim a walk of its first `limit` entries.
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL enable_sort = off")
                    .execute(&mut *tx)
                    .await?;
                let rows = sqlx::query(CLAIM_POSTGRES).bind(now).bind(limit);
                let rows = claimed_from!(rows.fetch_all(&mut *tx).await?);
                tx.commit().await?;
                rows
            }
        };
        let mut claimed = rows?;
        claimed.sort_by_key(|n| n.id);
        Ok(claimed)
    }

    /// Contacts of these recipients: customers, and staff (`staff:` ids, for dispatches) by
    /// SMS, else e-mail, in their first language.
    pub async fn contacts(&self, customer_ids: &[String]) -> Result<Vec<ContactRow>, StoreError> {
        let prefix = crate::staffing::service::STAFF_PREFIX;
        let (staff, customers): (Vec<String>, Vec<String>) = customer_ids
            .iter()
            .cloned()
            .partition(|id| id.starts_with(prefix));
        let mut out = self.customer_contacts(&customers).await?;
        for chunk in staff.chunks(super::CHUNK_ROWS) {
            let rows: Vec<StaffContact> = on_pool!(self, pool, Db => {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "SELECT staff_id, name, phone, email, languages FROM staff WHERE staff_id IN (",
                );
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.trim_start_matches(prefix).to_owned());
                }
                q.push(")");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            out.extend(
                rows.into_iter()
                    .map(|(id, name, phone, email, languages)| ContactRow {
                        customer_id: format!("{prefix}{id}"),
                        name,
                        phone,
                        email,
                        push_token: None,
                        language: languages.split('|').next().unwrap_or("en").to_owned(),
                        channels: "sms|email".into(),
                        timezone: "UTC".into(),
                        critical: Some("staff".into()),
                        quiet_hours: None,
                    }),
            );
        }
        Ok(out)
    }

    async fn customer_contacts(
        &self,
        customer_ids: &[String],
    ) -> Result<Vec<ContactRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in customer_ids.chunks(super::CHUNK_ROWS) {
            let rows = on_pool!(self, pool, Db => {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "SELECT customer_id, name, CASE WHEN phone_status IS NULL THEN phone END, \
                     CASE WHEN email_status IS NULL THEN email END, push_token, language, channels, timezone, \
                     critical, quiet_hours FROM customers WHERE customer_id IN (",
                );
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.clone());
                }
                q.push(")");
                let rows = q.build().persistent(false).fetch_all(pool).await?;
                rows.iter().map(|r| Ok(ContactRow {
                    customer_id: r.try_get(0)?, name: r.try_get(1)?, phone: r.try_get(2)?, email: r.try_get(3)?,
                    push_token: r.try_get(4)?, language: r.try_get(5)?, channels: r.try_get(6)?,
                    timezone: r.try_get(7)?, critical: r.try_get(8)?, quiet_hours: r.try_get(9)?,
                })).collect::<Result<Vec<_>, sqlx::Error>>()?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Records what became of claimed notices, in one transaction.
    pub async fn finish_notices(
        &self,
        outcomes: &[NoticeOutcome],
        now: i64,
    ) -> Result<(), StoreError> {
        self.advance_wave(outcomes, &[], now).await.map(drop)
    }

    /// One transaction per wave of sends: records the outcomes of the wave that just finished
    /// and marks the next wave `sending` (see [`Store::mark_sending`]). Returns the ids of the
    /// next wave that are still ours to send.
    pub async fn advance_wave(
        &self,
        finished: &[NoticeOutcome],
        next: &[(i64, i64)],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let marked = match self {
            Store::Sqlite(pool) => {
                type Db = sqlx::Sqlite;
                let mut tx = pool.begin().await?;
                finish_in!(tx, Db, finished, now);
                let marked = sending_sqlite(&mut tx, next, now).await?;
                tx.commit().await?;
                marked
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let (sent, other): (Vec<&NoticeOutcome>, Vec<&NoticeOutcome>) =
                    finished.iter().partition(|o| plainly_sent(o));
                if !sent.is_empty() {
                    sent_pg(&mut tx, &sent, now).await?;
                }
                finish_one_by_one!(tx, other, now);
                let marked = if next.is_empty() {
                    Vec::new()
                } else {
                    sqlx::query_scalar(SENDING_PG)
                        .bind(now)
                        .bind(next.iter().map(|n| n.0).collect::<Vec<i64>>())
                        .bind(next.iter().map(|n| n.1).collect::<Vec<i64>>())
                        .fetch_all(&mut *tx)
                        .await?
                };
                tx.commit().await?;
                marked
            }
        };
        Ok(marked)
    }

    /// (customer, episode, state) of the notices of `kind` for these (customer, episode) pairs.
    pub async fn notice_states_for(
        &self,
        pairs: &[(String, i64)],
        kind: &str,
    ) -> Result<Vec<(String, i64, String)>, StoreError> {
        let mut out = Vec::new();
        for chunk in pairs.chunks(super::CHUNK_ROWS) {
            let rows: Vec<(String, i64, String)> = on_pool!(self, pool, Db => {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "SELECT customer_id, episode_started_at, state FROM notices WHERE kind = ",
                );
                q.push_bind(kind.to_owned()).push(" AND (customer_id, episode_started_at) IN (");
                let mut list = q.separated(", ");
                for (c, e) in chunk {
                    list.push("(").push_bind_unseparated(c.clone()).push_unseparated(", ")
                        .push_bind_unseparated(*e).push_unseparated(")");
                }
                q.push(")");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Remembers contacts a provider called bad: a dead push token is forgotten; a phone or
    /// e-mail address gets a status that makes delivery skip it until it changes.
    pub async fn mark_bad_contacts(&self, bad: &[BadContact]) -> Result<(), StoreError> {
        on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            for b in bad {
                let id = &b.customer_id;
                let query = match b.channel {
                    Channel::Push => sqlx::query("UPDATE customers SET push_token = NULL WHERE customer_id = $1").bind(id),
                    Channel::Sms => sqlx::query("UPDATE customers SET phone_status = $2 WHERE customer_id = $1").bind(id).bind(&b.reason),
                    Channel::Email => sqlx::query("UPDATE customers SET email_status = $2 WHERE customer_id = $1").bind(id).bind(&b.reason),
                };
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Marks claimed notices `sending` just before their requests leave, fenced by the claim's
    /// attempt number: a notice that went stale and was claimed again by someone else is not
    /// ours to send any more. Returns the ids marked.
    pub async fn mark_sending(
        &self,
        claims: &[(i64, i64)],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.advance_wave(&[], claims, now).await
    }

    /// Puts claims that were never sent back in the queue (a worker stopping with claims in
    /// hand), fenced like [`Store::mark_sending`]; the claim does not count as an attempt.
    pub async fn release_claims(&self, claims: &[(i64, i64)], now: i64) -> Result<(), StoreError> {
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            fenced_in!(tx, Db, claims, now, "UPDATE notices SET state = 'queued', attempts = attempts - 1");
            tx.commit().await?;
        });
        Ok(())
    }

    /// Settles what a daemon that died mid-batch left behind, once older than `stale_before`
    /// (a live daemon finishes a batch long before). Notices left `sending` may have gone out:
    /// at most once means they are marked failed, not sent again. Notices only `claimed` never
    /// left: they go back in the queue. Returns how many were failed.
    pub async fn fail_interrupted_notices(
        &self,
        now: i64,
        stale_before: i64,
    ) -> Result<u64, StoreError> {
        let fail = "UPDATE notices SET state = 'failed', reason = 'interrupted while sending; not resent (at most once)', \
                    updated_at = $1 WHERE state = 'sending' AND updated_at < $2";
        let requeue = "UPDATE notices SET state = 'queued', updated_at = $1 WHERE state = 'claimed' AND updated_at < $2";
        let n = on_pool!(self, pool, _Db => {
            sqlx::query(requeue).bind(now).bind(stale_before).execute(pool).await?;
            sqlx::query(fail).bind(now).bind(stale_before).execute(pool).await?.rows_affected()
        });
        Ok(n)
    }

    /// A customer's notices of one kind, newest first (inspection and tests).
    pub async fn notices_of(
        &self,
        customer_id: &str,
        kind: &str,
    ) -> Result<Vec<NoticeView>, StoreError> {
        let sql = "SELECT id, state, channel, provider_id, attempts, failed_channels, reason FROM notices \
                   WHERE customer_id = $1 AND kind = $2 ORDER BY id DESC";
        let rows = on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).bind(customer_id).bind(kind).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(NoticeView {
                id: r.try_get(0)?, state: r.try_get(1)?, channel: r.try_get(2)?, provider_id: r.try_get(3)?,
                attempts: r.try_get(4)?, failed_channels: r.try_get(5)?, reason: r.try_get(6)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// (segments, notices) of sent SMS: how many took one segment, two, …
    pub async fn sms_segment_summary(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let sql =
            "SELECT segments, COUNT(*) FROM notices WHERE state = 'sent' AND channel = 'sms' \
                   AND segments IS NOT NULL GROUP BY segments ORDER BY segments";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (i64, i64)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// (channel, language, count) of sent notices, for summaries.
    pub async fn sent_summary(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql = "SELECT channel, language, COUNT(*) FROM notices WHERE state = 'sent' \
                   GROUP BY channel, language ORDER BY channel, language";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, String, i64)>(sql).fetch_all(pool).await?);
        Ok(rows)
    }
}
