//! Claims pause while this daemon writes a large set of notice rows.
//!
//! Why: a notice row is in the queue index from the moment it is written, long before its
//! transaction commits. A claim walks that index in claim order, and on PostgreSQL every entry
//! of the uncommitted write is one more heap visit that ends "not visible yet": during a
//! million-row fan-out each poll walks everything written so far, a second core's worth of work
//! fighting the write itself (measured: the outbox write of 1M rows took 1 s longer, the whole
//! commit 2 s, with the worker polling). On SQLite the claim would just queue behind the
//! writer's lock. Either way no claim can return one of those rows before the commit, so the
//! worker waits for it instead, and claims the moment it ends.
//!
//! Only this daemon's own writes pause its own worker; other daemons of a cluster keep polling
//! (their claims still see every committed notice, they just pay for the walk).

use std::future::Future;

use tokio::sync::watch;

/// From this many notice rows on, a write pauses claims. Below it the walk costs less than the
/// delay a pause could add to notices already due.
pub const LARGE_WRITE_ROWS: usize = 10_000;

/// Shared by the writers of the outbox (ingest, scheduled jobs) and the delivery worker of one
/// daemon. Cloning shares it. It counts the large writes in progress.
#[derive(Debug, Clone)]
pub struct ClaimPause(watch::Sender<usize>);

impl Default for ClaimPause {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

/// Held while a large write is in progress; claims resume when the last one is dropped.
#[derive(Debug)]
#[must_use = "claims resume as soon as the guard is dropped"]
pub struct PauseGuard(watch::Sender<usize>);

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.0.send_modify(|writes| *writes -= 1);
    }
}

impl ClaimPause {
    /// Pauses claims until the guard is dropped.
    pub fn hold(&self) -> PauseGuard {
        self.0.send_modify(|writes| *writes += 1);
        PauseGuard(self.0.clone())
    }

    /// Runs `write` of `rows` notice rows, pausing claims meanwhile if it is a large one.
    pub async fn around<T>(&self, rows: usize, write: impl Future<Output = T>) -> T {
        let _guard = (rows >= LARGE_WRITE_ROWS).then(|| self.hold());
        write.await
    }

    /// Whether a large write is in progress.
    pub fn is_held(&self) -> bool {
        *self.0.borrow() > 0
    }

    /// Resolves once no large write is in progress (at once if none is).
    pub async fn released(&self) {
        let mut writes = self.0.subscribe();
        // `self` is a sender, so the channel stays open and the wait cannot fail.
        let _ = writes.wait_for(|n| *n == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn released_waits_for_the_last_guard() {
        let pause = ClaimPause::default();
        pause.released().await; // nothing held: at once
        let first = pause.hold();
        let second = pause.hold();
        assert!(pause.is_held());
        let waiter = tokio::spawn({
            let pause = pause.clone();
            async move { pause.released().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(pause.is_held(), "one write is still in progress");
        assert!(!waiter.is_finished());
        drop(second);
        waiter.await.expect("waiter ends once both are dropped");
        assert!(!pause.is_held());
    }

    #[tokio::test]
    async fn only_large_writes_pause() {
        let pause = ClaimPause::default();
        let small = pause.around(LARGE_WRITE_ROWS - 1, async { pause.is_held() });
        assert!(!small.await);
        let large = pause.around(LARGE_WRITE_ROWS, async { pause.is_held() });
        assert!(large.await);
        assert!(!pause.is_held(), "released after the write");
    }
}
