//! `weir bench plugins`: what the WebAssembly boundary costs.
//!
//! - boundary cost of an identity UDF (int64 and strings) at batch sizes 1 to 8192, fitted as
//!   `a + b * rows` nanoseconds per call (a: fixed cost per call, b: cost per row);
//! - Nexmark q1 end to end with the conversion as a Wasm UDF vs as a native SQL expression;
//! - instantiation from the pre-instantiated component, compile speed, cached-artifact loads;
//! - the cost of epoch interruption on a CPU-bound UDF.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};

use crate::measure::{Measurement, median_by, run_pipeline};
use weir_engine::metrics::human;
use weir_engine::registry::Registry;
use weir_plugin::call::ScalarCaller;
use weir_plugin::runtime::{build_engine, load_with};
use weir_plugin::{Instance, Limits, Plugin, load};

fn function_index(plugin: &Plugin, name: &str) -> anyhow::Result<u32> {
    plugin
        .functions
        .scalar()
        .iter()
        .position(|f| f.name == name)
        .map(|i| i as u32)
        .ok_or_else(|| anyhow::anyhow!("{} has no function {name}", plugin.info.name))
}

/// Nanoseconds per call of `function` on `rows` rows, over about `budget` of calls.
fn time_calls(caller: &mut ScalarCaller, args: &[ArrayRef], rows: usize, budget: Duration) -> anyhow::Result<f64> {
    for _ in 0..10 {
        caller.call(args, rows)?;
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget || calls < 20 {
        let result = caller.call(args, rows)?;
        anyhow::ensure!(result.failed.is_empty(), "the benchmark function failed");
        calls += 1;
    }
    Ok(started.elapsed().as_nanos() as f64 / calls as f64)
}

/// `y = a + b x` through the smallest and the largest batch: `a` is what a call costs on its
/// own, `b` what each row adds. (A least-squares fit is dominated by the largest batch's noise
/// and can give a negative `a` on this shared machine.)
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let (x0, y0) = points[0];
    let (x1, y1) = points[points.len() - 1];
    let b = (y1 - y0) / (x1 - x0);
    (y0 - b * x0, b)
}

