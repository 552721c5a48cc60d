//! Counters of one dimension table, summed over every join and subtask that uses it.
//!
//! Hits and misses count distinct keys per batch (rows that share a key within a batch are one
//! lookup). Query latency is a [`LatencyHistogram`], exported by the admin API as it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use weir_engine::metrics::LatencyHistogram;

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
    /// Query latency.
    pub latency: LatencyHistogram,
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
        self.latency.record(elapsed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> LookupSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
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
            latency_p50: self.latency.quantile(0.5),
            latency_p99: self.latency.quantile(0.99),
        }
    }
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
        assert_eq!(metrics.latency.buckets().1.last(), Some(&1));
    }
}
