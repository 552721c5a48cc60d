//! `weir bench languages`: the same scalar UDFs in Rust, Python, JavaScript and C (the parity
//! plugins, `plugins/parity-*`), next to the same functions compiled into the host.
//!
//! - per-row cost of `dollar_to_euro` (int64 -> float64) and `exclaim` (utf8 -> utf8, the text
//!   and a `!`) at batch sizes 1024 and 8192, inside the sandbox, with the native Rust cost
//!   measured in the same run; `slug` (a per-character loop) shows what the language costs;
//! - `gcd(int64, int64)` by Euclid's loop over 1024-row batches, the function RisingWave's
//!   arrow-udf measures for its (unsandboxed) Python and JavaScript runtimes; the same inputs
//!   run through arrow-udf in `bench/arrow-udf` for a side-by-side comparison;
//! - compile time (first load), cached load, a fresh instance from the cache, what replacing a
//!   trapped instance costs a caller (with the background spare for slow plugins), and the
//!   linear memory an instance holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};

use weir_plugin::call::{InstanceSlot, ScalarCaller};
use weir_plugin::runtime::{engine, load_with};
use weir_plugin::{Instance, Limits, Plugin, load};

const LANGUAGES: [(&str, &str); 4] = [("Rust", "rust"), ("Python", "python"), ("JavaScript", "js"), ("C", "c")];
const SIZES: [usize; 2] = [1024, 8192];

/// The host-native versions of the parity functions (the baseline).
fn native_slug(text: &str) -> Option<String> {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    if slug.ends_with('-') {
        slug.pop();
    }
    (!slug.is_empty()).then_some(slug)
}

fn inputs(rows: usize) -> (ArrayRef, ArrayRef) {
    let amounts: ArrayRef = Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7919 % 100_000_000)));
    let texts: ArrayRef =
        Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("Stream Processing #{i:05} with Wasm!"))));
    (amounts, texts)
}

/// The `gcd` benchmark's inputs (the same in `bench/arrow-udf`): pairs of positive numbers
/// below a million, each taking several steps of Euclid's loop.
pub fn gcd_inputs(rows: usize) -> (Int64Array, Int64Array) {
    let a = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7919 % 1_000_000 + 1));
    let b = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 104_729 % 100_000 + 1));
    (a, b)
}

