//! `weir bench nexmark`: the Nexmark queries of `examples/nexmark/` as weir jobs.
//!
//! Each query file is run as written with the built-in generator in memory, and with its `nexmark`
//! bid source swapped for a JSON-lines file of bids (the input the Flink comparison in
//! `bench/nexmark/` reads). Every run is its own `weir run --summary-json` process, so peak RSS is
//! per query and the job's wall and CPU time exclude process start and plugin loading. Reports
//! events/s, events per CPU-second (user + sys, Nexmark's "throughput per core"), peak RSS and, for
//! the file input, MB/s; the median of `--runs` by events per CPU-second.
//!
//! A query file keeps the shape the rewrite relies on: its bids come from `nexmark` sources with
//! `kind: bid` (other kinds only in memory for now), and its sinks are replaced by blackholes or,
//! with `--output-dir`, by JSON-lines files named after the query.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use weir_connector_nexmark::{EventKind, PROPORTION_TOTAL};
use weir_formats::schema::type_name;

/// Options of `weir bench nexmark`.
#[derive(Debug, Args)]
pub struct NexmarkArgs {
    /// Folder of query pipelines, one `<query>.yaml` each.
    #[arg(long, default_value = "examples/nexmark")]
    queries: PathBuf,
    /// Only these queries (file names without `.yaml`, comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Bids per in-memory run.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Bids in the generated JSON-lines file (file input, unless --input is given).
    #[arg(long, default_value_t = 2_000_000)]
    file_events: u64,
    /// Read this JSON-lines file of bids instead of generating one.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Which inputs to run.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// `settings.parallelism` of every job (default: as in the file, else the number of cores).
    #[arg(long)]
    parallelism: Option<usize>,
    /// Runs per query and input; the median by events per CPU-second is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Write each query's output as JSON lines to `<DIR>/<query>.jsonl` instead of discarding it.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Print one JSON object per query and input instead of a Markdown table.
    #[arg(long)]
    json: bool,
    /// Checkpoint intervals to compare, comma-separated (`none,10s,1s`): every query runs once
    /// per interval in each round, so the ratios come from the same stretch of machine time.
    /// Checkpoints go to a temporary directory. The file input has no checkpoint position yet,
    /// so only the in-memory input runs with checkpoints.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    checkpoints: Vec<String>,
}

/// Which inputs `weir bench nexmark` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The built-in generator.
    Memory,
    /// A JSON-lines file of bids.
    File,
    /// Both.
    Both,
}

/// Where a job's bids come from.
#[derive(Debug, Clone)]
enum Input {
    /// The generator, this many generator events (all kinds).
    Memory { generator_events: u64 },
    /// A JSON-lines file of bids of this size.
    File { path: PathBuf, bytes: u64 },
}

impl Input {
    fn label(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::File { .. } => "file",
        }
    }
}

/// One query file.
#[derive(Debug, Clone)]
struct Query {
    name: String,
    file: PathBuf,
}

/// The part of `weir run --summary-json` the benchmark reads.
#[derive(Debug, Clone, Deserialize)]
struct JobSummary {
    wall_seconds: f64,
    cpu_seconds: f64,
    peak_rss_bytes: u64,
    events_in: u64,
    events_out: u64,
    components: Vec<ComponentState>,
    #[serde(default)]
    checkpoints_completed: u64,
}

/// A component's operator state in a job summary.
#[derive(Debug, Clone, Deserialize)]
struct ComponentState {
    peak_state_bytes: u64,
    peak_state_groups: u64,
}

impl JobSummary {
    /// Peak state of the stateful steps: bytes and open (window, key) groups.
    fn peak_state(&self) -> (u64, u64) {
        let bytes = self.components.iter().map(|c| c.peak_state_bytes).sum();
        let groups = self.components.iter().map(|c| c.peak_state_groups).sum();
        (bytes, groups)
    }

    fn per_cpu_second(&self) -> f64 {
        self.events_in as f64 / self.cpu_seconds.max(1e-9)
    }
}

/// Generator events that yield `bids` bids (46 of every 50 events are bids).
pub fn generator_events(bids: u64) -> u64 {
    let bids_per_epoch = EventKind::Bid.offsets().count() as u64;
    bids.div_ceil(bids_per_epoch) * PROPORTION_TOTAL
}

