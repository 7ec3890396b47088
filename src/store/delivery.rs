//! Delivery's side of the outbox: claiming due notices, reading contacts, recording outcomes.

use sqlx::Row;

use super::staged::{self, Settle, StagedKey};
use super::{on_pool, Store, StoreError};
use crate::domain::Channel;

/// A notice claimed for sending: its row is `sending` from the claim's commit on.
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
    pub priority: i64,
    pub due_at: i64,
    /// The staged batch it was claimed from (PostgreSQL's large fan-outs), if any.
    pub staged: Option<i64>,
}

impl ClaimedNotice {
    /// Its place in the queue.
    pub fn key(&self) -> QueueKey {
        QueueKey {
            priority: self.priority,
            due_at: self.due_at,
            id: self.id,
        }
    }

    /// Its place among staged notices, if it was claimed from a batch.
    pub fn staged_key(&self) -> Option<StagedKey> {
        self.staged.map(|batch| StagedKey {
            batch,
            customer_id: self.customer_id.clone(),
        })
    }
}

/// A notice's place in the queue: claims take the smallest keys first (most urgent priority,
/// then earliest due).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueueKey {
    pub priority: i64,
    pub due_at: i64,
    pub id: i64,
}

impl QueueKey {
    /// Before every notice.
    const FRONT: Self = Self {
        priority: i64::MIN,
        due_at: i64::MIN,
        id: i64::MIN,
    };
}

/// What a refill claims: up to `limit` due notices, those after `after` first.
///
/// On PostgreSQL every notice claimed leaves a dead entry at the front of the queue index
/// until a vacuum, and a claim that reads the queue from its front walks all of them: midway
/// through a million-notice fan-out that is some 7.5 ms per claim, and a minute of the
/// server's CPU over the fan-out's refills (docs/performance-history.md). A claim after the last key
/// claimed starts past them. When fewer notices than `limit` are due after `after`, the claim
/// reads the rest from the front, so nothing behind the cursor waits for long. Staged notices
/// (PostgreSQL) are read the same way, after `after_staged` in their batch.
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    pub limit: usize,
    pub after: Option<QueueKey>,
    pub after_staged: Option<StagedKey>,
}

/// What a refill claimed, with what preparing it needs, read in the claim's transaction.
#[derive(Debug, Default)]
pub struct Claim {
    /// The claimed notices, `sending` once the refill commits, by id.
    pub notices: Vec<ClaimedNotice>,
    /// Their recipients' contacts (a recipient that no longer exists has none).
    pub contacts: Vec<ContactRow>,
    /// States of the notices the claimed ones depend on.
    pub related: Vec<RelatedState>,
}

/// Notices of `kind` (only those of `variant`, where given) depend on the notices of kind `on`
/// of the same customer and episode: a refill reads those notices' states with its claim.
#[derive(Debug, Clone, Copy)]
pub struct Dependency {
    pub kind: &'static str,
    pub variant: Option<&'static str>,
    pub on: &'static str,
}

impl Dependency {
    pub fn applies_to(&self, kind: &str, variant: &str) -> bool {
        self.kind == kind && self.variant.is_none_or(|v| v == variant)
    }
}

