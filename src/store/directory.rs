//! Customers and staff.

use sqlx::{QueryBuilder, Row};

use super::{from_millis, millis, on_pool, Store, StoreError, CHUNK_ROWS};
use crate::directory::{CustomerRecord, StaffRecord};
use crate::domain::{Coord, CustomerId};
use crate::mapping::MappedCustomer;

impl Store {
    /// Inserts or replaces customers by id, in multi-row statements inside one transaction. An
    /// id whose erasure is pending comes back as a new customer: the erasure completes in the
    /// same transaction (docs/DATA.md, "Erasure").
    pub async fn upsert_customers(
        &self,
        rows: &[CustomerRecord],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(CHUNK_ROWS) {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO customers (customer_id, name, lon, lat, phone, email, push_token, language, \
                     channels, quiet_hours, timezone, critical, feeder, service_point, updated_at) ",
                );
                q.push_values(chunk, |mut b, c| {
                    b.push_bind(c.id.as_str().to_owned())
                        .push_bind(c.name.clone())
                        .push_bind(c.location.lon)
                        .push_bind(c.location.lat)
                        .push_bind(c.phone.as_ref().map(|p| p.as_str().to_owned()))
                        .push_bind(c.email.as_ref().map(|e| e.as_str().to_owned()))
                        .push_bind(c.push_token.clone())
                        .push_bind(c.language.as_str().to_owned())
                        .push_bind(c.channels_text())
                        .push_bind(c.quiet_hours.map(|q| q.to_string()))
                        .push_bind(c.timezone.name().to_owned())
                        .push_bind(c.critical.map(|k| k.as_str().to_owned()))
                        .push_bind(c.feeder.clone())
                        .push_bind(c.service_point.clone())
                        .push_bind(at);
                });
                q.push(
                    " ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, lon = excluded.lon, \
                     lat = excluded.lat, phone = excluded.phone, email = excluded.email, \
                     phone_status = CASE WHEN customers.phone IS NOT DISTINCT FROM excluded.phone THEN customers.phone_status END, \
                     email_status = CASE WHEN customers.email IS NOT DISTINCT FROM excluded.email THEN customers.email_status END, \
                     push_token = excluded.push_token, language = excluded.language, channels = excluded.channels, \
                     quiet_hours = excluded.quiet_hours, timezone = excluded.timezone, critical = excluded.critical, \
                     feeder = excluded.feeder, service_point = excluded.service_point, updated_at = excluded.updated_at, \
                     erased_at = NULL",
                );
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            // After the rows: a SQLite transaction that read first could not write once the
            // daemon has committed meanwhile.
            super::erasure::complete_reimported!(tx, rows, at);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Customers changed after `since_ms` (all when 0), as mapping sees them, with the newest
    /// change time seen.
    ///
    /// An erased customer (a tombstone, docs/DATA.md "Erasure") comes unplaced, so that a
    /// running daemon drops them from its faults and maps nobody there; a first load (0) leaves
    /// them out, since they are nobody's member any more.
    ///
    /// Strictly after: an import stamps all its rows with one time, so "at or after" the
    /// newest time seen would read a whole million-customer import again on every reload
    /// until some other customer changed. Imports are stamped with wall-clock milliseconds;
    /// only a second writer committing in the same millisecond as the newest row seen could
    /// be missed.
    pub async fn mapped_customers_since(
        &self,
        since_ms: i64,
    ) -> Result<(Vec<MappedCustomer>, i64), StoreError> {
        let sql = "SELECT customer_id, lon, lat, feeder, service_point, critical, updated_at, \
                   erased_at FROM customers \
                   WHERE updated_at > $1 AND ($1 > 0 OR erased_at IS NULL)";
        let mut newest = since_ms;
        let mut out = Vec::new();
        // Streamed, not fetched whole: SQLite rows hold copies of their values in SQLite's own
        // (C) heap, and a million of them at once left ~600 MiB there that the C allocator kept.
        on_pool!(self, pool, _Db => {
            let mut rows = sqlx::query(sql).bind(since_ms).fetch(pool);
            while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                let updated_at: i64 = r.try_get(6)?;
                newest = newest.max(updated_at);
                let id: String = r.try_get(0)?;
                let id = CustomerId::parse(&id).map_err(|e| StoreError::Corrupt(e.0))?;
                if r.try_get::<Option<i64>, _>(7)?.is_some() {
                    out.push(MappedCustomer::unplaced(id));
                    continue;
                }
                out.push(MappedCustomer {
                    id,
                    at: Coord::new(r.try_get(1)?, r.try_get(2)?).map_err(|e| StoreError::Corrupt(e.0))?,
                    feeder: r.try_get(3)?,
                    service_point: r.try_get(4)?,
                    critical: r.try_get::<Option<String>, _>(5)?.is_some_and(|c| !c.is_empty()),
                });
            }
        });
        Ok((out, newest))
    }

    pub async fn count_customers(&self) -> Result<i64, StoreError> {
        let n = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM customers WHERE erased_at IS NULL").fetch_one(pool).await?);
        Ok(n)
    }

    /// Inserts or replaces staff by id.
    pub async fn upsert_staff(
        &self,
        rows: &[StaffRecord],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let at = millis(now);
        on_pool!(self, pool, Db => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(CHUNK_ROWS) {
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO staff (staff_id, name, phone, email, skills, languages, lon, lat, status, \
                     max_shift_hours, updated_at) ",
                );
                q.push_values(chunk, |mut b, s| {
                    b.push_bind(s.id.as_str().to_owned())
                        .push_bind(s.name.clone())
                        .push_bind(s.phone.as_ref().map(|p| p.as_str().to_owned()))
                        .push_bind(s.email.as_ref().map(|e| e.as_str().to_owned()))
                        .push_bind(s.skills_text())
                        .push_bind(s.languages_text())
                        .push_bind(s.depot.lon)
                        .push_bind(s.depot.lat)
                        .push_bind(s.status.as_str().to_owned())
                        .push_bind(s.max_shift_hours)
                        .push_bind(at);
                });
                q.push(
                    " ON CONFLICT (staff_id) DO UPDATE SET name = excluded.name, phone = excluded.phone, \
                     email = excluded.email, skills = excluded.skills, languages = excluded.languages, \
                     lon = excluded.lon, lat = excluded.lat, status = excluded.status, \
                     max_shift_hours = excluded.max_shift_hours, updated_at = excluded.updated_at",
                );
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn count_staff(&self) -> Result<i64, StoreError> {
        let n = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM staff").fetch_one(pool).await?);
        Ok(n)
    }

    /// Newest customer change time, to start watching for imports from.
    pub async fn customers_watermark(&self) -> Result<i64, StoreError> {
        let n = on_pool!(self, pool, _Db => sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(updated_at) FROM customers").fetch_one(pool).await?);
        let _ = from_millis(n.unwrap_or(0))?;
        Ok(n.unwrap_or(0))
    }
}