/// Runs the suite and prints a Markdown table (or JSON lines with `--json`).
///
/// # Errors
/// A missing query folder, a query the rewrite cannot handle, or a failed job.
pub fn bench(args: &NexmarkArgs) -> anyhow::Result<()> {
    let weir = std::env::current_exe().context("cannot find the weir binary")?;
    let queries = queries(&args.queries, &args.only)?;
    let work = tempfile::Builder::new().prefix("weir-nexmark-").tempdir()?;
    let mut inputs = Vec::new();
    if args.mode != Mode::File {
        inputs.push(Input::Memory { generator_events: generator_events(args.events) });
    }
    if args.mode != Mode::Memory {
        let path = match &args.input {
            Some(path) => path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?,
            None => {
                let path = work.path().join("bids.jsonl");
                eprintln!("writing {} bids to {} ...", args.file_events, path.display());
                write_bids_file(&weir, args.file_events, &path, work.path())?;
                path
            }
        };
        let bytes = std::fs::metadata(&path)?.len();
        inputs.push(Input::File { path, bytes });
    }
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }

    if !args.json {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let parallelism = args.parallelism.map_or("as in each file".into(), |p| p.to_string());
        println!(
            "weir bench nexmark: {} bids in memory, {} from the file, median of {} runs, {cores} cores, parallelism {parallelism}\n",
            args.events,
            describe_file(&inputs),
            args.runs.max(1)
        );
        println!(
            "| query | input | events | events/s | events/s per core | rows out | peak RSS (MB) | MB/s | peak window state |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    }
    let intervals: Vec<Option<std::time::Duration>> = args
        .checkpoints
        .iter()
        .map(|text| match text.trim() {
            "none" => Ok(None),
            interval => humantime::parse_duration(interval)
                .map(Some)
                .with_context(|| format!("--checkpoints: `{interval}` is neither `none` nor a duration")),
        })
        .collect::<anyhow::Result<_>>()?;
    for input in &inputs {
        for query in &queries {
            let sink_dir = args.output_dir.as_deref();
            let mut variants = Vec::new();
            for (index, interval) in intervals.iter().enumerate() {
                if interval.is_some() && matches!(input, Input::File { .. }) {
                    continue;
                }
                let mut pipeline = variant(query, input, sink_dir, args.parallelism)?;
                let name = match interval {
                    None => query.name.clone(),
                    Some(interval) => {
                        let settings = pipeline.as_object_mut().context("a pipeline is a map")?;
                        let settings = settings.entry("settings").or_insert_with(|| json!({}));
                        settings["job_id"] = json!(format!("{}-{index}", query.name));
                        settings["checkpoint"] = json!({
                            "interval": humantime::format_duration(*interval).to_string(),
                            "storage": work.path().join("checkpoints").display().to_string(),
                        });
                        format!("{} (checkpoint every {})", query.name, humantime::format_duration(*interval))
                    }
                };
                let pipeline_file = work.path().join(format!("{}-{}-{index}.yaml", query.name, input.label()));
                // JSON is YAML: the rewritten pipeline is written as JSON.
                std::fs::write(&pipeline_file, serde_json::to_string_pretty(&pipeline)?)?;
                variants.push((Query { name, file: query.file.clone() }, pipeline_file, Vec::new()));
            }
            for run in 0..args.runs.max(1) {
                for (index, (variant, pipeline_file, runs)) in variants.iter_mut().enumerate() {
                    let summary_file = work.path().join(format!("{}-{}-{index}-{run}.json", query.name, input.label()));
                    // Each run starts without checkpoints of the previous one.
                    let _ = std::fs::remove_dir_all(work.path().join("checkpoints"));
                    runs.push(run_job(&weir, pipeline_file, &summary_file).with_context(|| {
                        format!("query {} on the {} input ({})", variant.name, input.label(), query.file.display())
                    })?);
                }
            }
            for (variant, _, runs) in &mut variants {
                report(args.json, variant, input, runs);
            }
        }
    }
    Ok(())
}

fn describe_file(inputs: &[Input]) -> String {
    match inputs.iter().find_map(|input| match input {
        Input::File { path, bytes } => Some((path, bytes)),
        Input::Memory { .. } => None,
    }) {
        Some((path, bytes)) => format!("{} ({:.0} MB)", path.display(), *bytes as f64 / 1e6),
        None => "none".into(),
    }
}

fn report(json: bool, query: &Query, input: &Input, runs: &mut [JobSummary]) {
    let median = crate::measure::median_by(runs, JobSummary::per_cpu_second);
    let wall = median.wall_seconds.max(1e-9);
    let (state_bytes, state_groups) = median.peak_state();
    let state = state_bytes
        .checked_div(state_groups)
        .map_or(String::new(), |per_group| format!("{:.0} KB, {per_group} B/group", state_bytes as f64 / 1e3));
    let mb_per_second = match input {
        Input::File { bytes, .. } => Some(*bytes as f64 / 1e6 / wall),
        Input::Memory { .. } => None,
    };
    if json {
        let line = json!({
            "query": query.name,
            "checkpoints_completed": median.checkpoints_completed,
            "input": input.label(),
            "events": median.events_in,
            "events_out": median.events_out,
            "wall_seconds": median.wall_seconds,
            "cpu_seconds": median.cpu_seconds,
            "events_per_second": median.events_in as f64 / wall,
            "events_per_cpu_second": median.per_cpu_second(),
            "peak_rss_bytes": median.peak_rss_bytes,
            "peak_state_bytes": state_bytes,
            "peak_state_groups": state_groups,
            "mb_per_second": mb_per_second,
            "runs": runs.iter().map(|run| json!({ "wall_seconds": run.wall_seconds, "cpu_seconds": run.cpu_seconds })).collect::<Vec<_>>(),
        });
        println!("{line}");
    } else {
        let checkpoints = match median.checkpoints_completed {
            0 => String::new(),
            taken => format!(", {taken} checkpoints"),
        };
        println!(
            "| {}{checkpoints} | {} | {} | {} | {} | {} | {:.0} | {} | {state} |",
            query.name,
            input.label(),
            median.events_in,
            weir_engine::metrics::human(median.events_in as f64 / wall),
            weir_engine::metrics::human(median.per_cpu_second()),
            median.events_out,
            median.peak_rss_bytes as f64 / 1e6,
            mb_per_second.map_or(String::new(), |mb| format!("{mb:.0}")),
        );
    }
}

/// The query files in `dir`, in query order (q0, q1, q1-wasm, q2, ..., q14, ...).
fn queries(dir: &Path, only: &[String]) -> anyhow::Result<Vec<Query>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!("cannot read the query folder {} (run from the repository root or pass --queries)", dir.display())
    })?;
    let mut queries = Vec::new();
    for entry in entries {
        let file = entry?.path();
        let Some(name) = file.file_stem().and_then(|stem| stem.to_str()) else { continue };
        if file.extension().is_some_and(|ext| ext == "yaml") && name.starts_with('q') {
            queries.push(Query { name: name.to_owned(), file: file.canonicalize()? });
        }
    }
    for wanted in only {
        if !queries.iter().any(|query| &query.name == wanted) {
            let known: Vec<&str> = queries.iter().map(|query| query.name.as_str()).collect();
            bail!("no query `{wanted}` in {}; there are: {}", dir.display(), known.join(", "));
        }
    }
    queries.retain(|query| only.is_empty() || only.contains(&query.name));
    queries.sort_by_key(|query| query_order(&query.name));
    Ok(queries)
}

