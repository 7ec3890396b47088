//! What arrives from outside after a notice went out: delivery receipts, opt-outs and outage
//! reports from customers' replies.

use sqlx::Row;

use super::{on_pool, Store, StoreError};
use crate::domain::MessageSid;

/// A customer reached by an inbound message.
#[derive(Debug, Clone)]
pub struct Replier {
    pub customer_id: String,
    pub name: String,
    pub language: String,
    pub timezone: String,
}

/// What a delivery receipt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptEffect {
    /// No notice has this provider id.
    Unknown,
    /// Recorded on the notice.
    Recorded,
    /// The SMS failed: the notice is queued again for the customer's next channel.
    FallingBack,
}

/// A delivery receipt, as the provider's status callback gave it.
#[derive(Debug, Clone, Copy)]
pub struct Receipt<'a> {
    /// The notice the callback URL names (`None` for callbacks that do not).
    pub notice: Option<i64>,
    /// The provider's message sid.
    pub sid: &'a str,
    /// `delivered`, `undelivered`, `failed`, …
    pub status: &'a str,
    pub error_code: Option<&'a str>,
}

// A receipt that names its notice goes by primary key, checked against the sid; one that does
// not goes by sid (see `apply_receipt`). Each statement is written once; `$by` is the key
// condition, or empty. Two constant strings rather than one with an `OR`, which would keep
// SQLite from using the primary key.
macro_rules! receipt_fallback {
    ($by:literal) => {
        concat!(
            "UPDATE notices SET receipt = $2, state = 'queued', due_at = $3, updated_at = $3, reason = $4, \
             failed_channels = CASE WHEN failed_channels = '' THEN 'sms' ELSE failed_channels || '|sms' END \
             WHERE ",
            $by,
            "provider_id = $1 AND channel = 'sms' AND state = 'sent'"
        )
    };
}
macro_rules! receipt_record {
    ($by:literal) => {
        concat!(
            "UPDATE notices SET receipt = $2, updated_at = $3 WHERE ",
            $by,
            "provider_id = $1"
        )
    };
}
const RECEIPT_FALLBACK_BY_SID: &str = receipt_fallback!("");
const RECEIPT_FALLBACK_BY_ID: &str = receipt_fallback!("id = $5 AND ");
const RECEIPT_RECORD_BY_SID: &str = receipt_record!("");
const RECEIPT_RECORD_BY_ID: &str = receipt_record!("id = $4 AND ");

