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
    /// The job's identity across runs: where its checkpoints are kept. Default: the pipeline
    /// file's name without its extension.
    pub job_id: Option<String>,
    /// Periodic checkpoints (`checkpoint: { interval: 10s }`). Default: none, state lives only
    /// in memory.
    pub checkpoint: Option<CheckpointSettings>,
    /// What happens when a task fails: restart the job from its last complete checkpoint, within
    /// the process (`restart: { strategy: fixed-delay, attempts: 3, delay: 10s }`). Default: with
    /// checkpoints `exponential-delay` with Flink's defaults, without them `none` (the job fails).
    pub restart: Option<RestartStrategy>,
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
            job_id: None,
            checkpoint: None,
            restart: None,
        }
    }
}

impl Settings {
    /// The job's id: `job_id`, else the pipeline file's name without its extension.
    pub fn job_id(&self, pipeline_file: &std::path::Path) -> String {
        self.job_id.clone().unwrap_or_else(|| {
            pipeline_file.file_stem().map_or_else(|| "job".to_owned(), |stem| stem.to_string_lossy().into_owned())
        })
    }

    /// The effective restart strategy: `restart`, else `exponential-delay` with checkpoints and
    /// `none` without.
    pub fn restart_strategy(&self) -> RestartStrategy {
        self.restart.clone().unwrap_or(if self.checkpoint.is_some() {
            RestartStrategy::ExponentialDelay(ExponentialDelay::default())
        } else {
            RestartStrategy::None
        })
    }

    /// The effective default parallelism.
    pub fn parallelism(&self) -> usize {
        self.parallelism
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
            .max(1)
    }
}

/// `settings.checkpoint`, with Flink's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSettings {
    /// Time between the start of one checkpoint and the next. Default 10s.
    #[serde(with = "crate::yaml::duration")]
    pub interval: std::time::Duration,
    /// Where checkpoints go: an `object_store` URL (`file:///var/lib/weir/checkpoints`,
    /// `s3://bucket/prefix`) or a directory. Each job keeps its checkpoints under its `job_id`.
    /// Default: `$WEIR_STATE_DIR`, else `$XDG_DATA_HOME/weir/checkpoints`, else
    /// `~/.local/share/weir/checkpoints`.
    pub storage: Option<String>,
    /// Options of the storage URL (`endpoint`, `region`, `allow_http`, credentials), as for the
    /// `object_store` sink.
    pub options: std::collections::BTreeMap<String, String>,
    /// Complete checkpoints kept; older ones are deleted. Default 1 (Flink's
    /// `state.checkpoints.num-retained`).
    pub retain: usize,
    /// A checkpoint not complete after this long is aborted. Default 10m.
    #[serde(with = "crate::yaml::duration")]
    pub timeout: std::time::Duration,
    /// Least time between the end of one checkpoint and the start of the next. Default 0s.
    #[serde(with = "crate::yaml::duration")]
    pub min_pause: std::time::Duration,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        Self {
            interval: std::time::Duration::from_secs(10),
            storage: None,
            options: std::collections::BTreeMap::new(),
            retain: 1,
            timeout: std::time::Duration::from_secs(600),
            min_pause: std::time::Duration::ZERO,
        }
    }
}

impl CheckpointSettings {
    /// The storage location when `storage` is not given: `$WEIR_STATE_DIR`, else
    /// `$XDG_DATA_HOME/weir/checkpoints`, else `$HOME/.local/share/weir/checkpoints`, else
    /// `./.weir/checkpoints`.
    pub fn default_storage() -> std::path::PathBuf {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty()).map(std::path::PathBuf::from);
        var("WEIR_STATE_DIR")
            .or_else(|| var("XDG_DATA_HOME").map(|dir| dir.join("weir/checkpoints")))
            .or_else(|| var("HOME").map(|home| home.join(".local/share/weir/checkpoints")))
            .unwrap_or_else(|| std::path::PathBuf::from(".weir/checkpoints"))
    }
}

/// `settings.restart`: Flink's restart strategies, with Flink's names and defaults (1.19 on).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "strategy", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RestartStrategy {
    /// A failed task fails the job.
    None,
    /// Restart after `delay`, at most `attempts` times over the life of the process.
    FixedDelay(FixedDelay),
    /// Restart after a delay that grows by `multiplier` per failure up to `max_backoff`, and
    /// falls back to `initial_backoff` once the job ran `reset_after` without failing.
    ExponentialDelay(ExponentialDelay),
    /// Restart after `delay` unless more than `max_failures` failures happened within `interval`.
    FailureRate(FailureRate),
}

