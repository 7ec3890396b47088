//! PostgreSQL's binary `COPY`, for the row sets of a large fault. `COPY` is the server's
//! cheapest way in (no executor per row, no `ON CONFLICT` arbitration: speculative insertion
//! alone cost 1.3 s of a million notice rows), and the rows stream while they are encoded, so
//! the client's work overlaps the server's.
//!
//! `COPY` cannot skip a row that exists. A fresh fault's rows almost never do, so
//! [`copy_fresh`] tries `COPY` inside a savepoint and reports a unique violation as `None`,
//! the savepoint rolled back; the caller then takes its conflict-aware path.

use sqlx::{Connection, PgConnection};

/// Bytes encoded before they are handed to the connection: large enough that messages are
/// few, small enough that the server starts on the first rows at once.
const FLUSH_BYTES: usize = 1 << 20;

/// `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// One row's fields, in `COPY` binary format.
pub(crate) struct Fields<'b>(&'b mut Vec<u8>);

impl Fields<'_> {
    /// A `text` field.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.len(value.len());
        self.0.extend_from_slice(value.as_bytes());
        self
    }

    /// A `bigint` field.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.len(8);
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    fn len(&mut self, n: usize) {
        // Every value we copy is far below 2 GiB; saturate rather than wrap all the same.
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        self.0.extend_from_slice(&n.to_be_bytes());
    }
}

/// Copies `rows` into `target` (`table (col, …)`, `columns` of them) with binary `COPY` inside
/// a savepoint. `Some(rows copied)`, or `None` if a row already existed and nothing was
/// written.
pub(crate) async fn copy_fresh<T>(
    conn: &mut PgConnection,
    target: &str,
    columns: i16,
    rows: &[T],
    encode: impl Fn(&mut Fields<'_>, &T),
) -> Result<Option<u64>, sqlx::Error> {
    let mut savepoint = conn.begin().await?;
    match stream(&mut savepoint, target, columns, rows, encode).await {
        Ok(n) => {
            savepoint.commit().await?;
            Ok(Some(n))
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            savepoint.rollback().await?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn stream<T>(
    conn: &mut PgConnection,
    target: &str,
    columns: i16,
    rows: &[T],
    encode: impl Fn(&mut Fields<'_>, &T),
) -> Result<u64, sqlx::Error> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
        .await?;
    // Signature, flags, header extension length.
    let mut buf = Vec::with_capacity(FLUSH_BYTES + 4096);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&[0; 8]);
    for row in rows {
        buf.extend_from_slice(&columns.to_be_bytes());
        encode(&mut Fields(&mut buf), row);
        if buf.len() >= FLUSH_BYTES {
            copy.send(buf.as_slice()).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf).await?;
    copy.finish().await
}
