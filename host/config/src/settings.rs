//! Job-wide settings (`settings:` in a pipeline file).

use serde::Deserialize;

/// The default of [`Settings::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Job-wide settings; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Subtasks per stateless transform. Default: the number of CPU cores.
    pub parallelism: Option<usize>,
    /// Rows per batch sources aim for. Default 8192.
    pub batch_size: usize,
    /// Batches buffered per channel before the sender waits (backpressure). Default 4.
    pub channel_capacity: usize,
    /// A directory watched for new plugin versions while the job runs (relative to the
    /// pipeline file; `weir run --plugins-dir` overrides it). Default: none.
    pub plugins_dir: Option<String>,
    /// How long a stop (Ctrl-C, SIGTERM, a failed task) may take to drain in-flight batches and
    /// close the sinks. After it, the job stops at once without acknowledging what was not
    /// written (brokers deliver it again) and fails. Default 60s (Vector's graceful-shutdown
    /// limit); `weir run --shutdown-timeout` overrides it.
    #[serde(with = "crate::yaml::duration")]
    pub shutdown_timeout: std::time::Duration,
    /// Whether a stop (Ctrl-C, SIGTERM) fires the windows still open, as if event time had
    /// ended (Flink's `stop --drain`). Default false: a stopped job does not publish partial
    /// windows as final results; `weir run --drain` sets it.
    pub drain_on_stop: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            parallelism: None,
            batch_size: 8192,
            channel_capacity: 4,
            plugins_dir: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            drain_on_stop: false,
        }
    }
}

impl Settings {
    /// The effective default parallelism.
    pub fn parallelism(&self) -> usize {
        self.parallelism
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
            .max(1)
    }
}
