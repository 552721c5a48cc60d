//! Event time, watermarks and windows end to end: every window kind against a plain-Rust
//! evaluation on out-of-order input, late rows (side output, allowed lateness), empty windows,
//! many keys over parallel subtasks, idle sources, and a golden file for the aggregates.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};

use serde_json::{Value, json};

use crate::support::{Workspace, assert_golden_unordered, counters, json_lines};

/// Rows `{ts, key, v}` in roughly increasing time, each up to `jitter` ms behind the newest.
fn out_of_order_rows(seed: u64, count: usize, keys: u32, jitter: i64) -> Vec<(i64, String, i64)> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut newest = 1_000_000i64;
    (0..count)
        .map(|_| {
            // Mostly small steps, now and then a quiet stretch (empty windows, session gaps).
            newest +=
                if rng.random_range(0..50) == 0 { rng.random_range(10_000..30_000) } else { rng.random_range(0..400) };
            let time = newest - rng.random_range(0..=jitter);
            (time, format!("k{}", rng.random_range(0..keys)), rng.random_range(-1_000..1_000))
        })
        .collect()
}

fn write_rows(ws: &Workspace, rows: &[(i64, String, i64)]) -> std::path::PathBuf {
    let text: String =
        rows.iter().map(|(ts, key, v)| format!("{}\n", json!({ "ts": ts, "key": key, "v": v }))).collect();
    ws.write("rows.jsonl", text)
}

/// A pipeline: the rows file with event time, one window step, a file sink.
fn window_pipeline(ws: &Workspace, window: &str, batch_size: usize) -> String {
    format!(
        r#"
settings: {{ batch_size: {batch_size} }}
sources:
  rows:
    type: file
    path: {input}
    format: json
    schema: {{ ts: int64, key: string, v: int64 }}
    event_time: {{ column: ts, max_out_of_orderness: 3s }}
transforms:
  w: {window}
sinks:
  out: {{ type: file, inputs: [w], path: {output} }}
"#,
        input = ws.path("rows.jsonl").display(),
        output = ws.path("out.jsonl").display(),
    )
}

/// count, sum, min, max of `v` per window and key, as the reference computes them.
type Expected = BTreeMap<(i64, i64, String), (i64, i64, i64, i64)>;

fn add(expected: &mut Expected, bounds: (i64, i64), key: &str, v: i64) {
    let entry = expected.entry((bounds.0, bounds.1, key.to_string())).or_insert((0, 0, i64::MAX, i64::MIN));
    entry.0 += 1;
    entry.1 += v;
    entry.2 = entry.2.min(v);
    entry.3 = entry.3.max(v);
}

fn reference(kind: &str, rows: &[(i64, String, i64)]) -> Expected {
    let mut expected = Expected::new();
    match kind {
        "tumble" => rows.iter().for_each(|(t, k, v)| {
            let start = t - t.rem_euclid(10_000);
            add(&mut expected, (start, start + 10_000), k, *v);
        }),
        "hop" => rows.iter().for_each(|(t, k, v)| {
            let mut start = t - t.rem_euclid(5_000);
            while start > t - 10_000 {
                add(&mut expected, (start, start + 10_000), k, *v);
                start -= 5_000;
            }
        }),
        "cumulate" => rows.iter().for_each(|(t, k, v)| {
            let start = t - t.rem_euclid(20_000);
            let mut end = start + (t - start) / 5_000 * 5_000 + 5_000;
            while end <= start + 20_000 {
                add(&mut expected, (start, end), k, *v);
                end += 5_000;
            }
        }),
        "session" => {
            let mut by_key: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
            for (t, k, v) in rows {
                by_key.entry(k).or_default().push((*t, *v));
            }
            for (key, mut rows) in by_key {
                rows.sort_unstable();
                let mut session: Vec<(i64, i64)> = Vec::new();
                let flush = |session: &mut Vec<(i64, i64)>, expected: &mut Expected| {
                    if let (Some(first), Some(last)) = (session.first(), session.last()) {
                        let bounds = (first.0, last.0 + 4_000);
                        session.iter().for_each(|(_, v)| add(expected, bounds, key, *v));
                    }
                    session.clear();
                };
                for (t, v) in rows {
                    if session.last().is_some_and(|(last, _)| t >= last + 4_000) {
                        flush(&mut session, &mut expected);
                    }
                    session.push((t, v));
                }
                flush(&mut session, &mut expected);
            }
        }
        other => panic!("{other}"),
    }
    expected
}

