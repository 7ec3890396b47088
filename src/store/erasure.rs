//! Erasure of a customer: GDPR Art. 17, or a customer who left (docs/DATA.md, "Erasure").
//!
//! Two steps. The request ([`Store::erase_customer`]) erases at once what is personal: the
//! customer's row becomes a tombstone (the id and the time of the erasure; name, place,
//! contacts, push token and preferences blanked), their waiting notices are suppressed, the
//! texts and provider message ids of their settled notices are erased, and API audit rows whose
//! path names them keep the route instead. The completion ([`Store::complete_erasures`], run by
//! the retry sweeper) cuts the history from the person: every row that names the customer
//! (fault relations, outage episodes, notices, reports) moves to a fresh random pseudonym, and
//! the tombstone and the request go. Nothing keeps the pair (id, pseudonym): counts and fault
//! history stay, and nobody can tell whose they were.
//!
//! The completion waits for two things. A notice in flight (`sending`) keeps its row as the
//! sender left it, so that the sender can record what became of it; its text is erased when the
//! completion finds it settled. And a running daemon holds the customer in its book until its
//! reload reads the tombstone (`mapped_customers_since`), and may write under their id until
//! then (a relation to a new fault, a notice): the completion comes a grace period after the
//! request, so that it takes those rows along. A notice claimed meanwhile reads the tombstone's
//! contacts, which have no channel: it ends `suppressed`, never `sending`.

use super::bulk::BulkWrite;
use super::staged::Settle;
use super::{on_pool, Store, StoreError};
use crate::domain::CustomerId;

/// Why an erased customer's waiting notices are not sent.
pub(crate) const REASON: &str = "customer erased";

/// API paths about one customer start so. The audit log keeps writes under them by their route
/// ([`CUSTOMER_ROUTE`]): the id in such a path names the person.
pub const CUSTOMER_PATHS: &str = "/api/v1/customers/";
/// The route of a path under [`CUSTOMER_PATHS`] that names a customer.
pub const CUSTOMER_ROUTE: &str = "/api/v1/customers/{id}";

/// The customer's row becomes a tombstone (`$1` the id, `$2` now). Its change time goes past
/// every change a reload has seen, whatever this clock says: a reload reads the rows changed
/// after the newest time it saw, and a clock behind the importer's would hide the tombstone.
const TOMBSTONE: &str = "UPDATE customers SET name = '', lon = 0, lat = 0, phone = NULL, \
    email = NULL, push_token = NULL, phone_status = NULL, email_status = NULL, language = 'en', \
    channels = '', quiet_hours = NULL, timezone = 'UTC', critical = NULL, feeder = NULL, \
    service_point = NULL, erased_at = COALESCE(erased_at, $2), updated_at = (SELECT CASE \
    WHEN MAX(updated_at) < $2 THEN $2 ELSE MAX(updated_at) + 1 END FROM customers) \
    WHERE customer_id = $1";
/// `$1` the customer, `$2` the reason, `$3` now. `claimed` is a state older daemons left.
pub(crate) const SUPPRESS_WAITING: &str = "UPDATE notices SET state = 'suppressed', reason = $2, \
    updated_at = $3 WHERE customer_id = $1 AND state IN ('queued', 'claimed')";
/// The texts and the provider's message ids (which find the message, address and all, at the
/// provider) of the customer's notices `$1` that are not in flight.
const ERASE_TEXTS: &str = "UPDATE notices SET body = NULL, provider_id = NULL \
    WHERE customer_id = $1 AND state <> 'sending' \
    AND (body IS NOT NULL OR provider_id IS NOT NULL)";
/// Audit rows of the path `$1` and the paths below it keep the route `$2` instead; `$3` is the
/// length of `$1` plus one, where the rest of a path starts.
const AUDIT_BY_ROUTE: &str = "UPDATE api_audit SET path = $2 || substr(path, $3) \
    WHERE path = $1 OR substr(path, 1, $3) = $1 || '/'";
const REQUEST: &str = "INSERT INTO erasure_requests (customer_id, requested_at) VALUES ($1, $2) \
    ON CONFLICT (customer_id) DO NOTHING";
pub(crate) const IN_FLIGHT: &str =
    "SELECT COUNT(*) FROM notices WHERE customer_id = $1 AND state = 'sending'";