impl Store {
    /// Customers whose phone is `phone` (E.164), whatever its status.
    pub async fn customers_by_phone(&self, phone: &str) -> Result<Vec<Replier>, StoreError> {
        let sql = "SELECT customer_id, name, language, timezone FROM customers WHERE phone = $1 ORDER BY customer_id";
        let rows = on_pool!(self, pool, _Db => {
            let rows = sqlx::query(sql).bind(phone).fetch_all(pool).await?;
            rows.iter().map(|r| Ok(Replier {
                customer_id: r.try_get(0)?, name: r.try_get(1)?, language: r.try_get(2)?, timezone: r.try_get(3)?,
            })).collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// STOP (`stopped`) or START for every customer with this phone; START also clears an
    /// "invalid number" mark, since the number just texted us.
    pub async fn set_sms_stopped(&self, phone: &str, stopped: bool) -> Result<u64, StoreError> {
        let sql = if stopped {
            "UPDATE customers SET phone_status = 'stopped: the customer replied STOP' WHERE phone = $1"
        } else {
            "UPDATE customers SET phone_status = NULL WHERE phone = $1"
        };
        let n = on_pool!(self, pool, _Db => sqlx::query(sql).bind(phone).execute(pool).await?.rows_affected());
        Ok(n)
    }

    /// Claims an inbound message by its provider's sid before it is acted on: `false` when it
    /// was claimed before (a retried or replayed webhook). The primary key decides, so two
    /// deliveries of one message at the same moment cannot both win, on either backend.
    pub async fn claim_inbound(&self, sid: &MessageSid, at: i64) -> Result<bool, StoreError> {
        let sql = "INSERT INTO inbound_messages (message_sid, received_at) VALUES ($1, $2) \
                   ON CONFLICT (message_sid) DO NOTHING";
        let n = on_pool!(self, pool, _Db => sqlx::query(sql).bind(sid.as_str()).bind(at).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    /// Gives back the claim of a message that could not be answered, so that the provider's
    /// retry is answered rather than taken for a replay.
    pub async fn release_inbound(&self, sid: &MessageSid) -> Result<(), StoreError> {
        let sql = "DELETE FROM inbound_messages WHERE message_sid = $1";
        on_pool!(self, pool, _Db => sqlx::query(sql).bind(sid.as_str()).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Records a customer's own outage report.
    pub async fn record_report(
        &self,
        customer_id: &str,
        fault_id: Option<&str>,
        source: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO customer_reports (customer_id, fault_id, source, reported_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool, _Db => sqlx::query(sql).bind(customer_id).bind(fault_id).bind(source).bind(at).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Customer reports per fault, for these faults.
    pub async fn report_counts(
        &self,
        fault_ids: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for chunk in fault_ids.chunks(super::CHUNK_ROWS) {
            let rows: Vec<(String, i64)> = on_pool!(self, pool, Db => {
                let mut q = sqlx::QueryBuilder::<Db>::new("SELECT fault_id, COUNT(*) FROM customer_reports WHERE fault_id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(id.clone());
                }
                q.push(") GROUP BY fault_id");
                q.build_query_as().persistent(false).fetch_all(pool).await?
            });
            out.extend(rows);
        }
        Ok(out)
    }

    /// Applies an SMS delivery receipt. `failed`/`undelivered` on a sent SMS put the notice back
    /// in the queue with SMS added to its failed channels, so the worker falls back; a receipt
    /// for a notice that already moved on is only recorded.
    ///
    /// A receipt that names its notice is found by primary key, and must carry that notice's
    /// message sid. One that does not (a message sent before callbacks named their notice) is
    /// found by sid alone, which no index serves: an index of provider ids took an insert at a
    /// random place per notice sent, which in a large fan-out cost more than all else SQLite
    /// did (docs/performance-history.md).
    pub async fn apply_receipt(
        &self,
        receipt: &Receipt<'_>,
        now: i64,
    ) -> Result<ReceiptEffect, StoreError> {
        let failed = matches!(receipt.status, "failed" | "undelivered");
        let reason = format!(
            "SMS {} (error {})",
            receipt.status,
            receipt.error_code.filter(|c| !c.is_empty()).unwrap_or("-")
        );
        let (fallback, record) = match receipt.notice {
            Some(_) => (RECEIPT_FALLBACK_BY_ID, RECEIPT_RECORD_BY_ID),
            None => (RECEIPT_FALLBACK_BY_SID, RECEIPT_RECORD_BY_SID),
        };
        let effect = on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            let moved = if failed {
                let q = sqlx::query(fallback).bind(receipt.sid).bind(receipt.status).bind(now).bind(&reason);
                let q = match receipt.notice { Some(id) => q.bind(id), None => q };
                q.execute(&mut *tx).await?.rows_affected()
            } else {
                0
            };
            let effect = if moved > 0 {
                ReceiptEffect::FallingBack
            } else {
                let q = sqlx::query(record).bind(receipt.sid).bind(receipt.status).bind(now);
                let q = match receipt.notice { Some(id) => q.bind(id), None => q };
                if q.execute(&mut *tx).await?.rows_affected() > 0 {
                    ReceiptEffect::Recorded
                } else {
                    ReceiptEffect::Unknown
                }
            };
            tx.commit().await?;
            effect
        });
        Ok(effect)
    }

    /// The receipt recorded on a notice (tests, inspection).
    pub async fn receipt_of(&self, notice_id: i64) -> Result<Option<String>, StoreError> {
        let sql = "SELECT receipt FROM notices WHERE id = $1";
        let r = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, Option<String>>(sql).bind(notice_id).fetch_optional(pool).await?);
        Ok(r.flatten())
    }
}
