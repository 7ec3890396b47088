//! Per-client rate limit for the public routes: a token bucket per client address, refusing
//! (429) rather than queueing — a self-service page can retry, a queue would be a way to pin
//! the daemon's memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle ones are dropped (a full bucket carries no information).
const MAX_CLIENTS: usize = 100_000;

pub struct PerClient {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl PerClient {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            per_sec,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`; `Err(seconds)` to wait when there is none.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), u64> {
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(()); // a poisoned lock must not take self-service down
        };
        if buckets.len() >= MAX_CLIENTS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_per_client() {
        let limit = PerClient::new(2.0, 3.0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check(a, t0), Ok(()));
        }
        assert_eq!(limit.check(a, t0), Err(1));
        assert_eq!(
            limit.check(b, t0),
            Ok(()),
            "another client has its own bucket"
        );
        assert_eq!(limit.check(a, t0 + Duration::from_millis(500)), Ok(()));
        assert!(limit.check(a, t0 + Duration::from_millis(500)).is_err());
    }
}
