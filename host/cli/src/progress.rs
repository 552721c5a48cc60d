//! The live progress line and the final summary of `weir run`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use weir_engine::graph::Role;
use weir_engine::metrics::PipelineMetrics;

/// Redraws one status line on stderr every second until aborted.
pub async fn live(metrics: PipelineMetrics, started: Instant) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut last_in, mut last_out, mut last_at) = (0, 0, Instant::now());
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let seconds = now.duration_since(last_at).as_secs_f64().max(1e-9);
        let total_in = metrics.total(Role::Source, |m| m.received_events);
        let total_out = metrics.total(Role::Sink, |m| m.sent_events);
        let sinks: Vec<String> = metrics
            .components
            .iter()
            .filter(|(_, role, _)| *role == Role::Sink)
            .map(|(name, _, m)| format!("{name}={}", m.snapshot().sent_events))
            .collect();
        let line = format!(
            "{:>6.0}s  in {:>10}/s ({})  out {:>10}/s ({})  {}",
            started.elapsed().as_secs_f64(),
            weir_engine::metrics::human((total_in - last_in) as f64 / seconds),
            total_in,
            weir_engine::metrics::human((total_out - last_out) as f64 / seconds),
            total_out,
            sinks.join(" ")
        );
        // One line that never wraps: a wrapped line is not erased by `\r` and fills the screen.
        let line: String = line.chars().take(terminal_width().saturating_sub(1)).collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        PROGRESS_SHOWN.store(true, Ordering::Relaxed);
        (last_in, last_out, last_at) = (total_in, total_out, now);
    }
}

/// Columns of the terminal on stderr (80 when it cannot be read), read each time: the window
/// may be resized while the job runs.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a `winsize` we own; stderr is a valid descriptor.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let read = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &raw mut size) };
    if read == 0 && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}

/// Erases the progress line.
pub fn clear_line() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
    PROGRESS_SHOWN.store(false, Ordering::Relaxed);
}

/// Whether a progress line is on the screen (it has no line break: the next log line must erase
/// it first, or the log line continues it).
static PROGRESS_SHOWN: AtomicBool = AtomicBool::new(false);

/// Where log lines go: stderr, erasing a progress line first (the next tick draws it again).
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

impl tracing_subscriber::fmt::MakeWriter<'_> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&self) -> LogLine {
        LogLine
    }
}

/// One log line's writer (see [`LogWriter`]).
#[derive(Debug)]
pub struct LogLine;

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if PROGRESS_SHOWN.swap(false, Ordering::Relaxed) {
            err.write_all(b"\r\x1b[2K")?;
        }
        err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The end-of-run summary.
pub fn summary(metrics: &PipelineMetrics, elapsed: Duration) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let total_in = metrics.total(Role::Source, |m| m.received_events);
    let mut text = format!(
        "done in {:.2}s: {} events in ({}/s)",
        seconds,
        total_in,
        weir_engine::metrics::human(total_in as f64 / seconds)
    );
    for (name, role, counters) in &metrics.components {
        let snapshot = counters.snapshot();
        let role_name = format!("{role:?}").to_lowercase();
        let mut parts = Vec::new();
        if *role == Role::Sink {
            parts.push(format!("{} written", snapshot.sent_events));
        }
        // Every bad record is an error; skipped and dead-lettered ones are also counted as such.
        let bad = snapshot.errors;
        if bad > 0 {
            let what = match role {
                Role::Source => "bad records",
                Role::Transform => "failed rows",
                Role::Sink => "rejected rows",
            };
            parts.push(format!(
                "{bad} {what} ({} skipped, {} dead-lettered)",
                snapshot.discarded_events, snapshot.dead_lettered_events
            ));
        }
        if snapshot.late_events > 0 {
            parts.push(format!("{} late rows dropped", snapshot.late_events));
        }
        if snapshot.unacknowledged_events > 0 {
            parts.push(format!("{} messages left unacknowledged (delivered again)", snapshot.unacknowledged_events));
        }
        if !parts.is_empty() {
            text.push_str(&format!("\n  {role_name} {name}: {}", parts.join(", ")));
        }
    }
    let checkpoints = &metrics.checkpoints;
    let (completed, failed) = (checkpoints.completed.load(Relaxed), checkpoints.failed.load(Relaxed));
    if completed + failed > 0 || checkpoints.restored().is_some() {
        let mut line = format!("\n  checkpoints: {completed} completed, {failed} failed");
        if let Some(last) = checkpoints.history().into_iter().rev().find(|record| record.failure.is_none()) {
            line.push_str(&format!("; last {} took {} ms ({} bytes)", last.id, last.duration_ms, last.size_bytes));
        }
        if let Some((id, _)) = checkpoints.restored() {
            line.push_str(&format!("; restored from {id}"));
        }
        let restarts = checkpoints.restarts.load(Relaxed);
        if restarts > 0 {
            line.push_str(&format!("; {restarts} restarts after task failures"));
        }
        text.push_str(&line);
    }
    text
}

