//! What the HTTP API reads and writes beyond the other layers' statements: API keys and their
//! audit log, generated server secrets, customer views and preferences, notice search,
//! resend and cancel.

use serde::Serialize;
use sqlx::Row;

use super::staged::Settle;
use super::{on_pool, Store, StoreError};
use crate::domain::{Email, Phone};

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// One write through the API.
#[derive(Debug, Clone, Serialize)]
pub struct ApiAuditRow {
    pub at: i64,
    pub key_id: String,
    pub role: String,
    pub method: String,
    pub path: String,
    pub status: i64,
}

/// A customer as the API shows it (contacts whole here; the API masks them by role).
#[derive(Debug, Clone, Serialize)]
pub struct CustomerView {
    pub customer_id: String,
    pub name: String,
    pub lon: f64,
    pub lat: f64,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub language: String,
    pub channels: String,
    pub quiet_hours: Option<String>,
    pub timezone: String,
    pub critical: Option<String>,
}

/// A notice as the API shows it (no body: it names the customer).
#[derive(Debug, Clone, Serialize)]
pub struct NoticeRow {
    pub id: i64,
    pub customer_id: String,
    pub fault_id: String,
    pub kind: String,
    pub state: String,
    pub channel: Option<String>,
    pub receipt: Option<String>,
    pub attempts: i64,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Notices of one fault in one channel (none while queued) and state; `delivered` when the
/// provider's receipt says so (the status documents count those apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeGroup {
    pub fault_id: String,
    pub channel: Option<String>,
    pub state: String,
    pub delivered: bool,
    pub count: i64,
}

/// What a resend request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    Queued,
    NoSuchNotice,
    /// The notice is queued, in flight or reached the customer: resending would send it twice.
    NotResendable(String),
}