/// The state of a notice another one depends on: the outage notice of an `etr_update`, the
/// advance notices of a `planned_cancelled` (same customer and episode).
#[derive(Debug, Clone)]
pub struct RelatedState {
    pub customer_id: String,
    pub episode_started_at: i64,
    pub kind: String,
    pub state: String,
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

// A claim marks notices `sending` at once: the refill that claims them prepares them in the same
// transaction and records there whatever ends without a send, so from its commit on every
// `sending` row is one whose request is about to leave, and a crash leaves no other in doubt.
const CLAIM_SQLITE: &str = "UPDATE notices SET state = 'sending', attempts = attempts + 1, updated_at = $1 \
    WHERE id IN (SELECT id FROM notices WHERE state = 'queued' AND due_at <= $1 AND (priority, due_at, id) > ($3, $4, $5) \
    AND priority <= $6 ORDER BY priority, due_at, id LIMIT $2) \
    RETURNING id, customer_id, kind, fault_id, episode_started_at, attempts, failed_channels, variant, priority, due_at";
// SKIP LOCKED lets several daemons claim from one outbox without waiting on each other.
const CLAIM_POSTGRES: &str = "UPDATE notices SET state = 'sending', attempts = attempts + 1, updated_at = $1 \
    WHERE id IN (SELECT id FROM notices WHERE state = 'queued' AND due_at <= $1 AND (priority, due_at, id) > ($3, $4, $5) \
    AND priority <= $6 ORDER BY priority, due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
    RETURNING id, customer_id, kind, fault_id, episode_started_at, attempts, failed_channels, variant, priority, due_at";

/// The claimed notices of a claim's `RETURNING` rows, claimed from the staged batch `$staged`
/// (`Option<i64>`).
macro_rules! claimed_from {
    ($rows:expr, $staged:expr) => {
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
                    priority: r.try_get(8)?,
                    due_at: r.try_get(9)?,
                    staged: $staged,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    };
}
pub(super) use claimed_from;

/// Claims what `$request` asks for with `$sql` inside the transaction `$tx` (see
/// [`ClaimRequest`]), of priority `$up_to` or more urgent; evaluates to the claimed notices.
macro_rules! claim_in {
    ($tx:expr, $sql:expr, $request:expr, $up_to:expr, $now:expr) => {{
        let request: &ClaimRequest = $request;
        let mut claimed: Vec<ClaimedNotice> = Vec::new();
        let mut from = request.after;
        while request.limit > claimed.len() {
            let key = from.unwrap_or(QueueKey::FRONT);
            let rows = sqlx::query($sql)
                .bind($now)
                .bind(i64::try_from(request.limit - claimed.len()).unwrap_or(i64::MAX))
                .bind(key.priority)
                .bind(key.due_at)
                .bind(key.id)
                .bind($up_to)
                .fetch_all(&mut *$tx)
                .await?;
            claimed.extend(claimed_from!(rows, None)?);
            if from.take().is_none() {
                break; // read from the front: nothing more is due
            }
        }
        claimed
    }};
}

/// A claim on PostgreSQL, where notices wait in two places: queued notices, and the staged
/// notices of large fan-outs (see [`staged`]), each batch of one priority. Queued notices as
/// urgent as the most urgent due batch or more go first, then the batches in order, then the
/// rest of the queue: a retry of a critical customer's notice does not wait behind a million
/// outage notices, nor do a batch's critical customers behind a small fault's restorations.
async fn claim_pg(
    tx: &mut sqlx::PgConnection,
    claim: &ClaimRequest,
    now: i64,
) -> Result<Vec<ClaimedNotice>, sqlx::Error> {
    // Statistics lag a fan-out: just after a million notices were written the planner still
    // takes the queue for nearly empty, and plans a bitmap scan and a sort of every queued
    // notice per claim (0.1–0.5 s each; 20 s of a million-notice fan-out). The queue index
    // holds them in claim order already: ruling the sort out makes a claim a walk of `limit`
    // entries from where it starts (see `ClaimRequest`). A plan priced with a sort ruled out
    // costs more than PostgreSQL's JIT threshold, and compiling it took 50–110 ms a claim: JIT
    // off too (the claim's statements are all index walks of a few hundred rows).
    sqlx::query("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)")
        .execute(&mut *tx)
        .await?;
    let batches = staged::due_batches(tx, now).await?;
    let Some(&(_, most_urgent)) = batches.first() else {
        return Ok(claim_in!(tx, CLAIM_POSTGRES, claim, i64::MAX, now));
    };
    let mut claimed = claim_in!(tx, CLAIM_POSTGRES, claim, most_urgent, now);
    for (batch, _) in batches {
        let left = claim.limit.saturating_sub(claimed.len());
        if left == 0 {
            return Ok(claimed);
        }
        let after = claim.after_staged.as_ref();
        claimed.extend(staged::claim_batch(tx, batch, left, after, now).await?);
    }
    let rest = ClaimRequest {
        limit: claim.limit.saturating_sub(claimed.len()),
        ..claim.clone()
    };
    if rest.limit > 0 {
        claimed.extend(claim_in!(tx, CLAIM_POSTGRES, &rest, i64::MAX, now));
    }
    Ok(claimed)
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

/// A notice that ends `failed` after falling back keeps the error that ended its last channel
/// after the new reason: "every channel failed" alone would not tell an operator why.
const FINISH_ONE: &str =
    "UPDATE notices SET state = $1, channel = $2, language = $3, body = $4, provider_id = $5, \
    reason = CASE WHEN $1 = 'failed' AND failed_channels <> '' AND reason IS NOT NULL \
        THEN $6 || '; last error: ' || reason ELSE $6 END, \
    sent_at = CASE WHEN $1 = 'sent' THEN $7 ELSE sent_at END, updated_at = $7, \
    due_at = COALESCE($9, due_at), failed_channels = COALESCE($10, failed_channels), \
    attempts = attempts - $11, segments = $12 WHERE id = $8";

/// Contacts of these recipients (customers, and `staff:` ids), read through `$ex` (a pool or
/// `&mut *tx`, evaluated once per statement); evaluates to `Vec<ContactRow>`.
macro_rules! contacts_with {
    ($ex:expr, $db:ty, $ids:expr) => {{
        let prefix = crate::staffing::service::STAFF_PREFIX;
        let (staff, customers): (Vec<&str>, Vec<&str>) = $ids
            .iter()
            .map(|id| id.as_ref())
            .partition(|id: &&str| id.starts_with(prefix));
        let mut out: Vec<ContactRow> = Vec::with_capacity($ids.len());
        for chunk in customers.chunks(super::CHUNK_ROWS) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT customer_id, name, CASE WHEN phone_status IS NULL THEN phone END, \
                 CASE WHEN email_status IS NULL THEN email END, push_token, language, channels, timezone, \
                 critical, quiet_hours FROM customers WHERE customer_id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind((*id).to_owned());
            }
            q.push(")");
            let rows = q.build().persistent(false).fetch_all($ex).await?;
            for r in &rows {
                out.push(ContactRow {
                    customer_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    phone: r.try_get(2)?,
                    email: r.try_get(3)?,
                    push_token: r.try_get(4)?,
                    language: r.try_get(5)?,
                    channels: r.try_get(6)?,
                    timezone: r.try_get(7)?,
                    critical: r.try_get(8)?,
                    quiet_hours: r.try_get(9)?,
                });
            }
        }
        for chunk in staff.chunks(super::CHUNK_ROWS) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "SELECT staff_id, name, phone, email, languages FROM staff WHERE staff_id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.trim_start_matches(prefix).to_owned());
            }
            q.push(")");
            let rows: Vec<StaffContact> =
                q.build_query_as().persistent(false).fetch_all($ex).await?;
            out.extend(rows.into_iter().map(|(id, name, phone, email, languages)| ContactRow {
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
            }));
        }
        out
    }};
}

