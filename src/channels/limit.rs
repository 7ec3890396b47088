//! Per-channel rate limits: a token bucket shared by every send of the daemon, so a fan-out of a
//! million notices stays inside what the provider's account allows.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `per_second` sends a second on average, with bursts of up to one second's worth.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    /// `None` for 0 (unlimited).
    pub fn new(per_second: f64) -> Option<Self> {
        (per_second > 0.0).then(|| Self {
            per_second,
            bucket: Mutex::new(Bucket {
                tokens: per_second.max(1.0),
                refilled: Instant::now(),
            }),
        })
    }

    /// Waits for a token. Waiting happens outside the lock, so other senders are not held up
    /// behind a sleeper; they simply find the bucket empty too and sleep their share.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().await;
                let now = Instant::now();
                let burst = self.per_second.max(1.0);
                let earned = now.duration_since(b.refilled).as_secs_f64() * self.per_second;
                b.tokens = (b.tokens + earned).min(burst);
                b.refilled = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: virtual time, so this checks the arithmetic, not the machine.
    #[tokio::test(start_paused = true)]
    async fn sends_at_most_the_rate_after_the_first_burst() {
        let limit = RateLimit::new(10.0).unwrap();
        let start = Instant::now();
        for _ in 0..30 {
            limit.acquire().await;
        }
        // 10 from the initial bucket, then 20 more at 10/s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (1.99..2.1).contains(&elapsed),
            "took {elapsed} virtual seconds"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_senders_share_one_bucket() {
        let limit = std::sync::Arc::new(RateLimit::new(5.0).unwrap());
        let start = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        limit.acquire().await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 20 sends at 5/s with a burst of 5: three seconds, whoever sends them.
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (2.99..3.2).contains(&elapsed),
            "took {elapsed} virtual seconds"
        );
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(RateLimit::new(0.0).is_none());
    }
}
