//! `weir bench`: picks a suite (`pipelines` by default, `nexmark`, `plugins`, `languages`,
//! `swap`, `connectors`, `lookups`) and runs the built-in `pipelines` scenarios itself: each is run through
//! the real pipeline parser and engine, reported as events/s, events per CPU-second ("per core",
//! user+sys from getrusage, the Nexmark definition) and as a ratio to the floor scenario measured
//! in the same run.
//!
//! Module map: [`measure`] (one measured run, medians), one module per suite. Suites depend on
//! `measure` (and `pipelines` on `nexmark`'s bid files), never on each other's internals.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use weir_engine::registry::Registry;

mod connectors;
mod languages;
mod lookups;
mod measure;
mod nexmark;
mod pipelines;
mod plugins;
mod swap;

/// Options of `weir bench`: a suite, `pipelines` when none is named.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    suite: Option<Suite>,
    #[command(flatten)]
    pipelines: pipelines::PipelinesArgs,
}

#[derive(Debug, Subcommand)]
enum Suite {
    /// Built-in scenarios: generator floor, q1, q2 and a JSON file round trip (the default).
    Pipelines(pipelines::PipelinesArgs),
    /// The Nexmark queries of examples/nexmark/, in memory and from a JSON-lines file.
    Nexmark(nexmark::NexmarkArgs),
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
    Swap(swap::SwapArgs),
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

/// Runs the benchmark and prints a Markdown table.
pub fn main(args: &BenchArgs, registry: &Registry) -> std::process::ExitCode {
    match bench(args, registry) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs, registry: &Registry) -> anyhow::Result<()> {
    match &args.suite {
        None => pipelines::bench(&args.pipelines, registry),
        Some(Suite::Pipelines(pipeline_args)) => pipelines::bench(pipeline_args, registry),
        Some(Suite::Nexmark(nexmark)) => nexmark::bench(nexmark),
        Some(Suite::Plugins { plugins_dir, events, runs }) => plugins::bench(plugins_dir, *events, *runs, registry),
        Some(Suite::Languages) => languages::bench(Path::new("plugins")),
        Some(Suite::Swap(swap)) => swap::bench(swap),
        Some(Suite::Connectors { events, only }) => connectors::bench(*events, only.as_deref(), registry),
        Some(Suite::Lookups { events, cold_events, runs }) => lookups::bench(*events, *cold_events, *runs, registry),
    }
}
