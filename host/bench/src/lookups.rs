//! `weir bench lookups`: lookup-join throughput.
//!
//! - **All hits** (no service): a generated stream joined with a 10,000-row `file` table (full
//!   cache, so every lookup is a hash probe), next to the same pipeline without the join in the
//!   same run; the join's own cost is the CPU difference. With PostgreSQL running, the same with a
//!   partial cache (warm after the first 10,000 keys).
//! - **Cold** (PostgreSQL on loopback): every row has a key never seen before and the cache is
//!   off, so every row needs a database lookup. weir's batched lookups (one `= ANY($1)` query per
//!   chunk of 1,000 keys, 4 in flight) against two one-query-per-row baselines measured in the
//!   same run: weir itself configured that way (chunk 1, one query at a time) and a bare
//!   tokio-postgres loop of prepared single-key `SELECT`s.

use std::path::Path;
use std::time::Instant;

use crate::measure::{Measurement, median_by, run_pipeline};
use weir_engine::metrics::human;
use weir_engine::registry::Registry;
use weir_engine::rusage::cpu_time;

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Rows in the dimension tables.
const TABLE_ROWS: u64 = 10_000;

fn stream(rows: u64, keys: &str) -> String {
    format!(
        "sources:\n  gen: {{ type: generator, count: {rows}, columns: {{ id: {{ sequence: {{ start: 1 }} }}, temp: {{ random: {{ min: 0.0, max: 40.0 }} }} }} }}\n\
         transforms:\n  keyed: {{ type: select, inputs: [gen], columns: [\"id\", \"temp\", \"{keys} AS device\"] }}\n"
    )
}

fn with_join(rows: u64, keys: &str, table: &str, join: &str) -> String {
    format!(
        "{}  joined: {{ type: lookup_join, inputs: [keyed], table: devices, on: {{ device: id }}, columns: [name, site]{join} }}\ntables:\n  devices: {table}\nsinks:\n  out: {{ type: blackhole, inputs: [joined] }}\n",
        stream(rows, keys)
    )
}

fn without_join(rows: u64, keys: &str) -> String {
    format!("{}sinks:\n  out: {{ type: blackhole, inputs: [keyed] }}\n", stream(rows, keys))
}