/// `q14-wasm` sorts as (14, "-wasm").
fn query_order(name: &str) -> (u32, String) {
    let rest = name.trim_start_matches('q');
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    (rest[..digits].parse().unwrap_or(u32::MAX), rest[digits..].to_owned())
}

/// The query's pipeline with its inputs, sinks and parallelism set for one benchmark job.
fn variant(
    query: &Query,
    input: &Input,
    output_dir: Option<&Path>,
    parallelism: Option<usize>,
) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(&query.file)?;
    let mut pipeline: Value =
        serde_saphyr::from_str(&text).with_context(|| format!("cannot read {}", query.file.display()))?;
    let base_dir = query.file.parent().unwrap_or(Path::new("."));
    let document = pipeline.as_object_mut().context("a pipeline file is a map")?;

    // Relative paths in the query resolve against its folder; the job file lives elsewhere.
    for section in ["plugins", "tables"] {
        for (_, component) in entries_mut(document, section) {
            if let Some(Value::String(path)) = component.get_mut("path") {
                *path = base_dir.join(&*path).display().to_string();
            }
        }
    }

    let mut bid_sources = 0;
    for (name, source) in entries_mut(document, "sources") {
        if source.get("type").and_then(Value::as_str) != Some("nexmark") {
            continue;
        }
        let is_bid = source.get("kind").and_then(Value::as_str) == Some("bid");
        bid_sources += usize::from(is_bid);
        match input {
            Input::Memory { generator_events } => {
                source["events"] = json!(generator_events);
            }
            Input::File { path, .. } if is_bid => {
                // Same columns from the file, so the same event time.
                let event_time = source.get("event_time").cloned();
                *source = bids_file_source(path);
                if let Some(event_time) = event_time {
                    source["event_time"] = event_time;
                }
            }
            Input::File { .. } => bail!(
                "{}: source `{name}` generates {} events; the file input holds bids only",
                query.file.display(),
                source.get("kind").and_then(Value::as_str).unwrap_or("other")
            ),
        }
    }
    if bid_sources == 0 && matches!(input, Input::File { .. }) {
        bail!("{}: no `nexmark` source with `kind: bid` to replace with the file", query.file.display());
    }

    let sinks = entries_mut(document, "sinks");
    let several = sinks.len() > 1;
    for (name, sink) in sinks {
        let inputs = sink.get("inputs").cloned().unwrap_or(Value::Null);
        *sink = match output_dir {
            None => json!({ "type": "blackhole", "inputs": inputs }),
            Some(dir) => {
                let file =
                    if several { format!("{}-{name}.jsonl", query.name) } else { format!("{}.jsonl", query.name) };
                let path = std::path::absolute(dir.join(file))?;
                json!({ "type": "file", "inputs": inputs, "path": path.display().to_string(), "format": "json", "overwrite": true })
            }
        };
    }

    if let Some(parallelism) = parallelism {
        let settings = document.entry("settings").or_insert_with(|| json!({}));
        settings["parallelism"] = json!(parallelism);
    }
    Ok(pipeline)
}