fn actual(output: &str) -> Expected {
    json_lines(output)
        .into_iter()
        .map(|row| {
            let int = |name: &str| row[name].as_i64().unwrap_or_else(|| panic!("{name} in {row}"));
            (
                (int("window_start"), int("window_end"), row["key"].as_str().unwrap().to_string()),
                (int("n"), int("total"), int("lo"), int("hi")),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_window_kind_matches_a_plain_evaluation_on_out_of_order_input() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let rows = out_of_order_rows(seed, 3_000, 40, 2_500);
    let aggregates = r#"{ n: "count(*)", total: "sum(v)", lo: "min(v)", hi: "max(v)" }"#;
    for (kind, windows) in [
        ("tumble", "tumble: 10s"),
        ("hop", "hop: { size: 10s, slide: 5s }"),
        ("cumulate", "cumulate: { step: 5s, max: 20s }"),
        ("session", "session: { gap: 4s }"),
    ] {
        for parallelism in [1, 2] {
            let ws = Workspace::new();
            write_rows(&ws, &rows);
            let window = format!(
                "{{ type: window, inputs: [rows], {windows}, group_by: [key], aggregates: {aggregates}, parallelism: {parallelism} }}"
            );
            let metrics =
                ws.run(&window_pipeline(&ws, &window, 64)).await.unwrap_or_else(|err| panic!("{kind}: {err}"));
            let got = actual(&ws.read("out.jsonl"));
            let want = reference(kind, &rows);
            assert_eq!(got.len(), json_lines(&ws.read("out.jsonl")).len(), "{kind}: one row per window and key");
            assert_eq!(got, want, "{kind} with {parallelism} subtasks (seed {seed})");
            assert_eq!(counters(&metrics, "w").late_events, 0, "{kind}: nothing is late within 3 s");
            assert_eq!(counters(&metrics, "w").state_bytes, 0, "{kind}: every window freed at the end");
        }
    }
}

#[tokio::test]
async fn empty_windows_emit_nothing_and_many_keys_spread_over_subtasks() {
    let ws = Workspace::new();
    // 20 000 keys in the first window, nothing for a minute, one key after.
    let mut rows: Vec<(i64, String, i64)> = (0..20_000).map(|i| (i / 4, format!("k{i}"), 1)).collect();
    rows.push((90_000, "late-comer".into(), 5));
    write_rows(&ws, &rows);
    let window = r#"{ type: window, inputs: [rows], tumble: 10s, group_by: [key], aggregates: { n: "count(*)", total: "sum(v)", lo: "min(v)", hi: "max(v)" }, parallelism: 2 }"#;
    ws.run(&window_pipeline(&ws, window, 1000)).await.unwrap();
    let got = actual(&ws.read("out.jsonl"));
    assert_eq!(got.len(), 20_001);
    let windows: std::collections::BTreeSet<(i64, i64)> = got.keys().map(|(s, e, _)| (*s, *e)).collect();
    assert_eq!(windows.into_iter().collect::<Vec<_>>(), vec![(0, 10_000), (90_000, 100_000)], "no empty windows");
}

#[tokio::test]
async fn late_rows_go_to_the_late_output_or_update_the_window_within_allowed_lateness() {
    let ws = Workspace::new();
    let rows = vec![
        (1_000, "a".to_string(), 1),
        (5_000, "a".to_string(), 2),
        (15_000, "a".to_string(), 3), // watermark 11 999: [0, 10 s) fires with 1 + 2
        (9_000, "a".to_string(), 4),  // late: its window fired
        (30_000, "a".to_string(), 5), // watermark 26 999: [10 s, 20 s) fires
        (12_000, "a".to_string(), 6), // late for [10 s, 20 s) too
    ];
    write_rows(&ws, &rows);
    let late_sink = format!("  late: {{ type: file, inputs: [w.late], path: {} }}\n", ws.path("late.jsonl").display());
    let window = r#"{ type: window, inputs: [rows], tumble: 10s, group_by: [key], aggregates: { n: "count(*)", total: "sum(v)", lo: "min(v)", hi: "max(v)" } }"#;
    let pipeline = window_pipeline(&ws, window, 1) + &late_sink;
    let metrics = ws.run(&pipeline).await.unwrap();
    let got = actual(&ws.read("out.jsonl"));
    assert_eq!(got[&(0, 10_000, "a".into())], (2, 3, 1, 2), "the late row is not in the fired window");
    assert_eq!(got[&(10_000, 20_000, "a".into())], (1, 3, 3, 3));
    let late = json_lines(&ws.read("late.jsonl"));
    assert_eq!(late, vec![json!({ "ts": 9_000, "key": "a", "v": 4 }), json!({ "ts": 12_000, "key": "a", "v": 6 })]);
    assert_eq!(counters(&metrics, "w").late_events, 0, "late rows with a `.late` reader are not dropped");

    // Without a reader they are counted; with allowed lateness the first one updates its window.
    let ws = Workspace::new();
    write_rows(&ws, &rows);
    let window = r#"{ type: window, inputs: [rows], tumble: 10s, allowed_lateness: 5s, group_by: [key], aggregates: { n: "count(*)", total: "sum(v)", lo: "min(v)", hi: "max(v)" } }"#;
    let metrics = ws.run(&window_pipeline(&ws, window, 1)).await.unwrap();
    let fired: Vec<Value> = json_lines(&ws.read("out.jsonl"));
    let first_window: Vec<i64> =
        fired.iter().filter(|row| row["window_start"] == 0).map(|row| row["n"].as_i64().unwrap()).collect();
    assert_eq!(first_window, vec![2, 3], "fired at the watermark, then again with the late row: {fired:?}");
    // 12 000 arrives at watermark 26 999: [10 s, 20 s) closed at 19 999 + 5 000.
    assert_eq!(counters(&metrics, "w").late_events, 1);
}

#[tokio::test]
async fn every_aggregate_over_a_tumbling_window_matches_the_golden_file() {
    let ws = Workspace::new();
    let rows: Vec<(i64, String, i64)> = [
        (100, "a", 5),
        (200, "b", 7),
        (300, "a", 5),
        (2_500, "a", -3),
        (1_900, "b", 1),
        (4_000, "a", 9),
        (3_100, "b", 7),
        (6_000, "a", 2),
        (12_000, "b", 4),
    ]
    .into_iter()
    .map(|(t, k, v)| (t, k.to_string(), v))
    .collect();
    write_rows(&ws, &rows);
    let window = r#"{ type: window, inputs: [rows], tumble: 5s, group_by: [key], aggregates: { n: "count(*)", distinct_v: "count_distinct(v)", total: "sum(v)", lo: "min(v)", hi: "max(v)", mean: "avg(v)", first_v: "first(v)", last_v: "last(v)", positive: "count(*) FILTER (WHERE v > 0)" } }"#;
    ws.run(&window_pipeline(&ws, window, 2)).await.unwrap();
    assert_golden_unordered("window_tumble_aggregates.jsonl", &ws.read("out.jsonl"));
}

#[tokio::test]
async fn top_n_keeps_the_highest_rows_of_each_window_with_ties() {
    let ws = Workspace::new();
    let rows: Vec<(i64, String, i64)> =
        [(100, "a", 5), (200, "b", 9), (300, "c", 9), (4_000, "d", 1), (6_000, "e", 3), (7_000, "f", 2)]
            .into_iter()
            .map(|(t, k, v)| (t, k.to_string(), v))
            .collect();
    write_rows(&ws, &rows);
    let top = r#"{ type: top_n, inputs: [rows], tumble: 5s, order_by: [v DESC], limit: 1 }"#;
    ws.run(&window_pipeline(&ws, top, 2)).await.unwrap();
    let mut got: Vec<(i64, String)> = json_lines(&ws.read("out.jsonl"))
        .into_iter()
        .map(|row| (row["window_start"].as_i64().unwrap(), row["key"].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(0, "b".into()), (0, "c".into()), (5_000, "e".into())]);
}

#[tokio::test]
async fn an_idle_source_stops_holding_back_the_windows_of_a_busy_one() {
    // A free port for the (silent) HTTP source.
    let port = crate::support::free_port();
    for idle_timeout in [Some("300ms"), None] {
        let ws = Workspace::new();
        let idle = idle_timeout.map_or(String::new(), |timeout| format!(", idle_timeout: {timeout}"));
        let pipeline = format!(
            r#"
sources:
  bids:
    type: nexmark
    kind: bid
    throttle: true
    rate: 2000
    event_time: {{ column: dateTime }}
  quiet:
    type: http
    listen: 127.0.0.1:{port}
    format: json
    schema: {{ auction: int64, dateTime: timestamp }}
    event_time: {{ column: dateTime{idle} }}
transforms:
  picked: {{ type: select, inputs: [bids], columns: [auction, dateTime] }}
  w: {{ type: window, inputs: [picked, quiet], tumble: 500ms, aggregates: {{ n: "count(*)" }} }}
sinks:
  out: {{ type: file, inputs: [w], path: {output} }}
"#,
            output = ws.path("out.jsonl").display()
        );
        let running = ws.start(&pipeline);
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let fired_while_running = ws.rows("out.jsonl").len();
        running.stop().await.unwrap();
        match idle_timeout {
            Some(_) => {
                assert!(fired_while_running >= 2, "windows fire while the quiet source is idle: {fired_while_running}")
            }
            None => assert_eq!(fired_while_running, 0, "without idleness the quiet source holds every window back"),
        }
        assert!(!ws.read("out.jsonl").is_empty(), "stopping fires what is open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_aggregates_in_a_window_match_native_percentile_and_distinct_count() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let ws = Workspace::new();
    let rows = out_of_order_rows(seed, 5_000, 6, 1_000);
    write_rows(&ws, &rows);
    let sketches = crate::support::repo().join("plugins/target/wasm32-wasip2/release/sketches.wasm");
    assert!(sketches.exists(), "{} is missing: run ./tests/run.sh, which builds the plugins", sketches.display());
    let window = r#"{ type: window, inputs: [rows], hop: { size: 20s, slide: 10s }, group_by: [key], parallelism: 2, aggregates: {
        p90: "percentile(v, 0.9)", native_p90: "percentile_cont(v, 0.9)",
        distinct: "approx_distinct_hll(v)", native_distinct: "count(DISTINCT v)" } }"#;
    let pipeline =
        format!("plugins:\n  sketches: {{ path: {} }}\n{}", sketches.display(), window_pipeline(&ws, window, 100));
    ws.run(&pipeline).await.unwrap();
    let output = json_lines(&ws.read("out.jsonl"));
    assert!(output.len() > 20, "{} windows and keys", output.len());
    for row in &output {
        // DataFusion quantizes the interpolation weight to 1e-6 (of a gap of at most 2000 here).
        let (wasm, native) = (row["p90"].as_f64().unwrap(), row["native_p90"].as_f64().unwrap());
        assert!((wasm - native).abs() < 3e-3, "percentile {wasm} vs {native} in {row} (seed {seed})");
        let (estimate, exact) = (row["distinct"].as_i64().unwrap(), row["native_distinct"].as_i64().unwrap());
        // Two values can share one of the 4096 registers: small counts may be off by one or two.
        let error = (estimate - exact).abs() as f64;
        assert!(
            error <= (0.06 * exact as f64).max(2.0),
            "HyperLogLog {estimate} vs {exact} distinct in {row} (seed {seed})"
        );
    }
}

#[tokio::test]
async fn a_keyed_aggregate_emits_running_totals_after_each_batch() {
    let ws = Workspace::new();
    let rows: Vec<(i64, String, i64)> = [(1, "a", 1), (2, "b", 10), (3, "a", 2), (4, "a", 3), (5, "b", 20)]
        .into_iter()
        .map(|(t, k, v)| (t, k.to_string(), v))
        .collect();
    write_rows(&ws, &rows);
    let totals = r#"{ type: aggregate, inputs: [rows], group_by: [key], aggregates: { n: "count(*)", total: "sum(v)" }, parallelism: 2 }"#;
    ws.run(&window_pipeline(&ws, totals, 2)).await.unwrap();
    let updates: Vec<(String, i64, i64)> = json_lines(&ws.read("out.jsonl"))
        .into_iter()
        .map(|row| {
            (row["key"].as_str().unwrap().to_string(), row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap())
        })
        .collect();
    // Per key, the updates come in order and end with the totals.
    let of = |key: &str| updates.iter().filter(|(k, _, _)| k == key).map(|(_, n, t)| (*n, *t)).collect::<Vec<_>>();
    // Batches of 2 rows: [a1 b10] [a2 a3] [b20].
    assert_eq!(of("a"), vec![(1, 1), (3, 6)]);
    assert_eq!(of("b"), vec![(1, 10), (2, 30)]);
}

#[tokio::test]
async fn window_kinds_on_a_fixed_input_match_their_golden_files() {
    // Seed 8: the same out-of-order rows every run; each output is also checked against the
    // plain evaluation, so a blessed golden file cannot hide a wrong result.
    let rows = out_of_order_rows(8, 300, 3, 2_500);
    let aggregates = r#"{ n: "count(*)", total: "sum(v)", lo: "min(v)", hi: "max(v)" }"#;
    for (kind, windows) in [
        ("tumble", "tumble: 10s"),
        ("hop", "hop: { size: 10s, slide: 5s }"),
        ("cumulate", "cumulate: { step: 5s, max: 20s }"),
        ("session", "session: { gap: 4s }"),
    ] {
        let ws = Workspace::new();
        write_rows(&ws, &rows);
        let window =
            format!("{{ type: window, inputs: [rows], {windows}, group_by: [key], aggregates: {aggregates} }}");
        ws.run(&window_pipeline(&ws, &window, 16)).await.unwrap();
        let output = ws.read("out.jsonl");
        assert_eq!(actual(&output), reference(kind, &rows), "{kind}");
        assert_golden_unordered(&format!("window_{kind}.jsonl"), &output);
    }
}

#[tokio::test]
async fn processing_time_windows_count_every_row_by_arrival() {
    let ws = Workspace::new();
    let pipeline = format!(
        r#"
sources:
  rows: {{ type: generator, count: 5000, columns: {{ id: {{ sequence: {{ start: 0, step: 1 }} }} }} }}
transforms:
  w: {{ type: window, inputs: [rows], processing_time: true, tumble: 200ms, aggregates: {{ n: "count(*)" }} }}
sinks:
  out: {{ type: file, inputs: [w], path: {} }}
"#,
        ws.path("out.jsonl").display()
    );
    let started = chrono::Utc::now().timestamp_millis();
    ws.run(&pipeline).await.unwrap();
    let ended = chrono::Utc::now().timestamp_millis();
    let windows = json_lines(&ws.read("out.jsonl"));
    let counted: i64 = windows.iter().map(|w| w["n"].as_i64().unwrap()).sum();
    assert_eq!(counted, 5000, "{windows:?}");
    for window in &windows {
        let start =
            chrono::DateTime::parse_from_rfc3339(window["window_start"].as_str().unwrap()).unwrap().timestamp_millis();
        assert!(start > started - 200 && start <= ended, "window at {start}, job ran {started}..{ended}");
    }
}

#[tokio::test]
async fn early_firing_reports_open_windows_while_they_fill() {
    let ws = Workspace::new();
    let pipeline = format!(
        r#"
sources:
  bids: {{ type: nexmark, kind: bid, throttle: true, rate: 2000, event_time: {{ column: dateTime }} }}
transforms:
  w: {{ type: window, inputs: [bids], tumble: 1h, early_fire: 200ms, aggregates: {{ n: "count(*)" }} }}
sinks:
  out: {{ type: file, inputs: [w], path: {} }}
"#,
        ws.path("out.jsonl").display()
    );
    let running = ws.start(&pipeline);
    crate::support::eventually(10, "two early results", async || ws.rows("out.jsonl").len() >= 2).await;
    let early: Vec<i64> = ws.rows("out.jsonl").iter().map(|row| row["n"].as_i64().unwrap()).collect();
    assert!(early.windows(2).all(|pair| pair[0] <= pair[1]), "partial counts only grow: {early:?}");
    running.stop().await.unwrap();
    let all = json_lines(&ws.read("out.jsonl"));
    let last = all.last().unwrap()["n"].as_i64().unwrap();
    assert!(last >= *early.last().unwrap(), "the final result counts at least what the early ones did");
}

/// Loads a pipeline over `bids` (with or without event time) and one step; returns the error.
fn refused(event_time: bool, step: &str) -> String {
    let ws = Workspace::new();
    let event_time = if event_time { ", event_time: { column: dateTime, max_out_of_orderness: 4s }" } else { "" };
    let pipeline = format!(
        "sources:\n  bids: {{ type: nexmark, kind: bid, events: 100{event_time} }}\ntransforms:\n  w: {step}\nsinks:\n  out: {{ type: blackhole, inputs: [w] }}\n"
    );
    let err = ws.load(&pipeline).expect_err("the pipeline must be refused").to_string();
    assert!(err.contains("pipeline.yaml:") && err.contains("`transforms.w`"), "names file and component: {err}");
    err
}

#[test]
fn window_mistakes_are_refused_with_the_reason() {
    let cases = [
        (false, r#"{ type: window, inputs: [bids], tumble: 10s, aggregates: { n: "count(*)" } }"#, "no event time"),
        (
            true,
            r#"{ type: window, inputs: [bids], aggregates: { n: "count(*)" } }"#,
            "`tumble`, `hop`, `session` or `cumulate`",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, hop: { size: 10s, slide: 2s }, aggregates: { n: "count(*)" } }"#,
            "exclude each other",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, group_by: [auctoin], aggregates: { n: "count(*)" } }"#,
            "`auctoin` is not in the input",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, aggregates: { n: "price + 1" } }"#,
            "not an aggregate call",
        ),
        (true, r#"{ type: window, inputs: [bids], tumble: 10s, aggregates: { n: "max(prize)" } }"#, "prize"),
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, aggregates: { n: "count(*)" }, parallelism: 2 }"#,
            "parallelism must be 1",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], hop: { size: 2s, slide: 10s }, aggregates: { n: "count(*)" } }"#,
            "longer than `hop.size`",
        ),
        // Issue 22: keyed state lives in 128 key groups, one subtask at least each.
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, group_by: [auction], aggregates: { n: "count(*)" }, parallelism: 129 }"#,
            "at most 128 subtasks",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], session: { gap: 5s }, allowed_lateness: 1s, aggregates: { n: "count(*)" } }"#,
            "not supported for session windows",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, time_column: channel, aggregates: { n: "count(*)" } }"#,
            "must be Int64",
        ),
        (true, r#"{ type: top_n, inputs: [bids], order_by: [price DESC], limit: 1 }"#, "say which windows"),
        (
            true,
            r#"{ type: top_n, inputs: [bids], tumble: 10s, order_by: [price DOWN], limit: 1 }"#,
            "expected ASC or DESC",
        ),
        (
            true,
            r#"{ type: filter, inputs: [bids.late], where: "price > 0" }"#,
            "only window and top_n steps have a `.late` output",
        ),
        // Issue 19 (10a): a replay re-fired a written window with only the replayed rows.
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 10s, aggregates: { n: "count(*)" }, at_least_once: true }"#,
            "`at_least_once` was withdrawn",
        ),
        (
            true,
            r#"{ type: top_n, inputs: [bids], tumble: 10s, order_by: [price DESC], limit: 1, at_least_once: true }"#,
            "`at_least_once` was withdrawn",
        ),
        // Issue 19 (15): zero lengths were accepted (a zero slide ran at 2.6 GB in 4 s).
        (
            true,
            r#"{ type: window, inputs: [bids], tumble: 0s, aggregates: { n: "count(*)" } }"#,
            "`tumble` must be at least 1ms",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], hop: { size: 10s, slide: 0ms }, aggregates: { n: "count(*)" } }"#,
            "`hop.slide` must be at least 1ms",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], session: { gap: 0s }, aggregates: { n: "count(*)" } }"#,
            "`session.gap` must be at least 1ms",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], cumulate: { step: 0s, max: 1h }, aggregates: { n: "count(*)" } }"#,
            "`cumulate.step` must be at least 1ms",
        ),
        (
            true,
            r#"{ type: window, inputs: [bids], hop: { size: 1h, slide: 1ms }, aggregates: { n: "count(*)" } }"#,
            "at most 10000 are allowed",
        ),
    ];
    for (event_time, step, wanted) in cases {
        let err = refused(event_time, step);
        assert!(err.contains(wanted), "{step}: expected {wanted:?} in: {err}");
    }
}