fn native_gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Median nanoseconds per row of `call` over batches of `rows`, within about `budget`.
fn per_row(rows: usize, budget: Duration, mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..3 {
        call()?;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget || samples.len() < 5 {
        let at = Instant::now();
        call()?;
        samples.push(at.elapsed().as_nanos() as f64 / rows as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn wasm_per_row(plugin: &Arc<Plugin>, function: &str, args: &[ArrayRef], rows: usize) -> anyhow::Result<f64> {
    let index = plugin
        .functions
        .scalar()
        .iter()
        .position(|f| f.name == function)
        .ok_or_else(|| anyhow::anyhow!("{} has no function {function}", plugin.info.name))?;
    let mut caller = ScalarCaller::fixed(Arc::clone(plugin), bench_limits(), index as u32);
    per_row(rows, Duration::from_millis(400), || {
        let result = caller.call(args, rows)?;
        anyhow::ensure!(result.failed.is_empty(), "{function} rejected rows in the benchmark");
        Ok(())
    })
}

fn bench_limits() -> Limits {
    Limits { time: Duration::from_secs(10), memory: 512 << 20, ..Limits::default() }
}

fn parity_path(plugins: &Path, language: &str) -> anyhow::Result<PathBuf> {
    let path = plugins.join(format!("parity-{language}/build/parity_{language}.wasm"));
    anyhow::ensure!(
        path.exists(),
        "{} not found: build it with `weir plugin build plugins/parity-{language}` (tests/run.sh does)",
        path.display()
    );
    Ok(path)
}

/// Runs the language benchmarks and prints Markdown tables.
///
/// # Errors
/// Missing plugins and failing calls.
pub fn bench(plugins: &Path) -> anyhow::Result<()> {
    let plugins = std::path::absolute(plugins)?;
    let mut loaded = Vec::new();
    for (label, language) in LANGUAGES {
        loaded.push((label, language, Arc::new(load(&parity_path(&plugins, language)?, bench_limits())?)));
    }

    println!(
        "## Per-row cost of the same scalar UDF (ns per row, inside the sandbox; native = compiled into the host)\n"
    );
    println!(
        "`dollar_to_euro(int64) -> float64`, `exclaim(utf8) -> utf8` (text + \"!\"), `slug(utf8) -> utf8` (a per-character loop).\n"
    );
    println!(
        "| language | int64 @1024 | int64 @8192 | utf8 @1024 | utf8 @8192 | slug @8192 | int64 vs Rust guest | utf8 vs Rust guest | int64 vs native | utf8 vs native |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // (int64, exclaim, slug) ns per row at each batch size.
    let mut native = Vec::new();
    for rows in SIZES {
        let (amounts, texts) = inputs(rows);
        let amounts = amounts.as_any().downcast_ref::<Int64Array>().expect("int64").clone();
        let texts = texts.as_any().downcast_ref::<StringArray>().expect("utf8").clone();
        let int = per_row(rows, Duration::from_millis(300), || {
            let out: Float64Array = amounts.iter().map(|a| a.map(|a| a as f64 * 0.908)).collect();
            std::hint::black_box(out);
            Ok(())
        })?;
        let exclaim = per_row(rows, Duration::from_millis(300), || {
            let out: StringArray = texts.iter().map(|t| t.map(|t| format!("{t}!"))).collect();
            std::hint::black_box(out);
            Ok(())
        })?;
        let slug = per_row(rows, Duration::from_millis(300), || {
            let out: StringArray = texts.iter().map(|t| t.and_then(native_slug)).collect();
            std::hint::black_box(out);
            Ok(())
        })?;
        native.push((int, exclaim, slug));
    }
    let mut measured = Vec::new();
    for (label, _, plugin) in &loaded {
        let mut cells = Vec::new();
        for rows in SIZES {
            let (amounts, texts) = inputs(rows);
            let int = wasm_per_row(plugin, "dollar_to_euro", &[amounts], rows)?;
            let exclaim = wasm_per_row(plugin, "exclaim", std::slice::from_ref(&texts), rows)?;
            let slug = if rows == 8192 { wasm_per_row(plugin, "slug", &[texts], rows)? } else { 0.0 };
            cells.push((int, exclaim, slug));
        }
        measured.push((*label, cells));
    }
    let rust_guest = measured[0].1[1];
    let row = |label: &str, cells: &[(f64, f64, f64)]| {
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} |",
            cells[0].0,
            cells[1].0,
            cells[0].1,
            cells[1].1,
            cells[1].2,
            cells[1].0 / rust_guest.0,
            cells[1].1 / rust_guest.1,
            cells[1].0 / native[1].0,
            cells[1].1 / native[1].1
        );
    };
    row("native Rust (host)", &native);
    for (label, cells) in &measured {
        row(label, cells);
    }

    println!("\n## gcd(int64, int64) -> int64 by Euclid's loop, 1024-row batches (ns per row)\n");
    let (a, b) = gcd_inputs(1024);
    let native_gcd_row = per_row(1024, Duration::from_millis(300), || {
        let out: Int64Array = a.iter().zip(b.iter()).map(|(a, b)| Some(native_gcd(a?, b?))).collect();
        std::hint::black_box(out);
        Ok(())
    })?;
    println!("| language | gcd int64 @1024 | vs native | gcd32 int32 @1024 | vs native |\n|---|---:|---:|---:|---:|");
    println!("| native Rust (host) | {native_gcd_row:.1} | 1.0 | | |");
    let narrow = |array: &Int64Array| -> ArrayRef {
        Arc::new(arrow::array::Int32Array::from_iter_values(array.values().iter().map(|&v| v as i32)))
    };
    let args32: [ArrayRef; 2] = [narrow(&a), narrow(&b)];
    let args: [ArrayRef; 2] = [Arc::new(a), Arc::new(b)];
    for (label, _, plugin) in &loaded {
        let gcd = wasm_per_row(plugin, "euclid_gcd", &args, 1024)?;
        let gcd32 = wasm_per_row(plugin, "euclid_gcd32", &args32, 1024)?;
        println!("| {label} | {gcd:.1} | {:.1} | {gcd32:.1} | {:.1} |", gcd / native_gcd_row, gcd32 / native_gcd_row);
    }

    println!("\n## Loading, instantiation and memory per language\n");
    println!(
        "| language | component | compile (no cache) | cached load | new instance | replacement after a trap | memory per instance |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, language, plugin) in &loaded {
        let path = parity_path(&plugins, language)?;
        let compiled = load_with(&path, engine(), true, false, bench_limits())?;
        let cached = load(&path, bench_limits())?;
        let count = 200;
        let mut memory = 0;
        let started = Instant::now();
        for _ in 0..count {
            let instance = Instance::new(Arc::clone(plugin), bench_limits())?;
            memory = instance.memory_bytes();
        }
        let instance_time = started.elapsed() / count;
        // What a caller waits for when its instance trapped: a spare is ready for plugins that
        // instantiate slowly (made in the background while the previous one worked).
        let mut slot = InstanceSlot::default();
        slot.get(plugin, bench_limits())?;
        let mut replacing = Duration::ZERO;
        let replacements = 50;
        for _ in 0..replacements {
            std::thread::sleep(Duration::from_millis(3));
            slot.discard();
            let started = Instant::now();
            slot.get(plugin, bench_limits())?;
            replacing += started.elapsed();
        }
        println!(
            "| {label} | {:.1} MB | {:.2} s | {:.1} ms | {:.0} µs | {:.0} µs | {:.1} MiB |",
            compiled.size as f64 / 1e6,
            compiled.load_time.as_secs_f64(),
            cached.load_time.as_secs_f64() * 1e3,
            instance_time.as_secs_f64() * 1e6,
            (replacing / replacements).as_secs_f64() * 1e6,
            memory as f64 / f64::from(1 << 20)
        );
    }
    Ok(())
}
