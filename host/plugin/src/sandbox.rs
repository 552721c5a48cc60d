//! Sandbox limits and the per-instance store state: no capabilities, captured stdio, limits.
//!
//! | limit | default | pipeline option |
//! |---|---|---|
//! | time per call (epoch interruption) | 1 s | `limits.time` |
//! | memory per instance (all its linear memories and tables together) | 64 MiB | `limits.memory` |
//! | aggregate state per group | 1 MiB | `limits.state_per_group` |
//! | aggregate state of the plugin, all groups of all steps | 256 MiB | `limits.state` |
//! | component file size (checked before compiling) | 128 MiB | `limits.component` |
//! | Wasm stack | 512 KiB | engine-wide (`WEIR_WASM_STACK` not yet configurable per step) |
//! | captured stdout + stderr | 64 KiB per instance, then the instance is recycled | fixed |
//!
//! Files, environment variables, network and the host's stdio are never granted: WASI is linked
//! with a context that grants nothing, so a plugin that tries gets an error, not access. Waiting
//! in the host (sleeping through `wasi:io/poll`) traps at once (see `runtime::forbid_blocking`),
//! so every host call returns immediately and the epoch deadline bounds the whole call.

use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::Level;

/// Bytes of guest stdout/stderr kept per instance.
pub const CAPTURE_CAPACITY: usize = 64 * 1024;

/// Per-step resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU time a call may take before it is interrupted.
    pub time: Duration,
    /// Linear memory an instance may grow to.
    pub memory: u64,
    /// Bytes one group's aggregate state may grow to (state the host keeps for the plugin).
    pub state_per_group: u64,
    /// Bytes of aggregate state the host keeps for the plugin, all groups of all steps together.
    pub state: u64,
    /// The largest component file that is compiled (compiling costs about three times its size).
    pub component: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(1),
            memory: 64 << 20,
            state_per_group: 1 << 20,
            state: 256 << 20,
            component: 128 << 20,
        }
    }
}

/// `limits:` as written in a pipeline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time per call (`1s`, `250ms`).
    pub time: Option<String>,
    /// Memory per instance (`64MiB`).
    pub memory: Option<ByteSize>,
    /// Aggregate state per group (`1MiB`).
    pub state_per_group: Option<ByteSize>,
    /// Aggregate state of the plugin, all groups together (`256MiB`).
    pub state: Option<ByteSize>,
    /// The largest component file that is loaded (`128MiB`).
    pub component: Option<ByteSize>,
}

impl LimitsConfig {
    /// The effective limits.
    ///
    /// # Errors
    /// A malformed duration.
    pub fn resolve(&self) -> Result<Limits, String> {
        let mut limits = Limits::default();
        if let Some(time) = &self.time {
            limits.time = humantime::parse_duration(time).map_err(|err| format!("`limits.time`: {err}"))?;
        }
        if let Some(memory) = self.memory {
            limits.memory = memory.as_u64();
        }
        if let Some(bytes) = self.state_per_group {
            limits.state_per_group = bytes.as_u64();
        }
        if let Some(bytes) = self.state {
            limits.state = bytes.as_u64();
        }
        if let Some(bytes) = self.component {
            limits.component = bytes.as_u64();
        }
        Ok(limits)
    }
}

/// How many metric series (counters and gauges together) one plugin may report; a new name past
/// it is refused and counted, so names made from data cannot grow host memory without bound
/// (2 M names once took 894 MB).
pub const MAX_PLUGIN_SERIES: usize = 256;

/// The longest metric name a plugin may use, in bytes.
pub const MAX_METRIC_NAME: usize = 128;

/// Lines of guest output (stdout, stderr, `log` calls) one plugin may put into the host log per
/// second; the rest are counted, and the next line that gets through says how many were
/// suppressed (3 M lines once reached the log in 13 s).
pub const GUEST_LOG_LINES_PER_SECOND: u32 = 50;

/// The per-second budget of guest log lines of one plugin.
#[derive(Debug, Default)]
pub struct LogBudget {
    window: Option<std::time::Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Whether one more line may be logged now; if so, how many were suppressed before it.
    pub fn take(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.window.is_none_or(|start| now.duration_since(start) >= std::time::Duration::from_secs(1)) {
            self.window = Some(now);
            self.used = 0;
        }
        if self.used >= GUEST_LOG_LINES_PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Counters a plugin reported through `counter-add` / `gauge-set`.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    /// `(name, value)` of counters.
    pub counters: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// `(name, value)` of gauges.
    pub gauges: std::sync::Mutex<std::collections::BTreeMap<String, f64>>,
    /// Updates refused: a new series past [`MAX_PLUGIN_SERIES`], or a name longer than
    /// [`MAX_METRIC_NAME`].
    pub refused: std::sync::atomic::AtomicU64,
    /// Series held, counters and gauges together.
    series: std::sync::atomic::AtomicUsize,
    /// The plugin's guest log budget, shared by its instances.
    pub log_budget: std::sync::Mutex<LogBudget>,
}

impl PluginMetrics {
    /// Logs one guest line through the plugin's budget, attributed to the plugin (its name in
    /// the pipeline) and the step that called it (empty for SQL expressions and aggregates).
    pub fn log_guest(&self, plugin: &str, step: &str, level: tracing::Level, stream: &str, line: &str) {
        let Some(suppressed) = self.log_budget.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() else {
            return;
        };
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, step, stream, suppressed, "{line}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, step, stream, suppressed, "{line}"),
            tracing::Level::INFO => tracing::info!(plugin, step, stream, suppressed, "{line}"),
            tracing::Level::WARN => tracing::warn!(plugin, step, stream, suppressed, "{line}"),
            tracing::Level::ERROR => tracing::error!(plugin, step, stream, suppressed, "{line}"),
        }
    }

