//! `weir bench swap`: what a hot swap costs a running job.
//!
//! A `weir run` child process runs a generator at a fixed rate (rows stamped with the wall clock
//! when generated) through the `tagger` UDF to stdout; this process reads every row as it comes
//! out and records its latency (arrival minus generation, in ms as the generator stamps them).
//! It swaps the plugin through the admin API every `interval` (alternating two versions), then
//! by copying files into the watched plugins directory. Reported: event latency p50/p99/max in
//! the second around each swap against steady state (more than a second from any swap), the
//! admin API's reload time, and the time from a file landing in the directory to the first row
//! the new version tagged.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Options of `weir bench swap`.
#[derive(Debug, clap::Args)]
pub struct SwapArgs {
    /// Where the compiled plugins are (`tagger_v1.wasm`, `tagger_v2.wasm`).
    #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
    pub plugins_dir: PathBuf,
    /// Rows per second.
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// Rows per batch (the generator emits one batch every batch/rate seconds).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Swaps through the admin API, and again through the watched directory.
    #[arg(long, default_value_t = 10)]
    pub swaps: usize,
    /// Time between swaps.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// One row seen on the child's stdout.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// When it arrived here (ms since the Unix epoch).
    arrived_ms: f64,
    /// Arrival minus generation (ms).
    latency_ms: f64,
    /// Which tag (0 = v1, 1 = v2).
    tag: u8,
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index]
}

/// Runs the benchmark and prints its tables.
///
/// # Errors
/// Missing plugins, a child that does not start, an admin API that does not answer.
pub fn bench(args: &SwapArgs) -> anyhow::Result<()> {
    let versions = [args.plugins_dir.join("tagger_v1.wasm"), args.plugins_dir.join("tagger_v2.wasm")];
    for file in &versions {
        anyhow::ensure!(file.exists(), "{} is missing (build the plugins workspace first)", file.display());
    }
    let dir = tempfile::tempdir()?;
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let pipeline = dir.path().join("swap.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
settings: {{ batch_size: {batch} }}
plugins:
  tagger: {{ path: {v1} }}
sources:
  rows: {{ type: generator, rate: {rate}, columns: {{ seq: {{ sequence: {{}} }}, ts: {{ timestamp: {{}} }} }} }}
transforms:
  tagged: {{ type: udf, inputs: [rows], plugin: tagger, function: tag, args: [seq], as: tag, parallelism: 1 }}
  out: {{ type: select, inputs: [tagged], columns: [tag, "CAST(ts AS BIGINT) AS ts"] }}
sinks:
  console: {{ type: stdout, inputs: [out] }}
"#,
            batch = args.batch_size,
            v1 = std::fs::canonicalize(&versions[0])?.display(),
            rate = args.rate
        ),
    )?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["run", "--quiet", "--admin", &format!("127.0.0.1:{port}"), "--plugins-dir"])
        .arg(&watched)
        .arg(&pipeline)
        // A fresh compile cache: the first load of each version compiles, later ones do not.
        .env("WEIR_CACHE_DIR", dir.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let arrived_ms = now_ms();
                let Ok(row) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let (Some(ts), Some(tag)) = (row["ts"].as_f64(), row["tag"].as_str()) else { continue };
                let tag = u8::from(tag == "v2");
                seen.lock().unwrap_or_else(PoisonError::into_inner).push(Seen {
                    arrived_ms,
                    latency_ms: arrived_ms - ts,
                    tag,
                });
            }
        })
    };
    let result = measure(args, port, &versions, &watched, &seen);
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    result
}