fn median(
    runtime: &tokio::runtime::Runtime,
    yaml: &str,
    dir: &Path,
    runs: usize,
    registry: &Registry,
) -> anyhow::Result<Measurement> {
    let mut measured =
        (0..runs.max(1)).map(|_| run_pipeline(runtime, yaml, dir, registry)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok(median_by(&mut measured, Measurement::per_cpu_second))
}

fn row(name: &str, m: &Measurement, note: &str) {
    println!("| {name} | {} | {} | {note} |", human(m.per_second()), human(m.per_cpu_second()));
}

/// Runs the suite: `rows` rows per all-hits scenario, `cold_rows` per cold scenario.
///
/// # Errors
/// A failed run (the PostgreSQL scenarios are skipped, with a note, if it is not running).
pub fn bench(rows: u64, cold_rows: u64, runs: usize, registry: &Registry) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = std::env::temp_dir().join(format!("weir-bench-lookups-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "weir bench lookups: {rows} rows per all-hits scenario, {cold_rows} per cold scenario, median of {runs}, {cores} cores\n"
    );
    println!("| scenario | rows/s | rows/s per core | note |");
    println!("|---|---:|---:|---|");

    let csv: String = std::iter::once("id,name,site\n".to_owned())
        .chain((0..TABLE_ROWS).map(|id| format!("{id},device-{id:05},site-{}\n", id % 40)))
        .collect();
    std::fs::write(dir.join("devices.csv"), csv)?;
    let keys = format!("id % {TABLE_ROWS}");
    let baseline = median(&runtime, &without_join(rows, &keys), &dir, runs, registry)?;
    row("stream without join", &baseline, "generator → select → blackhole");
    let file_table = "{ type: file, path: devices.csv, format: csv, key: [id] }";
    let full = median(&runtime, &with_join(rows, &keys, file_table, ""), &dir, runs, registry)?;
    row("all hits, full cache (file)", &full, &join_only(rows, &full, &baseline));

    let pg = runtime.block_on(tokio_postgres::connect(POSTGRES, tokio_postgres::NoTls));
    let Ok((client, connection)) = pg else {
        println!("\nPostgreSQL is not running on 5432: the partial-cache and cold scenarios were skipped.");
        return Ok(());
    };
    runtime.spawn(connection);
    let table = format!("bench_devices_{}", std::process::id());
    let cold_table_rows = cold_rows.max(TABLE_ROWS);
    runtime.block_on(client.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id int8 PRIMARY KEY, name text, site text);
         INSERT INTO {table} SELECT g, 'device-' || g, 'site-' || (g % 40) FROM generate_series(0, {}) g;
         ANALYZE {table};",
        cold_table_rows
    )))?;
    let pg_table = |cache: &str, lookup: &str| {
        format!(
            "{{ type: postgres, url: \"{POSTGRES}\", table: {table}, key: [id], columns: {{ id: int64, name: string, site: string }}, cache: {cache}{lookup} }}"
        )
    };
    let partial = median(
        &runtime,
        &with_join(rows, &keys, &pg_table("{ mode: partial, max_rows: 100000 }", ""), ""),
        &dir,
        runs,
        registry,
    )?;
    row("all hits, partial cache (postgres)", &partial, &join_only(rows, &partial, &baseline));

    // Cold: every row a new key, no cache.
    let cold_keys = "id";
    let batched =
        median(&runtime, &with_join(cold_rows, cold_keys, &pg_table("{ mode: none }", ""), ""), &dir, runs, registry)?;
    row("cold, batched (chunk 1000, 4 queries in flight)", &batched, "one `= ANY($1)` query per chunk");
    let naive_rows = (cold_rows / 10).max(1000);
    let naive = median(
        &runtime,
        &with_join(
            naive_rows,
            cold_keys,
            &pg_table("{ mode: none }", ", lookup: { chunk_size: 1, max_concurrency: 1 }"),
            ", in_flight: 1, parallelism: 1",
        ),
        &dir,
        runs,
        registry,
    )?;
    row("cold, weir one query per row", &naive, &format!("{naive_rows} rows"));
    let bare = runtime.block_on(bare_per_row(&client, &table, naive_rows))?;
    row("cold, bare tokio-postgres, one query per row", &bare, &format!("{naive_rows} rows"));
    println!(
        "\nbatched vs one query per row (wall): {:.1}x weir-naive, {:.1}x bare client",
        batched.per_second() / naive.per_second(),
        batched.per_second() / bare.per_second()
    );
    runtime.block_on(client.batch_execute(&format!("DROP TABLE {table}")))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The join's own rows per CPU-second: the CPU it added over the stream without it.
fn join_only(rows: u64, with: &Measurement, without: &Measurement) -> String {
    let added = rows as f64 / with.per_cpu_second() - rows as f64 / without.per_cpu_second();
    if added <= 0.0 {
        return "join cost below measurement noise".into();
    }
    format!("join alone: {} rows per CPU-second", human(rows as f64 / added))
}

/// A prepared single-key `SELECT` per row, one at a time.
async fn bare_per_row(client: &tokio_postgres::Client, table: &str, rows: u64) -> anyhow::Result<Measurement> {
    let statement = client.prepare(&format!("SELECT id, name, site FROM {table} WHERE id = $1")).await?;
    let (wall, cpu) = (Instant::now(), cpu_time());
    for id in 1..=rows as i64 {
        let found = client.query_opt(&statement, &[&id]).await?;
        anyhow::ensure!(found.is_some(), "row {id} is missing");
    }
    Ok(Measurement::new(rows, wall.elapsed(), cpu_time() - cpu))
}
