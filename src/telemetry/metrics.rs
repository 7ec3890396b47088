//! The process's own measurements for `/metrics`: histograms of what only this process sees
//! (send latency, solve time, outbox writes). Counts that the database already holds come from
//! it instead, so that a restart does not reset them: events are counted at scrape time, notices
//! (millions during a storm) are kept fault by fault by the status publisher
//! (`status::NoticeTotals`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A Prometheus histogram with fixed bucket bounds (seconds), updated without locks.
pub struct Histogram<const N: usize> {
    bounds: [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// Sum of observations in microseconds (an integer, so that it can be atomic).
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: [f64; N]) -> Self {
        Self {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, secs: f64) {
        // Buckets are cumulative in the exposition format; storing them per bound and summing
        // at render time keeps `observe` to one increment.
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((secs.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The sum of all observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Appends the histogram in the Prometheus text format.
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let sum = self.sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

const LATENCY_BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Time from a notice's request leaving to its provider's answer.
pub static SEND_LATENCY: Histogram<12> = Histogram::new(LATENCY_BOUNDS);

/// Time the staffing plan takes to solve (candidates, solver, certificate).
pub static SOLVE_TIME: Histogram<12> = Histogram::new(LATENCY_BOUNDS);

/// Time an ingest batch takes to write its notice rows (inside its transaction, before the
/// commit): a storm's fan-out is one such write.
pub static OUTBOX_WRITE: Histogram<12> = Histogram::new(LATENCY_BOUNDS);

/// Appends a gauge or counter with optional labels.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            // Label values come from our own enums and channel names; escape anyway.
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Appends the `# HELP` and `# TYPE` lines of a metric.
pub fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::new([0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render("x", "test", &mut out);
        assert!(out.contains("x_bucket{le=\"0.1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
        assert!(out.contains("x_sum 5.55\n"));
    }
}