const DUE: &str = "SELECT customer_id FROM erasure_requests WHERE requested_at <= $1 \
    ORDER BY requested_at, customer_id";
pub(crate) const PENDING: &str = "SELECT customer_id FROM erasure_requests";
pub(crate) const TAKE_REQUEST: &str = "DELETE FROM erasure_requests WHERE customer_id = $1";
/// Every row that names the customer `$1` moves to the pseudonym `$2`. A pseudonym is fresh, so
/// no moved row meets a row of its key.
pub(crate) const UNLINK: [&str; 4] = [
    "UPDATE notices SET customer_id = $2, body = NULL, provider_id = NULL WHERE customer_id = $1",
    "UPDATE customer_outages SET customer_id = $2 WHERE customer_id = $1",
    "UPDATE outage_episodes SET customer_id = $2 WHERE customer_id = $1",
    "UPDATE customer_reports SET customer_id = $2 WHERE customer_id = $1",
];
/// Only a tombstone: a customer imported again under the id stays.
pub(crate) const DROP_TOMBSTONE: &str =
    "DELETE FROM customers WHERE customer_id = $1 AND erased_at IS NOT NULL";

/// What an erasure request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// The customer's notices in flight; their texts are erased once they settle.
    pub notices_in_flight: i64,
}

/// A fresh pseudonym: 128 random bits, derived from nothing, so that it leads nowhere.
pub(crate) fn pseudonym() -> String {
    format!("erased:{:032x}", rand::random::<u128>())
}

/// The paths that name the customer `id` as clients send them (as is, and percent-encoded
/// where the id has more than unreserved characters), each with its length plus one.
fn called_paths(id: &str) -> Vec<(String, i32)> {
    let encoded: String = id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut forms = vec![id.to_owned()];
    if encoded != id {
        forms.push(encoded);
    }
    forms
        .into_iter()
        .map(|form| {
            let path = format!("{CUSTOMER_PATHS}{form}");
            let rest = i32::try_from(path.chars().count() + 1).unwrap_or(i32::MAX);
            (path, rest)
        })
        .collect()
}

/// The completion proper, inside the transaction `$tx`, as of `$now`, for the customer `$id`
/// (`&str`) whose request the transaction took: waiting notices (late ones too) suppressed,
/// every row that names the customer moved to a fresh pseudonym, the tombstone dropped.
macro_rules! unlink_in {
    ($tx:expr, $id:expr, $now:expr) => {{
        use $crate::store::erasure as e;
        let id: &str = $id;
        let staged = $crate::store::staged::Settle::Customer(id);
        $crate::store::bulk::BulkWrite::suppress_staged(&mut *$tx, staged, e::REASON, $now).await?;
        sqlx::query(e::SUPPRESS_WAITING)
            .bind(id)
            .bind(e::REASON)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        let pseudonym = e::pseudonym();
        for sql in e::UNLINK {
            sqlx::query(sql)
                .bind(id)
                .bind(&pseudonym)
                .execute(&mut *$tx)
                .await?;
        }
        sqlx::query(e::DROP_TOMBSTONE)
            .bind(id)
            .execute(&mut *$tx)
            .await?;
    }};
}
pub(crate) use unlink_in;

/// Inside an import's transaction `$tx`, after the customers `$rows` (`&[CustomerRecord]`) are
/// written, as of `$now`: completes at once the pending erasures of ids the import brought
/// back, so that the customer imported starts without the history of the one erased (the
/// import wrote no history yet). Their notices in flight move to the pseudonym too: the sender
/// records by notice id.
macro_rules! complete_reimported {
    ($tx:expr, $rows:expr, $now:expr) => {{
        let pending: Vec<String> = sqlx::query_scalar($crate::store::erasure::PENDING)
            .fetch_all(&mut *$tx)
            .await?;
        if !pending.is_empty() {
            let imported: std::collections::HashSet<&str> =
                $rows.iter().map(|c| c.id.as_str()).collect();
            for id in pending.iter().filter(|id| imported.contains(id.as_str())) {
                sqlx::query($crate::store::erasure::TAKE_REQUEST)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                $crate::store::erasure::unlink_in!($tx, id, $now);
            }
        }
    }};
}
pub(crate) use complete_reimported;