/// A notice search: by customer and/or fault, newest first, paged by id.
#[derive(Debug, Clone, Default)]
pub struct NoticeQuery {
    pub customer_id: Option<String>,
    pub fault_id: Option<String>,
    pub state: Option<String>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

const CUSTOMER_COLUMNS: &str = "customer_id, name, lon, lat, phone, email, language, channels, \
                                quiet_hours, timezone, critical";

/// States a notice may be sent again from: it never reached the customer.
const RESENDABLE: [&str; 3] = ["failed", "unreachable", "suppressed"];

/// A row of [`Store::notice_groups`]: fault, channel, state, `delivered` or empty, count.
type GroupRow = (String, Option<String>, String, String, i64);

/// Appends `head`, then the ids as a bound list and `)`, when there are ids to filter by.
macro_rules! where_in {
    ($q:expr, $head:expr, $ids:expr) => {
        if let Some(ids) = $ids {
            $q.push($head);
            let mut list = $q.separated(", ");
            for id in ids {
                list.push_bind(id.clone());
            }
            $q.push(")");
        }
    };
}

impl Store {
    pub async fn create_api_key(
        &self,
        key: &ApiKeyRow,
        secret_hash: &str,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO api_keys (id, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(self, pool, _Db => sqlx::query(sql).bind(&key.id).bind(&key.name).bind(&key.role)
            .bind(secret_hash).bind(key.created_at).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// (role, secret hash) of a key that is not revoked.
    pub async fn api_key(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        let sql = "SELECT role, secret_hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL";
        let row = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, String)>(sql).bind(id).fetch_optional(pool).await?);
        Ok(row)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let sql =
            "SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id";
        let rows = on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(ApiKeyRow {
                id: r.try_get(0)?, name: r.try_get(1)?, role: r.try_get(2)?,
                created_at: r.try_get(3)?, revoked_at: r.try_get(4)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// Revokes a key; `false` when there is no such live key.
    pub async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let sql = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        let n = on_pool!(self, pool, _Db => sqlx::query(sql).bind(id).bind(now).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn record_api_write(&self, row: &ApiAuditRow) -> Result<(), StoreError> {
        let sql = "INSERT INTO api_audit (at, key_id, role, method, path, status) VALUES ($1, $2, $3, $4, $5, $6)";
        on_pool!(self, pool, _Db => sqlx::query(sql).bind(row.at).bind(&row.key_id).bind(&row.role)
            .bind(&row.method).bind(&row.path).bind(row.status).execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// The newest writes first.
    pub async fn api_audit(&self, limit: i64) -> Result<Vec<ApiAuditRow>, StoreError> {
        // `status` is an INTEGER column, read as i64 on both backends (PostgreSQL will not
        // decode an int4 as an i64: the audit listing failed there until this cast).
        let sql = "SELECT at, key_id, role, method, path, CAST(status AS BIGINT) FROM api_audit ORDER BY at DESC LIMIT $1";
        let rows = on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(ApiAuditRow {
                at: r.try_get(0)?, key_id: r.try_get(1)?, role: r.try_get(2)?, method: r.try_get(3)?,
                path: r.try_get(4)?, status: r.try_get(5)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// The secret stored under `name`, storing `candidate` first if there is none: the first
    /// daemon to ask decides, every other one (and every restart) reads the same value.
    pub async fn server_secret(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        let insert = "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
        let select = "SELECT value FROM server_secrets WHERE name = $1";
        let value = on_pool!(self, pool, _Db => {
            sqlx::query(insert).bind(name).bind(candidate).execute(pool).await?;
            sqlx::query_scalar::<_, String>(select).bind(name).fetch_one(pool).await?
        });
        Ok(value)
    }

    pub async fn customer(&self, id: &str) -> Result<Option<CustomerView>, StoreError> {
        Ok(self.customers(&[id.to_owned()]).await?.pop())
    }

    /// The customers with these ids (any order; unknown ids are left out).
    pub async fn customers(&self, ids: &[String]) -> Result<Vec<CustomerView>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::CHUNK_ROWS) {
            let rows = on_pool!(self, pool, Db => {
                let mut q = sqlx::QueryBuilder::<Db>::new(format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id IN ("));
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.clone());
                }
                q.push(")");
                let rows = q.build().persistent(false).fetch_all(pool).await?;
                rows.iter().map(|r| Ok(CustomerView {
                    customer_id: r.try_get(0)?, name: r.try_get(1)?, lon: r.try_get(2)?, lat: r.try_get(3)?,
                    // Validated on import; a value that no longer parses is shown as absent.
                    phone: r.try_get::<Option<String>, _>(4)?.and_then(|p| Phone::parse(&p).ok()),
                    email: r.try_get::<Option<String>, _>(5)?.and_then(|e| Email::parse(&e).ok()),
                    language: r.try_get(6)?, channels: r.try_get(7)?,
                    quiet_hours: r.try_get(8)?, timezone: r.try_get(9)?, critical: r.try_get(10)?,
                })).collect::<Result<Vec<_>, sqlx::Error>>()?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// A customer's own preferences (already validated); `false` for an unknown customer.
    /// `updated_at` moves so that every daemon reloads the customer.
    pub async fn set_preferences(
        &self,
        id: &str,
        channels: &str,
        language: &str,
        quiet_hours: Option<&str>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let sql =
            "UPDATE customers SET channels = $2, language = $3, quiet_hours = $4, updated_at = $5 \
                   WHERE customer_id = $1";
        let n = on_pool!(self, pool, _Db => sqlx::query(sql).bind(id).bind(channels).bind(language)
            .bind(quiet_hours).bind(now).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    pub async fn search_notices(&self, q: &NoticeQuery) -> Result<Vec<NoticeRow>, StoreError> {
        // A customer's staged notices are listed as the queued notices they are; a fault's are
        // counted (`notice_breakdown`) but listed once claimed: settling a million of them for
        // a page of fifty would cost the fan-out seconds.
        if let Some(customer) = &q.customer_id {
            let now = chrono::Utc::now().timestamp_millis();
            self.settle_staged(Settle::Customer(customer), None, now)
                .await?;
        }
        let sql =
            "SELECT id, customer_id, fault_id, kind, state, channel, receipt, attempts, reason, \
                   created_at, updated_at FROM notices \
                   WHERE ($1 IS NULL OR customer_id = $1) AND ($2 IS NULL OR fault_id = $2) \
                   AND ($3 IS NULL OR state = $3) AND ($4 IS NULL OR id < $4) \
                   ORDER BY id DESC LIMIT $5";
        let rows = on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).bind(&q.customer_id).bind(&q.fault_id).bind(&q.state)
                .bind(q.before_id).bind(q.limit).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(NoticeRow {
                id: r.try_get(0)?, customer_id: r.try_get(1)?, fault_id: r.try_get(2)?, kind: r.try_get(3)?,
                state: r.try_get(4)?, channel: r.try_get(5)?, receipt: r.try_get(6)?, attempts: r.try_get(7)?,
                reason: r.try_get(8)?, created_at: r.try_get(9)?, updated_at: r.try_get(10)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// Queues a notice that never reached its customer again, from its first channel.
    pub async fn resend_notice(&self, id: i64, now: i64) -> Result<Resend, StoreError> {
        let update =
            "UPDATE notices SET state = 'queued', due_at = $2, updated_at = $2, attempts = 0, \
                      failed_channels = '', reason = NULL \
                      WHERE id = $1 AND state IN ($3, $4, $5)";
        let state_of = "SELECT state FROM notices WHERE id = $1";
        let (changed, state) = on_pool!(self, pool, _Db => {
            let n = sqlx::query(update).bind(id).bind(now).bind(RESENDABLE[0]).bind(RESENDABLE[1])
                .bind(RESENDABLE[2]).execute(pool).await?.rows_affected();
            let state = sqlx::query_scalar::<_, String>(state_of).bind(id).fetch_optional(pool).await?;
            (n, state)
        });
        Ok(match (changed, state) {
            (1, _) => Resend::Queued,
            (_, None) => Resend::NoSuchNotice,
            (_, Some(state)) => Resend::NotResendable(state),
        })
    }

    /// Suppresses a fault's notices that are still waiting; those in flight go on.
    pub async fn cancel_queued_notices(
        &self,
        fault_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let staged = self
            .settle_staged(Settle::Fault(fault_id), Some(reason), now)
            .await?;
        let sql = "UPDATE notices SET state = 'suppressed', reason = $2, updated_at = $3 \
                   WHERE fault_id = $1 AND state = 'queued'";
        let n = on_pool!(self, pool, _Db => sqlx::query(sql).bind(fault_id).bind(reason).bind(now)
            .execute(pool).await?.rows_affected());
        Ok(staged + n)
    }

    /// (channel, state, count) of a fault's notices; a delivery receipt counts as `delivered`.
    pub async fn notice_breakdown(
        &self,
        fault_id: &str,
    ) -> Result<Vec<(Option<String>, String, i64)>, StoreError> {
        let sql = "SELECT c, s, CAST(SUM(n) AS BIGINT) FROM (\
                   SELECT channel AS c, CASE WHEN receipt = 'delivered' THEN 'delivered' ELSE state END AS s, \
                   COUNT(*) AS n FROM notices WHERE fault_id = $1 GROUP BY 1, 2 \
                   UNION ALL SELECT NULL, 'queued', (SELECT COUNT(*) FROM staged_notices st \
                   WHERE st.batch = b.batch) FROM notice_batches b WHERE b.fault_id = $1) AS t \
                   WHERE n > 0 GROUP BY 1, 2 ORDER BY 1, 2";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (Option<String>, String, i64)>(sql)
            .bind(fault_id).fetch_all(pool).await?);
        Ok(rows)
    }

    /// A fault's customer reports (OUT replies): (customer, source, when), newest first.
    pub async fn reports_of(
        &self,
        fault_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        let sql =
            "SELECT customer_id, source, reported_at FROM customer_reports WHERE fault_id = $1 \
                   ORDER BY reported_at DESC LIMIT $2";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, String, i64)>(sql)
            .bind(fault_id).bind(limit).fetch_all(pool).await?);
        Ok(rows)
    }

    /// The region of every fault that has an applied event, from the event's topic
    /// (`{base}/{region}/{fault_id}`); the newest event wins.
    pub async fn fault_regions(
        &self,
        events_filter: &str,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let sql = "SELECT fault_id, topic FROM events WHERE fault_id IS NOT NULL AND status = 'applied' ORDER BY id";
        let rows = on_pool!(self, pool, _Db => sqlx::query_as::<_, (String, String)>(sql).fetch_all(pool).await?);
        let base = format!("{}/", crate::ingest::mqtt::events_topic_base(events_filter));
        Ok(rows
            .into_iter()
            .filter_map(|(fault, topic)| {
                let region = topic.strip_prefix(&base)?.split('/').next()?.to_owned();
                Some((fault, region))
            })
            .collect())
    }

    /// Notices per (fault, channel, state, delivered) of these faults, or of every fault (the
    /// metrics' totals at start-up). Staged notices (PostgreSQL) are queued ones without a
    /// channel, counted batch by batch down the staged key as the status counts are.
    pub async fn notice_groups(
        &self,
        faults: Option<&[String]>,
    ) -> Result<Vec<NoticeGroup>, StoreError> {
        let Some(faults) = faults else {
            return self.notice_groups_of(None).await;
        };
        let mut out = Vec::new();
        for chunk in faults.chunks(super::CHUNK_ROWS) {
            out.extend(self.notice_groups_of(Some(chunk)).await?);
        }
        Ok(out)
    }

    async fn notice_groups_of(
        &self,
        faults: Option<&[String]>,
    ) -> Result<Vec<NoticeGroup>, StoreError> {
        let rows: Vec<GroupRow> = on_pool!(self, pool, Db => {
            let mut q = sqlx::QueryBuilder::<Db>::new(
                "SELECT fault_id, channel, state, CASE WHEN receipt = 'delivered' THEN 'delivered' \
                 ELSE '' END, COUNT(*) FROM notices",
            );
            where_in!(q, " WHERE fault_id IN (", faults);
            q.push(" GROUP BY 1, 2, 3, 4 UNION ALL SELECT b.fault_id, NULL, 'queued', '', \
                    (SELECT COUNT(*) FROM staged_notices s WHERE s.batch = b.batch) FROM notice_batches b");
            where_in!(q, " WHERE b.fault_id IN (", faults);
            q.build_query_as().persistent(false).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .filter(|row| row.4 > 0)
            .map(|(fault_id, channel, state, receipt, count)| NoticeGroup {
                fault_id,
                channel,
                state,
                delivered: receipt == "delivered",
                count,
            })
            .collect())
    }
}