/// Pushes `(customer, episode)` pairs onto the query builder `$q` as a comma-separated list
/// of row values.
macro_rules! push_pairs {
    ($q:expr, $pairs:expr) => {{
        let mut list = $q.separated(", ");
        for (c, e) in $pairs {
            list.push("(")
                .push_bind_unseparated((*c).to_owned())
                .push_unseparated(", ")
                .push_bind_unseparated(*e)
                .push_unseparated(")");
        }
    }};
}

/// The states of the notices that claimed ones depend on (`$depends`: [`Dependency`]s), same
/// customer and episode, read inside the transaction `$tx`; evaluates to
/// `Vec<RelatedState>`.
macro_rules! related_in {
    ($tx:expr, $db:ty, $notices:expr, $depends:expr) => {{
        let mut out: Vec<RelatedState> = Vec::new();
        for dependency in $depends {
            let on: &str = dependency.on;
            let pairs: Vec<(&str, i64)> = $notices
                .iter()
                .filter(|n| dependency.applies_to(&n.kind, &n.variant))
                .map(|n| (n.customer_id.as_str(), n.episode_started_at))
                .collect();
            for chunk in pairs.chunks(super::CHUNK_ROWS) {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT customer_id, episode_started_at, state FROM notices WHERE kind = ",
                );
                q.push_bind(on.to_owned())
                    .push(" AND (customer_id, episode_started_at) IN (");
                push_pairs!(q, chunk);
                // A staged notice (PostgreSQL) is a queued one without a row of its own yet.
                // Its customers listed as well, so the lookup walks the staged key batch by
                // batch: with the pairs alone it was planned as a scan of every staged row,
                // 0.1–1.6 s a claim next to a million staged notices.
                q.push(
                    ") UNION ALL SELECT s.customer_id, s.episode_started_at, 'queued' \
                     FROM staged_notices s WHERE s.batch IN \
                     (SELECT batch FROM notice_batches WHERE kind = ",
                );
                q.push_bind(on.to_owned()).push(") AND s.customer_id IN (");
                let mut list = q.separated(", ");
                for (c, _) in chunk {
                    list.push_bind((*c).to_owned());
                }
                q.push(") AND (s.customer_id, s.episode_started_at) IN (");
                push_pairs!(q, chunk);
                q.push(")");
                let rows: Vec<(String, i64, String)> = q
                    .build_query_as()
                    .persistent(false)
                    .fetch_all(&mut *$tx)
                    .await?;
                out.extend(
                    rows.into_iter()
                        .map(|(customer_id, episode_started_at, state)| RelatedState {
                            customer_id,
                            episode_started_at,
                            kind: on.to_owned(),
                            state,
                        }),
                );
            }
        }
        out
    }};
}