impl Store {
    /// Requests the erasure of a customer and erases at once what is personal (see the module
    /// doc). `None` for an unknown customer, or one whose erasure is complete; asking again
    /// while it is pending does no harm.
    pub async fn erase_customer(
        &self,
        id: &CustomerId,
        now: i64,
    ) -> Result<Option<Erasure>, StoreError> {
        let id = id.as_str();
        let paths = called_paths(id);
        let erasure = on_pool!(self, pool, _Db => {
            let mut tx = pool.begin().await?;
            // First: a second request for the customer waits here for this one.
            let found = sqlx::query(TOMBSTONE).bind(id).bind(now).execute(&mut *tx).await?;
            if found.rows_affected() == 0 {
                return Ok(None);
            }
            BulkWrite::suppress_staged(&mut *tx, Settle::Customer(id), REASON, now).await?;
            sqlx::query(SUPPRESS_WAITING).bind(id).bind(REASON).bind(now).execute(&mut *tx).await?;
            sqlx::query(ERASE_TEXTS).bind(id).execute(&mut *tx).await?;
            for (path, rest) in &paths {
                sqlx::query(AUDIT_BY_ROUTE).bind(path).bind(CUSTOMER_ROUTE).bind(*rest)
                    .execute(&mut *tx).await?;
            }
            sqlx::query(REQUEST).bind(id).bind(now).execute(&mut *tx).await?;
            let in_flight: i64 = sqlx::query_scalar(IN_FLIGHT).bind(id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Erasure { notices_in_flight: in_flight }
        });
        Ok(Some(erasure))
    }

    /// Completes the pending erasures requested at or before `requested_before` whose notices
    /// have all settled, each in a transaction of its own. Returns how many.
    pub async fn complete_erasures(
        &self,
        requested_before: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let due: Vec<String> = on_pool!(self, pool, _Db => {
            sqlx::query_scalar(DUE).bind(requested_before).fetch_all(pool).await?
        });
        let mut completed = 0;
        for id in &due {
            let done = on_pool!(self, pool, _Db => {
                let mut tx = pool.begin().await?;
                // Taking the request comes first, a write: a SQLite transaction that reads first
                // cannot write once another connection has committed. Nothing to take: another
                // daemon's sweep completed it.
                let taken = sqlx::query(TAKE_REQUEST).bind(id).execute(&mut *tx).await?;
                let in_flight: i64 =
                    sqlx::query_scalar(IN_FLIGHT).bind(id).fetch_one(&mut *tx).await?;
                let ready = taken.rows_affected() > 0 && in_flight == 0;
                // Otherwise rolled back as `tx` drops: the request stays for the next sweep.
                if ready {
                    unlink_in!(tx, id, now);
                    tx.commit().await?;
                }
                ready
            });
            completed += u64::from(done);
        }
        Ok(completed)
    }

    /// Whether the customer's erasure is pending: their row is a tombstone, which the API
    /// treats as no customer.
    pub async fn is_erased(&self, id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM customers WHERE customer_id = $1 AND erased_at IS NOT NULL";
        let n: i64 =
            on_pool!(self, pool, _Db => sqlx::query_scalar(sql).bind(id).fetch_one(pool).await?);
        Ok(n > 0)
    }

    /// Erasures requested and not complete yet (inspection and tests).
    pub async fn pending_erasures(&self) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM erasure_requests";
        let n: i64 = on_pool!(self, pool, _Db => sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_customer_as_is_and_percent_encoded() {
        assert_eq!(
            called_paths("C-1"),
            vec![("/api/v1/customers/C-1".to_owned(), 22)]
        );
        let forms: Vec<String> = called_paths("a b/ü").into_iter().map(|p| p.0).collect();
        assert_eq!(
            forms,
            vec![
                "/api/v1/customers/a b/ü".to_owned(),
                "/api/v1/customers/a%20b%2F%C3%BC".to_owned()
            ]
        );
    }

    #[test]
    fn pseudonyms_are_fresh() {
        let (a, b) = (pseudonym(), pseudonym());
        assert_ne!(a, b);
        assert!(a.starts_with("erased:") && a.len() == 39, "{a}");
    }
}
