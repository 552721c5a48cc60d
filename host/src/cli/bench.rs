//! `weir bench`: picks a suite (`pipelines` by default, `nexmark`, `plugins`, `languages`,
//! `swap`, `connectors`, `lookups`) and runs the built-in `pipelines` scenarios itself: each is run through
//! the real pipeline parser and engine, reported as events/s, events per CPU-second ("per core",
//! user+sys from getrusage, the Nexmark definition) and as a ratio to the floor scenario measured
//! in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::engine::metrics::Role;
use crate::engine::runner;
use crate::pipeline;

use super::bench_nexmark::{bids_file_pipeline, bids_file_source, generator_events};
use super::rusage::cpu_time;

/// Options of `weir bench`: a suite, `pipelines` when none is named.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    suite: Option<Suite>,
    #[command(flatten)]
    pipelines: PipelinesArgs,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// Built-in scenarios: generator floor, q1, q2 and a JSON file round trip (the default).
    Pipelines(PipelinesArgs),
    /// The Nexmark queries of examples/nexmark/, in memory and from a JSON-lines file.
    Nexmark(super::bench_nexmark::NexmarkArgs),
    /// The Wasm boundary: call and row costs, q1 as a UDF, load times.
    Plugins {
        /// Where the compiled plugins are.
        #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
        plugins_dir: PathBuf,
        /// Bids in the q1 scenarios.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Runs per scenario; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The same UDF in Rust, Python, JavaScript and C (run from the repository root).
    Languages,
    /// Hot swaps of a plugin in a running job: event latency around swaps, time to serve.
    Swap(super::bench_swap::SwapArgs),
    /// Sources and sinks against the services on loopback, against bare clients.
    Connectors {
        /// Records per scenario.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Only scenarios whose name contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// Lookup joins: all cache hits per cache mode, and cold lookups in PostgreSQL against one
    /// query per row.
    Lookups {
        /// Rows in the cache-hit scenarios.
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Rows in the cold scenarios.
        #[arg(long, default_value_t = 200_000)]
        cold_events: u64,
        /// Runs per scenario; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

/// Options of the `pipelines` suite.
#[derive(Debug, Args)]
struct PipelinesArgs {
    /// Bids per scenario.
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Bids in the JSON-file scenario.
    #[arg(long, default_value_t = 1_000_000)]
    file_events: u64,
    /// Runs per scenario; the median (by events per CPU-second) is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    yaml: String,
    input_bytes: Option<u64>,
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    events: u64,
    wall: Duration,
    cpu: Duration,
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

fn scenarios(events: u64, json_path: &Path, out_path: &Path, input_bytes: u64) -> Vec<Scenario> {
    let source = format!("bids: {{ type: nexmark, kind: bid, events: {} }}", generator_events(events));
    vec![
        Scenario {
            name: "floor",
            what: "nexmark bids -> blackhole",
            yaml: format!("sources:\n  {source}\nsinks:\n  out: {{ type: blackhole, inputs: [bids] }}\n"),
            input_bytes: None,
        },
        Scenario {
            name: "q2-filter",
            what: "nexmark bids -> filter MOD(auction, 123) = 0 -> blackhole",
            yaml: format!(
                "sources:\n  {source}\ntransforms:\n  q2: {{ type: filter, inputs: [bids], where: \"MOD(auction, 123) = 0\" }}\n\
                 sinks:\n  out: {{ type: blackhole, inputs: [q2] }}\n"
            ),
            input_bytes: None,
        },
        Scenario {
            name: "q1-select",
            what: "nexmark bids -> select 0.908 * price -> blackhole",
            yaml: format!(
                "sources:\n  {source}\ntransforms:\n  q1: {{ type: select, inputs: [bids], columns: [auction, bidder, \"0.908 * price AS price\", dateTime, extra] }}\n\
                 sinks:\n  out: {{ type: blackhole, inputs: [q1] }}\n"
            ),
            input_bytes: None,
        },
        Scenario {
            name: "json-file",
            what: "JSON file -> filter -> JSON file",
            yaml: format!(
                "sources:\n  bids: {}\n\
                 transforms:\n  q2: {{ type: filter, inputs: [bids], where: \"MOD(auction, 123) = 0\" }}\n\
                 sinks:\n  out: {{ type: file, inputs: [q2], path: {}, format: json, overwrite: true }}\n",
                bids_file_source(json_path),
                out_path.display()
            ),
            input_bytes: Some(input_bytes),
        },
    ]
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
pub fn run_pipeline(runtime: &tokio::runtime::Runtime, yaml: &str, dir: &Path) -> anyhow::Result<Measurement> {
    let file = dir.join("bench.yaml");
    std::fs::write(&file, yaml)?;
    let pipeline = pipeline::load(&file)?;
    let metrics = runner::metrics_for(&pipeline);
    let (wall_start, cpu_start) = (Instant::now(), cpu_time());
    runtime.block_on(runner::run(&pipeline, &metrics, CancellationToken::new()))?;
    let (wall, cpu) = (wall_start.elapsed(), cpu_time() - cpu_start);
    Ok(Measurement { events: metrics.total(Role::Source, |m| m.received_events), wall, cpu })
}

/// Runs the benchmark and prints a Markdown table.
pub fn main(args: &BenchArgs) -> std::process::ExitCode {
    match bench(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    match &args.suite {
        None => pipelines(&args.pipelines),
        Some(Suite::Pipelines(pipeline_args)) => pipelines(pipeline_args),
        Some(Suite::Nexmark(nexmark)) => super::bench_nexmark::bench(nexmark),
        Some(Suite::Plugins { plugins_dir, events, runs }) => super::bench_plugins::bench(plugins_dir, *events, *runs),
        Some(Suite::Languages) => super::bench_languages::bench(Path::new("plugins")),
        Some(Suite::Swap(swap)) => super::bench_swap::bench(swap),
        Some(Suite::Connectors { events, only }) => super::bench_connectors::bench(*events, only.as_deref()),
        Some(Suite::Lookups { events, cold_events, runs }) => super::bench_lookups::bench(*events, *cold_events, *runs),
    }
}

fn pipelines(args: &PipelinesArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let json_path = dir.join("bids.jsonl");
    let out_path = dir.join("out.jsonl");
    eprintln!("writing {} bids to {} ...", args.file_events, json_path.display());
    run_pipeline(&runtime, &bids_file_pipeline(args.file_events, &json_path), &dir)?;
    let input_bytes = std::fs::metadata(&json_path)?.len();
    eprintln!("input file: {:.1} MB", input_bytes as f64 / 1e6);

    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "weir bench: {} bids per in-memory scenario, {} in the file scenario, median of {} runs, {cores} cores\n",
        args.events, args.file_events, args.runs
    );
    println!("| scenario | pipeline | events/s | events/s per core | vs floor (per core) | MB/s |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut floor: Option<f64> = None;
    for scenario in scenarios(args.events, &json_path, &out_path, input_bytes) {
        if args.only.as_deref().is_some_and(|only| !scenario.name.contains(only)) && scenario.name != "floor" {
            continue;
        }
        let mut runs = (0..args.runs.max(1))
            .map(|_| run_pipeline(&runtime, &scenario.yaml, &dir))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let median = median_by(&mut runs, Measurement::per_cpu_second);
        let per_core = median.per_cpu_second();
        let floor_per_core = *floor.get_or_insert(per_core);
        let mb_per_second = scenario
            .input_bytes
            .map_or("".into(), |bytes| format!("{:.0}", bytes as f64 / 1e6 / median.wall.as_secs_f64()));
        println!(
            "| {} | {} | {} | {} | {:.2} | {} |",
            scenario.name,
            scenario.what,
            super::progress::human(median.per_second()),
            super::progress::human(per_core),
            per_core / floor_per_core,
            mb_per_second
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
