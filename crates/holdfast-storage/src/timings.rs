//! A lock-free latency histogram, and the one storage fills: how long each
//! WAL sync (fsync) takes. Only counters live here; exporting them
//! (Prometheus text, HTTP) is the server's business, so storage stays free
//! of any metrics or HTTP dependency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds. Fixed (not configurable) so every
/// node exports the same series: 100 µs (NVMe with a write cache) to 2.5 s (a
/// disk in trouble); anything slower lands in `+Inf`.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Counts of observed durations per bucket, plus their sum and count.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative: `buckets[i]` counts observations in
    /// `(bound[i-1], bound[i]]`; the last slot counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a histogram, with cumulative bucket counts as the
/// Prometheus exposition format wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations <= bound)`, ascending.
    pub cumulative: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot =
            LATENCY_BUCKETS_SECONDS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        // Saturates after ~584 years of summed latency; wrapping is not a concern.
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the counters. Relaxed loads: a scrape racing a write may see the
    /// count and a bucket off by one, which monitoring tolerates.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = LATENCY_BUCKETS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, bucket)| {
                running += bucket.load(Ordering::Relaxed);
                (*bound, running)
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_overflow_goes_to_count_only() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.cumulative[0], (0.0001, 1));
        assert_eq!(s.cumulative.last().map(|b| b.1), Some(2));
        assert!(s.sum_seconds > 10.0);
    }
}