/// Runs the plugin benchmarks and prints Markdown tables.
///
/// # Errors
/// Missing plugins (build them with `tests/run.sh`) and failing runs.
pub fn bench(plugins_dir: &Path, events: u64, runs: usize, registry: &Registry) -> anyhow::Result<()> {
    let plugins_dir = &std::path::absolute(plugins_dir)?;
    let path = |name: &str| -> anyhow::Result<PathBuf> {
        let path = plugins_dir.join(format!("{name}.wasm"));
        anyhow::ensure!(path.exists(), "{} not found: build the plugins first (tests/run.sh does)", path.display());
        Ok(path)
    };
    let bench_udfs = Arc::new(load(&path("bench_udfs")?, Limits::default())?);
    let sizes = [1usize, 16, 256, 1024, 8192];

    println!("## Boundary cost (identity UDF, ns per call; a + b * rows through the 1-row and 8192-row points)\n");
    println!("| column | {} | a (ns/call) | b (ns/row) |", sizes.map(|s| format!("{s} rows")).join(" | "));
    println!("|---|{}---:|---:|", "---:|".repeat(sizes.len()));
    for (label, function) in [("int64", "identity_i64"), ("utf8 (16 bytes)", "identity_str")] {
        let index = function_index(&bench_udfs, function)?;
        let mut caller = ScalarCaller::fixed(Arc::clone(&bench_udfs), Limits::default(), index);
        let mut points = Vec::new();
        for rows in sizes {
            let array: ArrayRef = if function == "identity_i64" {
                Arc::new(Int64Array::from_iter_values(0..rows as i64))
            } else {
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("value-{i:010}"))))
            };
            let per_call = time_calls(&mut caller, &[array], rows, Duration::from_millis(300))?;
            points.push((rows as f64, per_call));
        }
        let (a, b) = fit(&points);
        let cells: Vec<String> = points.iter().map(|(_, ns)| format!("{ns:.0}")).collect();
        println!("| {label} | {} | {a:.0} | {b:.2} |", cells.join(" | "));
    }

    println!("\n## Nexmark q1 end to end: conversion as a Wasm UDF vs a native expression\n");
    let currency = path("currency")?;
    let source = format!("bids: {{ type: nexmark, kind: bid, events: {} }}", events.div_ceil(46) * 50);
    let native = format!(
        "sources:\n  {source}\ntransforms:\n  q1: {{ type: select, inputs: [bids], columns: [\"*\", \"price * 0.908 AS price_eur\"] }}\nsinks:\n  out: {{ type: blackhole, inputs: [q1] }}\n"
    );
    let wasm = format!(
        "plugins:\n  currency: {{ path: {} }}\nsources:\n  {source}\ntransforms:\n  q1: {{ type: udf, inputs: [bids], plugin: currency, function: dollar_to_euro, args: [price], as: price_eur }}\nsinks:\n  out: {{ type: blackhole, inputs: [q1] }}\n",
        currency.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("weir-bench-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!("| variant | events/s | events/s per core | vs native (per core) |");
    println!("|---|---:|---:|---:|");
    let mut native_per_core = None;
    for (label, yaml) in [("native `price * 0.908`", &native), ("Wasm `dollar_to_euro(price)`", &wasm)] {
        let mut measured = (0..runs.max(1))
            .map(|_| run_pipeline(&runtime, yaml, &dir, registry))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let median = median_by(&mut measured, Measurement::per_cpu_second);
        let per_core = median.per_cpu_second();
        let baseline = *native_per_core.get_or_insert(per_core);
        println!("| {label} | {} | {} | {:.2} |", human(median.per_second()), human(per_core), per_core / baseline);
    }
    std::fs::remove_dir_all(&dir).ok();

    println!("\n## Loading and instantiation\n");
    println!("| plugin | size | compile | compile speed | cached load | fresh instance |");
    println!("|---|---:|---:|---:|---:|---:|");
    for name in ["currency", "strings", "words", "bench_udfs"] {
        let file = path(name)?;
        let compiled = load_with(&file, weir_plugin::runtime::engine(), true, false, Limits::default())?;
        let cached = load(&file, Limits::default())?; // the first load of the run wrote the cache
        let cached = if cached.cached { cached } else { load(&file, Limits::default())? };
        let plugin = Arc::new(cached);
        let started = Instant::now();
        let count = 1000;
        for _ in 0..count {
            drop(Instance::new(Arc::clone(&plugin), Limits::default())?);
        }
        let instance = started.elapsed() / count;
        println!(
            "| {name} | {} KB | {:.1} ms | {:.2} MB/s | {:.2} ms | {:.1} µs |",
            compiled.size / 1024,
            compiled.load_time.as_secs_f64() * 1e3,
            compiled.size as f64 / 1e6 / compiled.load_time.as_secs_f64(),
            plugin.load_time.as_secs_f64() * 1e3,
            instance.as_secs_f64() * 1e6
        );
    }

    println!("\n## Epoch interruption on a CPU-bound UDF (spin_sum, 1000 rounds per row, 8192 rows)\n");
    let file = path("bench_udfs")?;
    let with_epochs = Arc::new(load(&file, Limits::default())?);
    let without_epochs = Arc::new(load_with(&file, &build_engine(false), false, false, Limits::default())?);
    let rows = 8192;
    let args: Vec<ArrayRef> =
        vec![Arc::new(Int64Array::from_iter_values(0..rows as i64)), Arc::new(Int64Array::from_value(1000, rows))];
    let mut timings = Vec::new();
    for plugin in [&without_epochs, &with_epochs] {
        let index = function_index(plugin, "spin_sum")?;
        let mut caller = ScalarCaller::fixed(
            Arc::clone(plugin),
            Limits { time: Duration::from_secs(10), ..Limits::default() },
            index,
        );
        timings.push(time_calls(&mut caller, &args, rows, Duration::from_millis(1500))?);
    }
    println!("| engine | ms per batch | relative |");
    println!("|---|---:|---:|");
    println!("| without epoch interruption | {:.2} | 1.00 |", timings[0] / 1e6);
    println!("| with epoch interruption (weir's setting) | {:.2} | {:.2} |", timings[1] / 1e6, timings[1] / timings[0]);
    Ok(())
}
