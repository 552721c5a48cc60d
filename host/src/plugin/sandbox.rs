//! Sandbox limits and the per-instance store state: no capabilities, captured stdio, limits.
//!
//! | limit | default | pipeline option |
//! |---|---|---|
//! | time per call (epoch interruption) | 1 s | `limits.time` |
//! | memory per instance | 64 MiB | `limits.memory` |
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
}

impl Default for Limits {
    fn default() -> Self {
        Self { time: Duration::from_secs(1), memory: 64 << 20 }
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
        Ok(limits)
    }
}

/// Counters a plugin reported through `counter-add` / `gauge-set`.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    /// `(name, value)` of counters.
    pub counters: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// `(name, value)` of gauges.
    pub gauges: std::sync::Mutex<std::collections::BTreeMap<String, f64>>,
}

/// What a plugin's store holds.
pub struct StoreState {
    pub(crate) plugin: Arc<str>,
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
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits: TrackedLimits {
                inner: StoreLimitsBuilder::new().memory_size(memory).instances(64).tables(64).memories(4).build(),
                memory_bytes: 0,
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

/// weir's limits, counting the linear memory granted (for `weir bench languages`).
struct TrackedLimits {
    inner: StoreLimits,
    memory_bytes: usize,
}

impl ResourceLimiter for TrackedLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let granted = self.inner.memory_growing(current, desired, maximum)?;
        if granted {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
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
        let fields = fields.join(" ");
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, fields, "{message}"),
            Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            Level::Info => tracing::info!(plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, value: u64) {
        let mut counters = self.metrics.counters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *counters.entry(name).or_default() += value;
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        self.metrics.gauges.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name, value);
    }
}
