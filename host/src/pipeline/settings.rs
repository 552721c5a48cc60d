//! Job-wide settings (`settings:` in a pipeline file).

use serde::Deserialize;

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
}

impl Default for Settings {
    fn default() -> Self {
        Self { parallelism: None, batch_size: 8192, channel_capacity: 4, plugins_dir: None }
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
