//! Per-component counters, shared by all subtasks of a component.
//!
//! Names follow Vector's component metrics (`component_received_events_total`,
//! `component_sent_events_total`, `component_errors_total`, `component_discarded_events_total`)
//! so dashboards carry over; the admin API will export them.

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
        }
    }
}

/// Which part of the graph a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Produces data.
    Source,
    /// Transforms data.
    Transform,
    /// Writes data out.
    Sink,
}

/// All components' metrics of one running pipeline, in declaration order.
#[derive(Debug, Default, Clone)]
pub struct PipelineMetrics {
    /// `(component name, role, counters)`.
    pub components: Vec<(String, Role, Arc<ComponentMetrics>)>,
}

impl PipelineMetrics {
    /// Sum of a counter over the components with this role.
    pub fn total(&self, role: Role, counter: impl Fn(&MetricsSnapshot) -> u64) -> u64 {
        self.components.iter().filter(|(_, r, _)| *r == role).map(|(_, _, m)| counter(&m.snapshot())).sum()
    }
}