/// The machine-readable end-of-run summary (`weir run --summary-json`): how long the job ran, the
/// CPU it used, the process's peak memory and every component's counters.
#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    /// The pipeline file.
    pub pipeline: std::path::PathBuf,
    /// Whether the job ended without error.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Wall time of the job (from the first component starting to the last sink flushing).
    pub wall_seconds: f64,
    /// CPU time (user + sys, all threads) used while the job ran.
    pub cpu_seconds: f64,
    /// Peak resident set size of the process, loading included.
    pub peak_rss_bytes: u64,
    /// Rows the sources produced.
    pub events_in: u64,
    /// Rows the sinks wrote.
    pub events_out: u64,
    /// Per component, in declaration order.
    pub components: Vec<ComponentReport>,
    /// Checkpoints completed during the run.
    pub checkpoints_completed: u64,
    /// Checkpoints aborted during the run.
    pub checkpoints_failed: u64,
    /// Times the job was started again from its last checkpoint after a task failed.
    pub restarts: u64,
}

/// One component's counters in a [`RunReport`].
#[derive(Debug, serde::Serialize)]
pub struct ComponentReport {
    /// Its name in the pipeline.
    pub name: String,
    /// Source, transform or sink.
    pub role: Role,
    /// Its counters.
    #[serde(flatten)]
    pub counters: weir_engine::metrics::MetricsSnapshot,
}

impl RunReport {
    /// The report of a finished job.
    pub fn new(
        pipeline: &std::path::Path,
        metrics: &PipelineMetrics,
        wall: Duration,
        cpu: Duration,
        error: Option<String>,
    ) -> Self {
        Self {
            pipeline: pipeline.to_path_buf(),
            ok: error.is_none(),
            error,
            wall_seconds: wall.as_secs_f64(),
            cpu_seconds: cpu.as_secs_f64(),
            peak_rss_bytes: weir_engine::rusage::peak_rss_bytes(),
            events_in: metrics.total(Role::Source, |m| m.received_events),
            events_out: metrics.total(Role::Sink, |m| m.sent_events),
            components: metrics
                .components
                .iter()
                .map(|(name, role, counters)| ComponentReport {
                    name: name.clone(),
                    role: *role,
                    counters: counters.snapshot(),
                })
                .collect(),
            checkpoints_completed: metrics.checkpoints.completed.load(std::sync::atomic::Ordering::Relaxed),
            checkpoints_failed: metrics.checkpoints.failed.load(std::sync::atomic::Ordering::Relaxed),
            restarts: metrics.checkpoints.restarts.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// One line per plugin that was swapped or rolled back (which version served at the end), and
/// one per plugin that reported counters or gauges (`counter-add`, `gauge-set`).
pub fn plugin_metrics(plugins: &weir_plugin::PluginRegistry) -> Vec<String> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut lines: Vec<String> = Vec::new();
    for handle in plugins.handles() {
        let (name, current) = (handle.name(), handle.current());
        let (swaps, rollbacks, refused) = (
            handle.stats.swaps.load(Relaxed),
            handle.stats.rollbacks.load(Relaxed),
            handle.stats.refused.load(Relaxed),
        );
        if swaps + rollbacks + refused > 0 {
            lines.push(format!(
                "  plugin {name}: {swaps} swaps, {rollbacks} rollbacks ({} automatic), {refused} refused; serving {}",
                handle.stats.automatic_rollbacks.load(Relaxed),
                current.label()
            ));
        }
        let plugin = Arc::clone(&current.plugin);
        let counters = plugin.metrics.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let gauges = plugin.metrics.gauges.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let values: Vec<String> = counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(gauges.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        if !values.is_empty() {
            lines.push(format!("  plugin {name}: {}", values.join(" ")));
        }
        let refused = plugin.metrics.refused.load(Relaxed);
        if refused > 0 {
            lines.push(format!(
                "  plugin {name}: {refused} metric updates refused (at most {} series, names of {} bytes)",
                weir_plugin::sandbox::MAX_PLUGIN_SERIES,
                weir_plugin::sandbox::MAX_METRIC_NAME
            ));
        }
    }
    lines.sort();
    lines
}

/// One line per dimension table: rows joined, cache hits and misses, queries and their latency.
pub fn table_metrics(tables: &weir_lookup::TableCatalog) -> Vec<String> {
    tables
        .iter()
        .map(|(name, table)| {
            let m = table.metrics.snapshot();
            let mut line = format!(
                "  table {name}: {} rows joined, {} unmatched; cache {} hits, {} misses",
                m.rows_joined, m.rows_unmatched, m.cache_hits, m.cache_misses
            );
            if m.evictions + m.expirations > 0 {
                line.push_str(&format!(" ({} evicted, {} expired)", m.evictions, m.expirations));
            }
            if m.loads > 0 {
                line.push_str(&format!("; {} loads ({} rows)", m.loads, m.snapshot_rows));
            }
            line.push_str(&format!("; {} queries", m.queries));
            if let (Some(p50), Some(p99)) = (m.latency_p50, m.latency_p99) {
                line.push_str(&format!(" (p50 <= {p50:?}, p99 <= {p99:?})"));
            }
            if m.errors > 0 {
                line.push_str(&format!(", {} failed", m.errors));
            }
            line
        })
        .collect()
}
