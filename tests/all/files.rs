//! File formats and file behaviour: CSV, Parquet with roll-over, schema inference, and following
//! a growing, rotating log file.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir_engine::runner;

use crate::support::{Workspace, counters, json_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_rolls_over_by_size_into_complete_files() {
    let ws = Workspace::new();
    let metrics = ws
        .run(
            r#"
sources:
  bids: { type: nexmark, kind: bid, events: 100000 }
sinks:
  out: { type: file, inputs: [bids], path: out/bids.parquet, format: parquet, roll: { max_size: 1MiB } }
settings: { batch_size: 4096 }
"#,
        )
        .await
        .unwrap();
    let mut files: Vec<_> = std::fs::read_dir(ws.path("out")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3, "several files: {files:?}");
    assert!(
        files.iter().all(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.')),
        "no in-progress file left"
    );
    let mut rows = 0;
    for file in &files {
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
                .unwrap()
                .build()
                .unwrap();
        rows += reader.map(|batch| batch.unwrap().num_rows()).sum::<usize>();
    }
    assert_eq!(rows as u64, counters(&metrics, "bids").sent_events);
    assert!(files[0].to_string_lossy().ends_with("bids-00000.parquet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_round_trip_with_inferred_schema() {
    let ws = Workspace::new();
    ws.write("in.csv", "city;temp;ok\nBerlin;3.5;true\nHangzhou;18.25;false\n");
    let pipeline = ws
        .load(
            r#"
sources:
  readings: { type: file, path: in.csv, format: csv, delimiter: ";", infer_schema: true }
transforms:
  warm: { type: select, inputs: [readings], columns: ["city", "temp * 1.8 + 32 AS fahrenheit", "NOT ok AS cold"] }
sinks:
  out: { type: file, inputs: [warm], path: out.csv, format: csv }
"#,
        )
        .unwrap();
    let types: Vec<String> =
        pipeline.graph.components[0].schema.fields().iter().map(|f| f.data_type().to_string()).collect();
    assert_eq!(types, ["Utf8", "Float64", "Boolean"]);
    let metrics = runner::metrics_for(&pipeline.graph);
    runner::run(&pipeline.graph, &metrics, CancellationToken::new()).await.unwrap();
    assert_eq!(ws.read("out.csv"), "city,fahrenheit,cold\nBerlin,38.3,false\nHangzhou,64.85,true\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_reads_appends_new_files_and_rotation_until_stopped() {
    let ws = Workspace::new();
    let log = ws.write("logs/app.log", "{\"n\": 1}\n{\"n\": 2}\n");
    let pipeline = ws
        .load(
            r#"
sources:
  logs: { type: file, path: "logs/*.log", follow: true, poll_interval: 20ms, schema: { n: int64 } }
sinks:
  out: { type: file, inputs: [logs], path: out.jsonl }
settings: { batch_size: 1 }
"#,
        )
        .unwrap();
    let metrics = runner::metrics_for(&pipeline.graph);
    let stop = CancellationToken::new();
    let job = {
        let (pipeline, metrics, stop) = (pipeline.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move { runner::run(&pipeline.graph, &metrics, stop).await })
    };
    let received = |n: u64| {
        let metrics = metrics.clone();
        async move {
            for _ in 0..500 {
                if counters(&metrics, "logs").sent_events >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("timed out waiting for {n} rows (have {})", counters(&metrics, "logs").sent_events);
        }
    };
    received(2).await;
    // An append, in two writes: the half line waits for its end.
    append(&log, "{\"n\": 3}\n{\"n\"");
    received(3).await;
    append(&log, ": 4}\n");
    received(4).await;
    // Rotation: the old file is renamed away (and written to once more), a new one appears.
    std::fs::rename(&log, ws.path("logs/app.log.1")).unwrap();
    append(&ws.path("logs/app.log.1"), "{\"n\": 5}\n");
    std::fs::write(&log, "{\"n\": 6}\n").unwrap();
    received(6).await;
    // A new file matching the glob.
    ws.write("logs/other.log", "{\"n\": 7}\n");
    received(7).await;
    stop.cancel();
    job.await.unwrap().unwrap();
    let mut seen: Vec<i64> = json_lines(&ws.read("out.jsonl")).iter().map(|r| r["n"].as_i64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6, 7], "every line once");
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_type_decodes_and_feeds_expressions() {
    let ws = Workspace::new();
    ws.write(
        "in.jsonl",
        concat!(
            r#"{"b": true, "i": 1, "u": 18446744073709551615, "f": 1.5, "s": "x", "bin": "68656c6c6f", "ts": "2024-01-01T10:00:00Z", "d": "2024-01-02", "dec": "12.34"}"#,
            "\n",
            r#"{"b": false, "i": 2, "ts": 1700000000000, "dec": 5}"#,
            "\n"
        ),
    );
    ws.run(
        r#"
sources:
  t: { type: file, path: in.jsonl, schema: { b: bool, i: int32, u: uint64, f: float32, s: string, bin: binary, ts: "timestamp(ms)", d: date, dec: "decimal(10,2)" } }
transforms:
  x:
    type: select
    inputs: [t]
    parallelism: 1
    columns: ["b", "u", "f", "s IS NULL AS no_s", "length(bin) AS n", "date_trunc('day', ts) AS day", "d", "dec * 2 AS dec2", "CAST(i AS BIGINT) + 1 AS j"]
sinks:
  out: { type: file, inputs: [x], path: out.csv, format: csv }
"#,
    )
    .await
    .unwrap();
    assert_eq!(
        ws.read("out.csv"),
        "b,u,f,no_s,n,day,d,dec2,j\n\
         true,18446744073709551615,1.5,false,5,2024-01-01T00:00:00,2024-01-02,24.68,2\n\
         false,,,true,,2023-11-14T00:00:00,,10.00,3\n"
    );
}

/// A followed-log job over `logs/` in `ws`, writing `out*.jsonl`; returns it running.
fn follow_logs(ws: &Workspace, glob: &str, extra: &str) -> crate::support::Running {
    ws.start(&format!(
        r#"
sources:
  logs: {{ type: file, path: "{glob}", follow: true, poll_interval: 50ms, format: text{extra} }}
sinks:
  out: {{ type: file, inputs: [logs], path: out.jsonl }}
settings: {{ batch_size: 64 }}
"#
    ))
}

/// Lines `from..=to` as `line N` text.
fn numbered(from: u32, to: u32) -> String {
    (from..=to).map(|n| format!("line {n}\n")).collect()
}

/// The numbers of every `line N` row in every output part, sorted (duplicates kept).
fn line_numbers(ws: &Workspace) -> Vec<u32> {
    let mut numbers: Vec<u32> = crate::support::json_rows_of_files(ws.dir.path(), "out")
        .iter()
        .map(|row| row["line"].as_str().unwrap().strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers
}

async fn wait_for_lines(ws: &Workspace, count: usize) {
    crate::support::eventually(20, &format!("{count} lines"), async || ws.rows("out.jsonl").len() >= count).await;
}

/// Issue 19 (11): with `app.log*`, a file renamed by rotation was read again from its start
/// (79 % duplicates); `copytruncate` lost the lines written just before each truncation; a
/// restart read every file again. Plain-text lines are rows of one `line` column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followed_logs_survive_rename_copytruncate_and_restart_without_loss_or_duplicates() {
    let ws = Workspace::new();
    let log = ws.write("logs/app.log", numbered(1, 500));
    let running = follow_logs(&ws, "logs/app.log*", "");
    wait_for_lines(&ws, 500).await;

    // Rename rotation: app.log -> app.log.1 (still matched by the glob), a new app.log.
    std::fs::rename(&log, ws.path("logs/app.log.1")).unwrap();
    std::fs::write(&log, numbered(501, 600)).unwrap();
    wait_for_lines(&ws, 600).await;

    // copytruncate: lines written, copied and truncated before the next poll can read them.
    append(&log, &numbered(601, 700));
    std::fs::copy(&log, ws.path("logs/app.log.2")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    append(&log, &numbered(701, 750));
    wait_for_lines(&ws, 750).await;
    running.stop().await.unwrap();
    assert_lines_once(&ws, 750, "every line once after two rotations");

    // A restart goes on at the remembered positions.
    append(&log, &numbered(751, 800));
    let running = follow_logs(&ws, "logs/app.log*", "");
    // The second run writes the next part (the first run's file is never replaced).
    crate::support::eventually(20, "the new lines", async || ws.rows("out-00001.jsonl").len() >= 50).await;
    running.stop().await.unwrap();
    assert_lines_once(&ws, 800, "the restart read only the new lines");
}

/// Asserts that the output holds lines `1..=last` once each; on failure says which are missing
/// or repeated, what each output file holds and what the positions file says.
fn assert_lines_once(ws: &Workspace, last: u32, what: &str) {
    let numbers = line_numbers(ws);
    if numbers == (1..=last).collect::<Vec<_>>() {
        return;
    }
    let mut counts = std::collections::BTreeMap::new();
    for number in &numbers {
        *counts.entry(*number).or_insert(0) += 1;
    }
    let missing: Vec<u32> = (1..=last).filter(|n| !counts.contains_key(n)).collect();
    let repeated: Vec<(u32, i32)> = counts.iter().filter(|(_, c)| **c > 1).map(|(n, c)| (*n, *c)).collect();
    let mut files: Vec<String> = std::fs::read_dir(ws.dir.path())
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            format!("{} ({} bytes)", entry.file_name().to_string_lossy(), entry.metadata().unwrap().len())
        })
        .collect();
    files.sort();
    let positions = std::fs::read_to_string(ws.path(".weir/sources.logs.positions.json")).unwrap_or_default();
    panic!(
        "{what}: {} lines; missing {missing:?}; repeated (line, times) {repeated:?}; files {files:?}; positions {positions}",
        numbers.len()
    );
}
