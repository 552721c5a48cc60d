//! `/metrics` in the Prometheus text exposition format (version 0.0.4).
//!
//! Component counters use Vector's names and labels (`component_id`, `component_kind`,
//! `component_type`); plugins are labelled by registry name and version
//! (`<declared version>+<hash prefix>`); dimension tables by name; checkpoints have counters
//! and gauges of the last completed one.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::AdminContext;
use weir_engine::metrics::{LATENCY_BUCKETS_US, LatencyHistogram, MetricsSnapshot};
use weir_lookup::metrics::LookupSnapshot;
use weir_plugin::{PluginHandle, Version};

/// A family of component metrics: name, type, help, value.
type ComponentFamily = (&'static str, &'static str, &'static str, fn(&MetricsSnapshot) -> f64);
/// A counter family read from `T`: name, help, counter.
type CounterFamily<T> = (&'static str, &'static str, fn(&T) -> &AtomicU64);
/// A dimension-table counter family: name, help, value.
type TableFamily = (&'static str, &'static str, fn(&LookupSnapshot) -> u64);

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// One metric family: `# HELP`, `# TYPE` and its samples.
struct Family {
    out: String,
}

impl Family {
    fn new(out: &mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out: String::new() }
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name}{labels} {value}");
    }

    fn finish(self, out: &mut String) {
        out.push_str(&self.out);
    }
}

fn histogram(out: &mut String, name: &str, pairs: &[(&str, &str)], histogram: &LatencyHistogram) {
    let (sum, counts) = histogram.buckets();
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&counts) {
        cumulative += count;
        let le = format!("{}", *bound as f64 / 1e6);
        let mut with_le = pairs.to_vec();
        with_le.push(("le", &le));
        let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(&with_le));
    }
    cumulative += counts.last().copied().unwrap_or(0);
    let mut with_le = pairs.to_vec();
    with_le.push(("le", "+Inf"));
    let _ = writeln!(out, "{name}_bucket{} {cumulative}", labels(&with_le));
    let _ = writeln!(out, "{name}_sum{} {}", labels(pairs), sum.as_secs_f64());
    let _ = writeln!(out, "{name}_count{} {cumulative}", labels(pairs));
}