    /// Adds to a counter, unless that would make a series too many or the name is too long.
    pub fn add_counter(&self, plugin: &str, name: String, value: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counter) = counters.get_mut(&name) {
            *counter += value;
        } else if self.admits(plugin, &name) {
            counters.insert(name, value);
        }
    }

    /// Sets a gauge, unless that would make a series too many or the name is too long.
    pub fn set_gauge(&self, plugin: &str, name: String, value: f64) {
        let mut gauges = self.gauges.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(gauge) = gauges.get_mut(&name) {
            *gauge = value;
        } else if self.admits(plugin, &name) {
            gauges.insert(name, value);
        }
    }

    /// Whether a new series `name` may be added (and counts it if so).
    fn admits(&self, plugin: &str, name: &str) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if name.len() <= MAX_METRIC_NAME
            && self.series.fetch_update(Relaxed, Relaxed, |held| (held < MAX_PLUGIN_SERIES).then_some(held + 1)).is_ok()
        {
            return true;
        }
        if self.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
            tracing::warn!(
                plugin,
                limit = MAX_PLUGIN_SERIES,
                name_limit = MAX_METRIC_NAME,
                "plugin metric refused: too many series or too long a name (further refusals are only counted)"
            );
        }
        false
    }
}

/// What a plugin's store holds.
pub struct StoreState {
    /// The plugin's name in the pipeline (its own name until a caller says).
    pub(crate) plugin: Arc<str>,
    /// The step calling it, for the log (empty when unknown).
    pub(crate) step: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: TrackedLimits,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) metrics: Arc<PluginMetrics>,
}

impl StoreState {
    /// A state that grants nothing, with memory capped at `limits.memory`.
    pub fn new(plugin: Arc<str>, limits: &Limits, metrics: Arc<PluginMetrics>) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURE_CAPACITY);
        let stderr = MemoryOutputPipe::new(CAPTURE_CAPACITY);
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let memory = usize::try_from(limits.memory).unwrap_or(usize::MAX);
        Self {
            plugin,
            step: Arc::from(""),
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits: TrackedLimits {
                inner: StoreLimitsBuilder::new().memory_size(memory).instances(64).tables(64).memories(4).build(),
                budget: memory,
                memory_bytes: 0,
                table_bytes: 0,
            },
            stdout,
            stderr,
            metrics,
        }
    }

    /// The resource limiter for `Store::limiter`.
    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// Linear memory the instance holds, all its memories together (bytes).
    pub fn memory_bytes(&self) -> usize {
        self.limits.memory_bytes
    }
}

/// weir's limits: `limits.memory` holds for the instance as a whole (every linear memory of
/// every core module in the component, and its tables at the host's cost of a pointer per
/// element), not per memory: a component of three memories once held three times the limit.
/// The linear memory granted is also counted for `weir bench languages`.
struct TrackedLimits {
    inner: StoreLimits,
    budget: usize,
    memory_bytes: usize,
    table_bytes: usize,
}

/// What one table element costs the host.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

impl TrackedLimits {
    fn fits(&self, more: usize) -> bool {
        self.memory_bytes.saturating_add(self.table_bytes).saturating_add(more) <= self.budget
    }
}

impl ResourceLimiter for TrackedLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if !self.fits(more) {
            return Ok(false);
        }
        let granted = self.inner.memory_growing(current, desired, maximum)?;
        if granted {
            self.memory_bytes += more;
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current).saturating_mul(TABLE_ELEMENT_BYTES);
        if !self.fits(more) {
            return Ok(false);
        }
        let granted = self.inner.table_growing(current, desired, maximum)?;
        if granted {
            self.table_bytes += more;
        }
        Ok(granted)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl super::bindings::scalar::weir::plugin::types::Host for StoreState {}

impl super::bindings::scalar::weir::plugin::host::Host for StoreState {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let line = if fields.is_empty() { message } else { format!("{message} {}", fields.join(" ")) };
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.metrics.log_guest(&self.plugin, &self.step, level, "log", &line);
    }

    fn counter_add(&mut self, name: String, value: u64) {
        self.metrics.add_counter(&self.plugin, name, value);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        self.metrics.set_gauge(&self.plugin, name, value);
    }
}
