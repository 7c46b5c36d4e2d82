//! How long the journal's fdatasync calls take: a process-wide latency histogram.
//!
//! This module owns the counters and nothing else. [`super::fs::RealFs`] records every data
//! sync of a journal file (the loop's own syncs, the syncer thread's, and the seal of a
//! segment), so the figure is the device's answer time, not the time a sync request waited in
//! a queue. Recording is a handful of relaxed atomic additions (no lock, no allocation), cheap
//! enough for every group commit; readers ([`snapshot`]) get cumulative bucket counts in the
//! Prometheus way. The counters only grow and reset with the process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (the last bucket, +Inf, is implicit).
pub const BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

static FSYNC: Histogram = Histogram {
    buckets: [const { AtomicU64::new(0) }; BUCKETS_US.len() + 1],
    count: AtomicU64::new(0),
    sum_us: AtomicU64::new(0),
};

/// Records one fdatasync that took `d`.
pub fn record(d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let i = BUCKETS_US.partition_point(|&b| b < us);
    FSYNC.buckets[i].fetch_add(1, Ordering::Relaxed);
    FSYNC.sum_us.fetch_add(us, Ordering::Relaxed);
    FSYNC.count.fetch_add(1, Ordering::Relaxed);
}

/// Times `f` (an fdatasync) and records it, whatever it returns.
pub fn timed<T>(f: impl FnOnce() -> T) -> T {
    let t = std::time::Instant::now();
    let r = f();
    record(t.elapsed());
    r
}

/// A reading of the histogram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// (upper bound in µs, observations ≤ it), cumulative, ascending.
    pub cumulative: Vec<(u64, u64)>,
    /// Every observation (the +Inf bucket).
    pub count: u64,
    pub sum_us: u64,
}

/// The histogram now. Read bucket by bucket while others record: each bucket is exact, and the
/// total is made at least the sum of the buckets so that the series stays monotonic.
pub fn snapshot() -> Snapshot {
    let mut acc = 0;
    let mut cumulative = Vec::with_capacity(BUCKETS_US.len());
    for (i, bound) in BUCKETS_US.iter().enumerate() {
        acc += FSYNC.buckets[i].load(Ordering::Relaxed);
        cumulative.push((*bound, acc));
    }
    acc += FSYNC.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
    Snapshot {
        cumulative,
        count: FSYNC.count.load(Ordering::Relaxed).max(acc),
        sum_us: FSYNC.sum_us.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        // The histogram is process-wide and other tests sync too: compare differences.
        let before = snapshot();
        record(Duration::from_micros(40));
        record(Duration::from_micros(50));
        record(Duration::from_micros(3_000));
        record(Duration::from_secs(5));
        let after = snapshot();
        let got = |s: &Snapshot, bound: u64| {
            s.cumulative
                .iter()
                .find(|(b, _)| *b == bound)
                .map(|(_, n)| *n)
                .unwrap()
        };
        assert!(got(&after, 50) - got(&before, 50) >= 2);
        assert!(got(&after, 5_000) - got(&before, 5_000) >= 3);
        assert!(after.count - before.count >= 4);
        assert!(after.sum_us - before.sum_us >= 5_003_090);
        for w in after.cumulative.windows(2) {
            assert!(w[0].1 <= w[1].1, "not cumulative: {:?}", after.cumulative);
        }
        assert!(after.cumulative.last().unwrap().1 <= after.count);
    }
}