/// The components of one section, as `(name, spec)`.
fn entries_mut<'a>(document: &'a mut Map<String, Value>, section: &str) -> Vec<(String, &'a mut Value)> {
    match document.get_mut(section) {
        Some(Value::Object(components)) => components.iter_mut().map(|(name, spec)| (name.clone(), spec)).collect(),
        _ => Vec::new(),
    }
}

/// A `file` source reading JSON-lines bids with the generator's bid schema.
pub fn bids_file_source(path: &Path) -> Value {
    let schema = EventKind::Bid
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let name = type_name(field.data_type()).expect("bid columns have declarable types");
            (field.name().clone(), Value::String(name))
        })
        .collect::<Map<_, _>>();
    json!({ "type": "file", "path": path.display().to_string(), "format": "json", "schema": schema })
}

/// A pipeline (JSON text, which is YAML) writing `bids` generated bids as JSON lines to `path`.
pub fn bids_file_pipeline(bids: u64, path: &Path) -> String {
    json!({
        "sources": { "bids": { "type": "nexmark", "kind": "bid", "events": generator_events(bids) } },
        "sinks": { "out": { "type": "file", "inputs": ["bids"], "path": path.display().to_string(), "format": "json", "overwrite": true } },
    })
    .to_string()
}

/// Writes `bids` generated bids as JSON lines to `path`.
fn write_bids_file(weir: &Path, bids: u64, path: &Path, work: &Path) -> anyhow::Result<()> {
    let pipeline_file = work.join("generate.yaml");
    std::fs::write(&pipeline_file, bids_file_pipeline(bids, path))?;
    run_job(weir, &pipeline_file, &work.join("generate.json")).context("generating the bids file")?;
    Ok(())
}

/// Runs one job in its own process and reads its summary.
fn run_job(weir: &Path, pipeline_file: &Path, summary_file: &Path) -> anyhow::Result<JobSummary> {
    let output = Command::new(weir)
        .args(["--log-level", "warn", "run", "--quiet", "--summary-json"])
        .arg(summary_file)
        .arg(pipeline_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot start {}", weir.display()))?;
    if !output.status.success() {
        bail!("`weir run` failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr).trim_end());
    }
    let summary = std::fs::read(summary_file).with_context(|| format!("no summary in {}", summary_file.display()))?;
    Ok(serde_json::from_slice(&summary)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sort_by_number_then_suffix() {
        let mut names = vec!["q14", "q2", "q1-wasm", "q1", "q0", "q22", "q21"];
        names.sort_by_key(|name| query_order(name));
        assert_eq!(names, ["q0", "q1", "q1-wasm", "q2", "q14", "q21", "q22"]);
    }

    #[test]
    fn generator_events_cover_the_bids() {
        assert_eq!(generator_events(46), 50);
        assert_eq!(generator_events(47), 100);
        assert_eq!(generator_events(0), 0);
    }
}
