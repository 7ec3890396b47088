//! SQLite without its memory statistics.
//!
//! By default SQLite counts the memory it holds, and each of its allocations and frees takes
//! one process-wide mutex to update the counts. sqlx runs every SQLite connection on a thread
//! of its own and hands row values (allocated by SQLite) to our threads, which free them
//! there: a fan-out's refills then contend for that mutex from two threads at once. Of the
//! 34,306 futex calls `perf` recorded with their call stacks in a 50,000-notice fan-out,
//! 13,693 were this mutex (docs/performance-history.md). Nothing here reads the statistics, so they
//! are turned off and SQLite allocates straight from the allocator (jemalloc, see `main.rs`).

use std::ffi::c_int;
use std::sync::OnceLock;

/// Whether SQLite runs without memory statistics: `true` once the setting took.
///
/// The setting can only change before SQLite initialises, which it does when the process
/// opens its first connection. So [`crate::store::Store::connect`] calls this before it opens
/// any; if something else opened a SQLite connection first, the setting is refused, SQLite
/// keeps counting (slower, not wrong), and this returns `false`.
pub fn without_memory_statistics() -> bool {
    static TOOK: OnceLock<bool> = OnceLock::new();
    *TOOK.get_or_init(|| {
        // SAFETY: `sqlite3_config` must not run while another thread uses SQLite. Every
        // connection of this process is opened by `Store::connect`, which waits for this
        // initialiser (OnceLock runs it once and blocks other callers until it returns).
        // Before initialisation SQLite only stores the flag; after, it returns SQLITE_MISUSE
        // and changes nothing. The variadic argument is the `int` this option takes.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as c_int)
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::warn!(
                code = rc,
                "SQLite was initialised before its memory statistics could be turned off; \
                 its allocations stay behind one process-wide mutex"
            );
        }
        rc == libsqlite3_sys::SQLITE_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_counts_no_memory_once_a_store_has_connected() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let store = crate::store::Store::connect(&url, 1).await.unwrap();
        store.migrate().await.unwrap();
        assert!(without_memory_statistics(), "the setting took");
        // With statistics on, an open connection holds some hundreds of kB by SQLite's count.
        // SAFETY: reading a counter; SQLite guards it itself and it may be read at any time.
        let counted = unsafe { libsqlite3_sys::sqlite3_memory_used() };
        assert_eq!(counted, 0, "SQLite still counts its memory");
        store.close().await;
    }
}
