//! Per-component counters, shared by all subtasks of a component.
//!
//! Names follow Vector's component metrics (`component_received_events_total`,
//! `component_sent_events_total`, `component_errors_total`, `component_discarded_events_total`)
//! so dashboards carry over; the admin API exports them at `/metrics`.

use crate::graph::Role;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for one component.
#[derive(Debug, Default)]
pub struct ComponentMetrics {
    received_events: AtomicU64,
    sent_events: AtomicU64,
    errors: AtomicU64,
    discarded_events: AtomicU64,
    dead_lettered_events: AtomicU64,
    late_events: AtomicU64,
    state_bytes: std::sync::atomic::AtomicI64,
    peak_state_bytes: std::sync::atomic::AtomicI64,
    state_groups: std::sync::atomic::AtomicI64,
    peak_state_groups: std::sync::atomic::AtomicI64,
    blocked_nanos: AtomicU64,
    unacknowledged_events: AtomicU64,
    peak_unacknowledged_events: AtomicU64,
}

/// A point-in-time copy of [`ComponentMetrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// `component_received_events_total`: rows taken in (sources: rows decoded or generated).
    pub received_events: u64,
    /// `component_sent_events_total`: rows handed downstream (sinks: rows written).
    pub sent_events: u64,
    /// `component_errors_total`: bad records and failed operations.
    pub errors: u64,
    /// `component_discarded_events_total`: bad records skipped under `on_error: skip`.
    pub discarded_events: u64,
    /// Bad records sent to a dead-letter sink.
    pub dead_lettered_events: u64,
    /// Rows that arrived after their window closed and had no `.late` output to go to.
    pub late_events: u64,
    /// Bytes of operator state held now (windows, aggregates), over all subtasks.
    pub state_bytes: u64,
    /// The most `state_bytes` held at once.
    pub peak_state_bytes: u64,
    /// Open (window, key) groups now, over all subtasks.
    pub state_groups: u64,
    /// The most `state_groups` open at once.
    pub peak_state_groups: u64,
    /// Microseconds subtasks spent waiting to hand batches on because downstream was full
    /// (backpressure; the admin API reports it as a share of wall time).
    pub blocked_micros: u64,
    /// Sources: messages taken from the broker and not yet acknowledged to it, because sinks
    /// have not confirmed them (brokers bound this: Mosquitto queues 1,000 by default).
    pub unacknowledged_events: u64,
    /// The most `unacknowledged_events` at once.
    pub peak_unacknowledged_events: u64,
}

impl ComponentMetrics {
    /// Counts rows taken in.
    pub fn record_received(&self, rows: usize) {
        self.received_events.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Counts rows handed on.
    pub fn record_sent(&self, rows: usize) {
        self.sent_events.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Counts a bad record that was skipped.
    pub fn record_discarded(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.discarded_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a bad record that went to the dead-letter sink.
    pub fn record_dead_lettered(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.dead_lettered_events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error that stopped processing.
    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts rows dropped for arriving after their window closed.
    pub fn record_late(&self, rows: usize) {
        self.late_events.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Moves the state gauges by `bytes` and `groups` (each subtask reports its own changes).
    pub fn add_state(&self, bytes: i64, groups: i64) {
        let now = self.state_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak_state_bytes.fetch_max(now, Ordering::Relaxed);
        let now = self.state_groups.fetch_add(groups, Ordering::Relaxed) + groups;
        self.peak_state_groups.fetch_max(now, Ordering::Relaxed);
    }

    /// Counts time spent waiting for room downstream.
    pub fn record_blocked(&self, waited: std::time::Duration) {
        self.blocked_nanos.fetch_add(u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sets the number of messages a source holds unacknowledged.
    pub fn set_unacknowledged(&self, events: u64) {
        self.unacknowledged_events.store(events, Ordering::Relaxed);
        self.peak_unacknowledged_events.fetch_max(events, Ordering::Relaxed);
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            received_events: self.received_events.load(Ordering::Relaxed),
            sent_events: self.sent_events.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            discarded_events: self.discarded_events.load(Ordering::Relaxed),
            dead_lettered_events: self.dead_lettered_events.load(Ordering::Relaxed),
            late_events: self.late_events.load(Ordering::Relaxed),
            state_bytes: self.state_bytes.load(Ordering::Relaxed).max(0) as u64,
            peak_state_bytes: self.peak_state_bytes.load(Ordering::Relaxed).max(0) as u64,
            state_groups: self.state_groups.load(Ordering::Relaxed).max(0) as u64,
            peak_state_groups: self.peak_state_groups.load(Ordering::Relaxed).max(0) as u64,
            blocked_micros: self.blocked_nanos.load(Ordering::Relaxed) / 1_000,
            unacknowledged_events: self.unacknowledged_events.load(Ordering::Relaxed),
            peak_unacknowledged_events: self.peak_unacknowledged_events.load(Ordering::Relaxed),
        }
    }
}

/// All components' metrics of one running pipeline, in declaration order.
#[derive(Debug, Default, Clone)]
pub struct PipelineMetrics {
    /// `(component name, role, counters)`.
    pub components: Vec<(String, Role, Arc<ComponentMetrics>)>,
    /// Checkpoint counters and history (empty without checkpoints).
    pub checkpoints: Arc<crate::coordinator::CheckpointStats>,
}

impl PipelineMetrics {
    /// Sum of a counter over the components with this role.
    pub fn total(&self, role: Role, counter: impl Fn(&MetricsSnapshot) -> u64) -> u64 {
        self.components.iter().filter(|(_, r, _)| *r == role).map(|(_, _, m)| counter(&m.snapshot())).sum()
    }
}

/// Upper bounds of the latency buckets, in microseconds (the last bucket is everything slower).
pub const LATENCY_BUCKETS_US: [u64; 17] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]), shared by threads without
/// locks; exported as a Prometheus histogram (`plugin_call_seconds`, lookup latency).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn record(&self, elapsed: std::time::Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BUCKETS_US.iter().position(|&bound| micros <= bound).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The sum of all observations and the count per bucket (not cumulative; the last is
    /// everything above the last bound).
    pub fn buckets(&self) -> (std::time::Duration, Vec<u64>) {
        let counts = self.buckets.iter().map(|count| count.load(Ordering::Relaxed)).collect();
        (std::time::Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)), counts)
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|count| count.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound of the bucket holding quantile `q`, if anything was recorded.
    pub fn quantile(&self, q: f64) -> Option<std::time::Duration> {
        let (_, counts) = self.buckets();
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
                return Some(std::time::Duration::from_micros(bound));
            }
        }
        None
    }
}

/// A rate for people: `1.23M`, `45.6k`, `789`.
pub fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}