/// The rest of a refill after its claim, inside the transaction `$tx`: reads what preparing the
/// claimed notices needs, runs `$prepare`, records the outcomes it ended them with; evaluates
/// to what `$prepare` returned.
macro_rules! prepared_in {
    ($tx:expr, $db:ty, $notices:expr, $depends:expr, $prepare:expr, $now:expr) => {{
        let mut notices: Vec<ClaimedNotice> = $notices;
        notices.sort_by_key(|n| n.id);
        let (contacts, related) = if notices.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let ids: Vec<&str> = notices.iter().map(|n| n.customer_id.as_str()).collect();
            let contacts = contacts_with!(&mut *$tx, $db, ids);
            (contacts, related_in!($tx, $db, notices, $depends))
        };
        let (ended, out) = $prepare(Claim {
            notices,
            contacts,
            related,
        });
        finish_one_by_one!($tx, &ended, $now);
        out
    }};
}

impl Store {
    /// One refill of the delivery window, in one transaction:
    /// 1. records `finished` (outcomes of sends that ended since the last refill);
    /// 2. claims the due notices `claim` asks for, most urgent first, straight into `sending`
    ///    (on PostgreSQL skipping rows another refill holds);
    /// 3. reads their recipients' contacts and the states of the notices of `depends` kinds
    ///    they depend on ([`Dependency`]), and hands all of it to `prepare`;
    /// 4. records the outcomes `prepare` ends without a send (suppressed, waiting for quiet
    ///    hours, unreachable), then commits and returns what `prepare` returned.
    ///
    /// Claiming, preparing and recording in one transaction is what lets a claim go straight to
    /// `sending` (one row write per notice fewer than a separate claim): nothing the claim did
    /// is visible before the commit, and from the commit on every claimed notice that is still
    /// `sending` is one whose request is about to leave, so a crash can leave only those in
    /// doubt. `prepare` runs inside the transaction and must be quick (no I/O).
    pub async fn refill<T>(
        &self,
        finished: &[NoticeOutcome],
        claim: ClaimRequest,
        depends: &[Dependency],
        now: i64,
        prepare: impl FnOnce(Claim) -> (Vec<NoticeOutcome>, T),
    ) -> Result<T, StoreError> {
        let out = match self {
            Store::Sqlite(pool) => {
                type Db = sqlx::Sqlite;
                let mut tx = pool.begin().await?;
                finish_in!(tx, Db, finished, now);
                let notices = claim_in!(tx, CLAIM_SQLITE, &claim, i64::MAX, now);
                let out = prepared_in!(tx, Db, notices, depends, prepare, now);
                tx.commit().await?;
                out
            }
            Store::Postgres(pool) => {
                type Db = sqlx::Postgres;
                let mut tx = pool.begin().await?;
                let (sent, other): (Vec<&NoticeOutcome>, Vec<&NoticeOutcome>) =
                    finished.iter().partition(|o| plainly_sent(o));
                if !sent.is_empty() {
                    sent_pg(&mut tx, &sent, now).await?;
                }
                finish_one_by_one!(tx, other, now);
                let notices = if claim.limit > 0 {
                    claim_pg(&mut tx, &claim, now).await?
                } else {
                    Vec::new()
                };
                let out = prepared_in!(tx, Db, notices, depends, prepare, now);
                tx.commit().await?;
                out
            }
        };
        Ok(out)
    }

    /// Contacts of these recipients: customers, and staff (`staff:` ids, for dispatches) by
    /// SMS, else e-mail, in their first language.
    pub async fn contacts(&self, customer_ids: &[String]) -> Result<Vec<ContactRow>, StoreError> {
        let rows = on_pool!(self, pool, Db => contacts_with!(pool, Db, customer_ids));
        Ok(rows)
    }

    /// Records what became of claimed notices, in one transaction.
    pub async fn finish_notices(
        &self,
        outcomes: &[NoticeOutcome],
        now: i64,
    ) -> Result<(), StoreError> {
        let nothing = ClaimRequest::default();
        self.refill(outcomes, nothing, &[], now, |_| (Vec::new(), ()))
            .await
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

    /// Settles what a daemon that died mid-batch left behind, once older than `stale_before`
    /// (a live daemon finishes a batch long before). Notices left `sending` may have gone out:
    /// at most once means they are marked failed, not sent again. Notices only `claimed` (a
    /// state that daemons before claims went straight to `sending` left behind) never left:
    /// they go back in the queue. Returns how many were failed.
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
        let now = chrono::Utc::now().timestamp_millis();
        self.settle_staged(Settle::Customer(customer_id), None, now)
            .await?;
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
