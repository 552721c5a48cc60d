//! Counters of one dimension table, summed over every join and subtask that uses it.
//!
//! Hits and misses count distinct keys per batch (rows that share a key within a batch are one
//! lookup). The latency histogram has Prometheus-style cumulative buckets so the admin API can
//! export it as it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (the last bucket is everything slower).
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

/// Counters of one table.
#[derive(Debug, Default)]
pub struct LookupMetrics {
    /// Keys found in the cache (a row or a remembered miss).
    pub cache_hits: AtomicU64,
    /// Keys the cache did not have (looked up in the system).
    pub cache_misses: AtomicU64,
    /// Partial cache: rows dropped because the cache was full.
    pub evictions: AtomicU64,
    /// Partial cache: rows dropped because they expired.
    pub expirations: AtomicU64,
    /// Queries sent (one per chunk of keys, retries included).
    pub queries: AtomicU64,
    /// Keys asked for in those queries.
    pub keys_fetched: AtomicU64,
    /// Queries that failed (each retry that failed counts).
    pub errors: AtomicU64,
    /// Full cache: completed loads (the first one included).
    pub loads: AtomicU64,
    /// Full cache: rows in the current snapshot.
    pub snapshot_rows: AtomicU64,
    /// Input rows that found a dimension row.
    pub rows_joined: AtomicU64,
    /// Input rows that found none (dropped by inner joins, kept with NULLs by left joins).
    pub rows_unmatched: AtomicU64,
    /// Query latency: count per bucket of [`LATENCY_BUCKETS_US`], plus one for slower.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// A copy of the counters, for summaries and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupSnapshot {
    /// See [`LookupMetrics::cache_hits`].
    pub cache_hits: u64,
    /// See [`LookupMetrics::cache_misses`].
    pub cache_misses: u64,
    /// See [`LookupMetrics::evictions`].
    pub evictions: u64,
    /// See [`LookupMetrics::expirations`].
    pub expirations: u64,
    /// See [`LookupMetrics::queries`].
    pub queries: u64,
    /// See [`LookupMetrics::keys_fetched`].
    pub keys_fetched: u64,
    /// See [`LookupMetrics::errors`].
    pub errors: u64,
    /// See [`LookupMetrics::loads`].
    pub loads: u64,
    /// See [`LookupMetrics::snapshot_rows`].
    pub snapshot_rows: u64,
    /// See [`LookupMetrics::rows_joined`].
    pub rows_joined: u64,
    /// See [`LookupMetrics::rows_unmatched`].
    pub rows_unmatched: u64,
    /// Median query latency (upper bound of its bucket), if any query ran.
    pub latency_p50: Option<Duration>,
    /// 99th percentile query latency (upper bound of its bucket).
    pub latency_p99: Option<Duration>,
}

impl LookupMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one query's latency.
    pub fn record_latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.iter().position(|&bound| micros <= bound).unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Query latencies per bucket (the last is everything above the last bound) and their sum.
    pub fn latency_histogram(&self) -> (Vec<u64>, Duration) {
        let counts = self.latency_buckets.iter().map(|count| count.load(Ordering::Relaxed)).collect();
        (counts, Duration::from_micros(self.latency_sum_us.load(Ordering::Relaxed)))
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> LookupSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (counts, _) = self.latency_histogram();
        LookupSnapshot {
            cache_hits: load(&self.cache_hits),
            cache_misses: load(&self.cache_misses),
            evictions: load(&self.evictions),
            expirations: load(&self.expirations),
            queries: load(&self.queries),
            keys_fetched: load(&self.keys_fetched),
            errors: load(&self.errors),
            loads: load(&self.loads),
            snapshot_rows: load(&self.snapshot_rows),
            rows_joined: load(&self.rows_joined),
            rows_unmatched: load(&self.rows_unmatched),
            latency_p50: quantile(&counts, 0.5),
            latency_p99: quantile(&counts, 0.99),
        }
    }
}

/// The upper bound of the bucket holding quantile `q`.
fn quantile(counts: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let bound = LATENCY_BUCKETS_US.get(bucket).copied().unwrap_or(u64::MAX);
            return Some(Duration::from_micros(bound));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_come_from_the_buckets() {
        let metrics = LookupMetrics::default();
        for _ in 0..98 {
            metrics.record_latency(Duration::from_micros(300));
        }
        metrics.record_latency(Duration::from_millis(20));
        metrics.record_latency(Duration::from_secs(10));
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.latency_p50, Some(Duration::from_micros(500)));
        assert_eq!(snapshot.latency_p99, Some(Duration::from_millis(25)));
        assert_eq!(metrics.latency_histogram().0.last(), Some(&1));
    }
}
