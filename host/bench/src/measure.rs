//! One measured run of a pipeline (events, wall time, CPU time from getrusage) and medians over
//! runs: what every suite reports.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use weir_engine::graph::Role;
use weir_engine::registry::Registry;
use weir_engine::runner;
use weir_engine::rusage::cpu_time;

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub events: u64,
    pub wall: Duration,
    pub cpu: Duration,
}

impl Measurement {
    /// A measurement of `events` events.
    pub fn new(events: u64, wall: Duration, cpu: Duration) -> Self {
        Self { events, wall, cpu }
    }

    /// Events per second of wall time.
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    /// Events per CPU-second (user + sys).
    pub fn per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu.as_secs_f64()
    }
}

/// The median of `runs` by `key` (events per CPU-second in every suite); `runs` is left sorted.
///
/// # Panics
/// When `runs` is empty.
pub fn median_by<T: Clone>(runs: &mut [T], key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs[runs.len() / 2].clone()
}

/// Runs pipeline text once and measures it.
///
/// # Errors
/// A refused pipeline or a failed run.
pub fn run_pipeline(
    runtime: &tokio::runtime::Runtime,
    yaml: &str,
    dir: &Path,
    registry: &Registry,
) -> anyhow::Result<Measurement> {
    let file = dir.join("bench.yaml");
    std::fs::write(&file, yaml)?;
    let pipeline = weir_pipeline::load(&file, registry)?;
    let metrics = runner::metrics_for(&pipeline.graph);
    let (wall_start, cpu_start) = (Instant::now(), cpu_time());
    runtime.block_on(runner::run(&pipeline.graph, &metrics, CancellationToken::new()))?;
    let (wall, cpu) = (wall_start.elapsed(), cpu_time() - cpu_start);
    Ok(Measurement { events: metrics.total(Role::Source, |m| m.received_events), wall, cpu })
}