/// `strategy: fixed-delay`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FixedDelay {
    /// Restarts allowed. Default 2147483647 (Flink's `Integer.MAX_VALUE`).
    pub attempts: u32,
    /// Wait before each restart. Default 1s.
    #[serde(with = "crate::yaml::duration")]
    pub delay: std::time::Duration,
}

impl Default for FixedDelay {
    fn default() -> Self {
        Self { attempts: i32::MAX as u32, delay: std::time::Duration::from_secs(1) }
    }
}

/// `strategy: exponential-delay`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExponentialDelay {
    /// The first delay. Default 1s.
    #[serde(with = "crate::yaml::duration")]
    pub initial_backoff: std::time::Duration,
    /// The longest delay. Default 1m.
    #[serde(with = "crate::yaml::duration")]
    pub max_backoff: std::time::Duration,
    /// Growth per failure. Default 1.5.
    pub multiplier: f64,
    /// A run this long without failure resets the delay. Default 1h.
    #[serde(with = "crate::yaml::duration")]
    pub reset_after: std::time::Duration,
    /// Random spread of each delay, as a fraction of it. Default 0.1.
    pub jitter: f64,
}

impl Default for ExponentialDelay {
    fn default() -> Self {
        Self {
            initial_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(60),
            multiplier: 1.5,
            reset_after: std::time::Duration::from_secs(3600),
            jitter: 0.1,
        }
    }
}

/// `strategy: failure-rate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureRate {
    /// Failures allowed within `interval`. Default 1.
    pub max_failures: u32,
    /// The window failures are counted in. Default 1m.
    #[serde(with = "crate::yaml::duration")]
    pub interval: std::time::Duration,
    /// Wait before each restart. Default 1s.
    #[serde(with = "crate::yaml::duration")]
    pub delay: std::time::Duration,
}

impl Default for FailureRate {
    fn default() -> Self {
        Self { max_failures: 1, interval: std::time::Duration::from_secs(60), delay: std::time::Duration::from_secs(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_defaults_to_the_pipeline_files_name() {
        let settings = Settings::default();
        assert_eq!(settings.job_id(std::path::Path::new("/etc/weir/q5-revenue.yaml")), "q5-revenue");
        let named = Settings { job_id: Some("revenue".into()), ..Settings::default() };
        assert_eq!(named.job_id(std::path::Path::new("q5.yaml")), "revenue");
    }

    #[test]
    fn checkpoint_settings_take_flinks_defaults() {
        let settings: Settings = crate::yaml::deserialize("checkpoint: { interval: 1s, retain: 3 }").unwrap();
        let checkpoint = settings.checkpoint.unwrap();
        assert_eq!(checkpoint.interval, std::time::Duration::from_secs(1));
        assert_eq!(checkpoint.retain, 3);
        assert_eq!(checkpoint.timeout, std::time::Duration::from_secs(600));
        assert_eq!(checkpoint.min_pause, std::time::Duration::ZERO);
        assert!(crate::yaml::deserialize::<Settings>("checkpoint: { intervall: 1s }").is_err());
    }

    #[test]
    fn restart_strategies_take_flinks_names_and_defaults() {
        let settings: Settings = crate::yaml::deserialize("restart: { strategy: fixed-delay, attempts: 3 }").unwrap();
        assert_eq!(
            settings.restart_strategy(),
            RestartStrategy::FixedDelay(FixedDelay { attempts: 3, delay: std::time::Duration::from_secs(1) })
        );
        let settings: Settings = crate::yaml::deserialize("checkpoint: {}").unwrap();
        assert_eq!(settings.restart_strategy(), RestartStrategy::ExponentialDelay(ExponentialDelay::default()));
        assert_eq!(Settings::default().restart_strategy(), RestartStrategy::None);
        assert!(crate::yaml::deserialize::<Settings>("restart: { strategy: fixed-delay, atempts: 3 }").is_err());
        assert!(crate::yaml::deserialize::<Settings>("restart: { strategy: sometimes }").is_err());
    }
}
