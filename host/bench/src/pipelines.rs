//! The `pipelines` suite (the default): a generator floor, Nexmark q1 and q2, and a JSON file
//! round trip, each as a ratio to the floor measured in the same run.

use std::path::Path;

use clap::Args;
use weir_engine::registry::Registry;

use crate::measure::{Measurement, median_by, run_pipeline};
use crate::nexmark::{bids_file_pipeline, bids_file_source, generator_events};

/// Options of the `pipelines` suite.
#[derive(Debug, Args)]
pub struct PipelinesArgs {
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

/// Runs the `pipelines` suite and prints a Markdown table.
///
/// # Errors
/// A scenario that fails.
pub fn bench(args: &PipelinesArgs, registry: &Registry) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let json_path = dir.join("bids.jsonl");
    let out_path = dir.join("out.jsonl");
    eprintln!("writing {} bids to {} ...", args.file_events, json_path.display());
    run_pipeline(&runtime, &bids_file_pipeline(args.file_events, &json_path), &dir, registry)?;
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
            .map(|_| run_pipeline(&runtime, &scenario.yaml, &dir, registry))
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
            weir_engine::metrics::human(median.per_second()),
            weir_engine::metrics::human(per_core),
            per_core / floor_per_core,
            mb_per_second
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