/// Issue 19 (10c): Ctrl-C on an unbounded source fired the open windows as if they were final
/// (and rows delivered again after a restart were then dropped as late). A stop publishes only
/// complete windows; `drain_on_stop` (`weir run --drain`) fires the open ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_job_publishes_no_partial_windows_unless_it_drains() {
    for drain in [false, true] {
        let ws = Workspace::new();
        let running = ws.start(&format!(
            r#"
sources:
  ticks:
    type: generator
    rate: 4000
    columns: {{ t: {{ timestamp: {{ start: "2024-01-01T00:00:00Z", step: 1ms }} }} }}
    event_time: {{ column: t }}
transforms:
  w: {{ type: window, inputs: [ticks], tumble: 1s, aggregates: {{ n: "count(*)" }} }}
sinks:
  out: {{ type: file, inputs: [w], path: out.jsonl }}
settings: {{ batch_size: 200, drain_on_stop: {drain} }}
"#
        ));
        crate::support::eventually(20, "two complete windows", async || ws.rows("out.jsonl").len() >= 2).await;
        let metrics = running.stop().await.unwrap();
        let generated = counters(&metrics, "ticks").sent_events as i64;
        let counts: Vec<i64> = json_lines(&ws.read("out.jsonl")).iter().map(|row| row["n"].as_i64().unwrap()).collect();
        let partial = counts.iter().filter(|&&n| n != 1000).count();
        if drain {
            assert_eq!(counts.iter().sum::<i64>(), generated, "draining fires the open window too: {counts:?}");
            assert!(partial <= 1, "{counts:?}");
        } else {
            assert_eq!(partial, 0, "only complete windows of 1000 rows: {counts:?}");
        }
    }
}