fn measure(
    args: &SwapArgs,
    port: u16,
    versions: &[PathBuf; 2],
    watched: &Path,
    seen: &Mutex<Vec<Seen>>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    // Wait for the job, then a steady second.
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap_or_else(PoisonError::into_inner).len() < 1000 {
        anyhow::ensure!(Instant::now() < deadline, "the job did not start producing rows");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));

    let mut swaps_at: Vec<f64> = Vec::new();
    let mut reload_ms: Vec<f64> = Vec::new();
    for swap in 0..args.swaps {
        let file = std::fs::canonicalize(&versions[(swap + 1) % 2])?;
        let started = Instant::now();
        swaps_at.push(now_ms());
        let answer = runtime.block_on(async {
            http.post(url("/plugins/tagger/reload")).json(&serde_json::json!({ "path": file })).send().await
        })?;
        anyhow::ensure!(answer.status().is_success(), "reload failed: {}", runtime.block_on(answer.text())?);
        reload_ms.push(started.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(args.interval);
    }
    // Through the watched directory: the time until the first row of the new version.
    let mut pickup_ms: Vec<f64> = Vec::new();
    let mut current_tag = u8::from(args.swaps % 2 == 1);
    for _ in 0..args.swaps {
        let next = 1 - current_tag;
        let landed = now_ms();
        swaps_at.push(landed);
        let temporary = watched.join("tagger.wasm.partial");
        std::fs::copy(&versions[usize::from(next)], &temporary)?;
        std::fs::rename(&temporary, watched.join("tagger.wasm"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let first = seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .rev()
                .take_while(|s| s.arrived_ms >= landed)
                .filter(|s| s.tag == next)
                .map(|s| s.arrived_ms)
                .fold(f64::NAN, f64::min);
            if first.is_finite() {
                pickup_ms.push(first - landed);
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the watched file was not picked up within 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        current_tag = next;
        std::thread::sleep(args.interval);
    }

    let rows = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (mut around, mut steady): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    for row in &rows {
        let nearest = swaps_at.iter().map(|at| (row.arrived_ms - at).abs()).fold(f64::INFINITY, f64::min);
        if nearest <= 500.0 {
            around.push(row.latency_ms);
        } else if nearest > 1000.0 {
            steady.push(row.latency_ms);
        }
    }
    // The first reload of v2 compiles it; v1 was compiled when the job started. Later reloads
    // of either load from the cache.
    let cold_reloads = 1;
    for values in [&mut around, &mut steady, &mut pickup_ms] {
        values.sort_by(f64::total_cmp);
    }
    println!(
        "## Hot swap ({} rows/s in batches of {}, {} swaps by API + {} by watched file)\n",
        args.rate, args.batch_size, args.swaps, args.swaps
    );
    println!("| event latency (ms) | rows | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (label, values) in [("steady state", &steady), ("within 0.5 s of a swap", &around)] {
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} |",
            values.len(),
            percentile(values, 0.5),
            percentile(values, 0.99),
            values.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!(
        "\np99 around swaps / steady p99: {:.2}; added p99 pause: {:.1} ms",
        percentile(&around, 0.99) / percentile(&steady, 0.99),
        percentile(&around, 0.99) - percentile(&steady, 0.99)
    );
    println!("\n| swap path | median (ms) | max (ms) |");
    println!("|---|---:|---:|");
    let (cold, warm) = reload_ms.split_at(cold_reloads.min(reload_ms.len()));
    let mut warm = warm.to_vec();
    warm.sort_by(f64::total_cmp);
    println!(
        "| admin API reload, first load of the file (compiles; load + check + swap, answer received) | {:.1} | {:.1} |",
        percentile(cold, 0.5),
        cold.iter().copied().fold(f64::NAN, f64::max)
    );
    println!(
        "| admin API reload, from the compile cache | {:.1} | {:.1} |",
        percentile(&warm, 0.5),
        warm.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| file renamed into the watched directory -> first row of the new version out | {:.1} | {:.1} |",
        percentile(&pickup_ms, 0.5),
        pickup_ms.last().copied().unwrap_or(f64::NAN)
    );
    let rows_total = rows.len();
    println!("\n{rows_total} rows observed.");
    Ok(())
}