/// The whole exposition.
pub fn render(context: &AdminContext) -> String {
    let mut out = String::new();
    let components: Vec<_> = context
        .components
        .iter()
        .zip(&context.metrics.components)
        .map(|((name, role, kind, _), (_, _, metrics))| {
            let role = format!("{role:?}").to_lowercase();
            (name.clone(), role, kind.clone(), metrics.snapshot())
        })
        .collect();
    let component_families: [ComponentFamily; 9] = [
        ("component_received_events_total", "counter", "Events taken in.", |m| m.received_events as f64),
        ("component_sent_events_total", "counter", "Events handed downstream (sinks: written).", |m| {
            m.sent_events as f64
        }),
        ("component_errors_total", "counter", "Bad records and failed operations.", |m| m.errors as f64),
        ("component_discarded_events_total", "counter", "Bad records skipped by on_error: skip.", |m| {
            m.discarded_events as f64
        }),
        ("component_dead_lettered_events_total", "counter", "Bad records sent to a dead-letter sink.", |m| {
            m.dead_lettered_events as f64
        }),
        ("component_late_events_total", "counter", "Rows that arrived after their window closed.", |m| {
            m.late_events as f64
        }),
        ("component_blocked_seconds_total", "counter", "Time spent waiting for room downstream (backpressure).", |m| {
            m.blocked_micros as f64 / 1e6
        }),
        ("component_state_bytes", "gauge", "Bytes of operator state held (windows, aggregates).", |m| {
            m.state_bytes as f64
        }),
        (
            "component_unacknowledged_events",
            "gauge",
            "Sources: messages taken from the broker and not yet acknowledged (waiting for sinks).",
            |m| m.unacknowledged_events as f64,
        ),
    ];
    for (name, kind, help, value) in component_families {
        let mut family = Family::new(&mut out, name, kind, help);
        for (id, role, component_type, snapshot) in &components {
            let pairs = [
                ("component_id", id.as_str()),
                ("component_kind", role.as_str()),
                ("component_type", component_type.as_str()),
            ];
            family.sample(name, &labels(&pairs), value(snapshot));
        }
        family.finish(&mut out);
    }

    // Plugins: per version (current and kept history), then per plugin.
    let handles = context.plugins.handles();
    let versions: Vec<(String, std::sync::Arc<Version>)> = handles
        .iter()
        .flat_map(|handle| {
            let mut all = handle.history();
            all.push(handle.current());
            all.sort_by_key(|v| v.generation);
            all.dedup_by_key(|v| v.generation);
            all.into_iter().map(|v| (handle.name().to_owned(), v))
        })
        .collect();
    let per_version: [CounterFamily<Version>; 3] = [
        ("plugin_calls_total", "Batch calls into a plugin version.", |v| &v.stats.calls),
        ("plugin_rows_total", "Rows passed to a plugin version.", |v| &v.stats.rows),
        ("plugin_traps_total", "Traps of a plugin version (time limit, panics, memory).", |v| &v.stats.traps),
    ];
    for (name, help, counter) in per_version {
        let mut family = Family::new(&mut out, name, "counter", help);
        for (plugin, version) in &versions {
            let label = version.label();
            family.sample(
                name,
                &labels(&[("plugin", plugin), ("version", &label)]),
                counter(version).load(Ordering::Relaxed),
            );
        }
        family.finish(&mut out);
    }
    let _ = writeln!(out, "# HELP plugin_call_seconds Duration of batch calls into a plugin version.");
    let _ = writeln!(out, "# TYPE plugin_call_seconds histogram");
    for (plugin, version) in &versions {
        let label = version.label();
        histogram(
            &mut out,
            "plugin_call_seconds",
            &[("plugin", plugin), ("version", &label)],
            &version.stats.call_seconds,
        );
    }
    let per_plugin: [CounterFamily<PluginHandle>; 4] = [
        ("plugin_swaps_total", "New versions swapped in while running.", |h| &h.stats.swaps),
        ("plugin_rollbacks_total", "Earlier versions restored (asked for or automatic).", |h| &h.stats.rollbacks),
        ("plugin_automatic_rollbacks_total", "Versions rolled back for trapping or failing to instantiate.", |h| {
            &h.stats.automatic_rollbacks
        }),
        ("plugin_refused_versions_total", "New versions refused (incompatible, pinned, not instantiable).", |h| {
            &h.stats.refused
        }),
    ];
    for (name, help, counter) in per_plugin {
        let mut family = Family::new(&mut out, name, "counter", help);
        for handle in &handles {
            family.sample(name, &labels(&[("plugin", handle.name())]), counter(handle).load(Ordering::Relaxed));
        }
        family.finish(&mut out);
    }

    // Dimension tables: every counter the run summary prints.
    let tables: Vec<_> = context.tables.iter().map(|(name, table)| (name.clone(), table.metrics.snapshot())).collect();
    let table_families: [TableFamily; 10] = [
        ("lookup_cache_hits_total", "Keys found in a dimension table's cache.", |m| m.cache_hits),
        ("lookup_cache_misses_total", "Keys looked up in the system.", |m| m.cache_misses),
        ("lookup_cache_evictions_total", "Partial cache: rows dropped because the cache was full.", |m| m.evictions),
        ("lookup_cache_expirations_total", "Partial cache: rows dropped because they expired.", |m| m.expirations),
        ("lookup_queries_total", "Queries sent to the system.", |m| m.queries),
        ("lookup_keys_fetched_total", "Keys asked for in those queries.", |m| m.keys_fetched),
        ("lookup_loads_total", "Full cache: completed loads of the table.", |m| m.loads),
        ("lookup_rows_joined_total", "Input rows that found a dimension row.", |m| m.rows_joined),
        ("lookup_rows_unmatched_total", "Input rows that found no dimension row.", |m| m.rows_unmatched),
        ("lookup_errors_total", "Failed queries.", |m| m.errors),
    ];
    for (name, help, counter) in table_families {
        let mut family = Family::new(&mut out, name, "counter", help);
        for (table, snapshot) in &tables {
            family.sample(name, &labels(&[("table", table)]), counter(snapshot));
        }
        family.finish(&mut out);
    }
    let mut family =
        Family::new(&mut out, "lookup_snapshot_rows", "gauge", "Full cache: rows in the current snapshot.");
    for (table, snapshot) in &tables {
        family.sample("lookup_snapshot_rows", &labels(&[("table", table)]), snapshot.snapshot_rows);
    }
    family.finish(&mut out);
    let _ = writeln!(out, "# HELP lookup_query_seconds Latency of queries to a dimension table's system.");
    let _ = writeln!(out, "# TYPE lookup_query_seconds histogram");
    for (name, table) in context.tables.iter() {
        histogram(&mut out, "lookup_query_seconds", &[("table", name)], &table.metrics.latency);
    }
    checkpoints(&mut out, &context.metrics.checkpoints);
    out
}

/// Checkpoint counters, and gauges of the last completed checkpoint (Flink's
/// `lastCheckpointDuration`, `lastCheckpointSize`).
fn checkpoints(out: &mut String, stats: &weir_engine::coordinator::CheckpointStats) {
    let counters: [CounterFamily<weir_engine::coordinator::CheckpointStats>; 3] = [
        ("checkpoints_completed_total", "Checkpoints completed (metadata written).", |s| &s.completed),
        ("checkpoints_failed_total", "Checkpoints aborted (timeout, storage failure, a source finished).", |s| {
            &s.failed
        }),
        ("job_restarts_total", "Times the job was started again from its last checkpoint after a task failed.", |s| {
            &s.restarts
        }),
    ];
    for (name, help, counter) in counters {
        let mut family = Family::new(out, name, "counter", help);
        family.sample(name, "", counter(stats).load(Ordering::Relaxed));
        family.finish(out);
    }
    let Some(last) = stats.history().into_iter().rev().find(|record| record.failure.is_none()) else { return };
    let gauges = [
        (
            "checkpoint_duration_seconds",
            "The last completed checkpoint: trigger to commit.",
            last.duration_ms as f64 / 1e3,
        ),
        (
            "checkpoint_alignment_seconds",
            "The last completed checkpoint: trigger until every task reported (barrier travel and alignment).",
            last.alignment_ms as f64 / 1e3,
        ),
        ("checkpoint_size_bytes", "The last completed checkpoint: bytes of state written.", last.size_bytes as f64),
    ];
    for (name, help, value) in gauges {
        let mut family = Family::new(out, name, "gauge", help);
        family.sample(name, "", value);
        family.finish(out);
    }
}
