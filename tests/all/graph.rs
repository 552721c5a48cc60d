//! End-to-end pipelines over the built-in generators: golden outputs, fan-out, fan-in, parallelism.

use crate::support::{Workspace, assert_golden_unordered, counters, json_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_filter_select_matches_golden_output() {
    let ws = Workspace::new();
    let metrics = ws
        .run(
            r#"
sources:
  bids: { type: nexmark, kind: bid, events: 2000 }
transforms:
  big: { type: filter, inputs: [bids], where: "price > 1000000" }
  eur: { type: select, inputs: [big], columns: ["auction", "price * 0.908 AS price_eur", "upper(channel) AS channel", "dateTime"] }
sinks:
  out: { type: file, inputs: [eur], path: out/eur.jsonl, format: json }
"#,
        )
        .await
        .unwrap();
    let output = ws.read("out/eur.jsonl");
    assert_eq!(counters(&metrics, "bids").sent_events, 1_840, "46 of every 50 events are bids");
    assert_eq!(counters(&metrics, "out").sent_events as usize, output.lines().count());
    for row in json_lines(&output) {
        assert!(row["price_eur"].as_f64().unwrap() > 1_000_000.0 * 0.908);
        assert_eq!(row["channel"].as_str().unwrap(), row["channel"].as_str().unwrap().to_uppercase());
    }
    assert_golden_unordered("nexmark_big_bids_eur.jsonl", &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_feeds_every_sink_and_fan_in_unions_inputs() {
    let ws = Workspace::new();
    let metrics = ws
        .run(
            r#"
sources:
  a: { type: generator, count: 30000, columns: { id: { sequence: { start: 0 } }, origin: { choice: [a] } } }
  b: { type: generator, count: 20000, columns: { id: { sequence: { start: 1000000 } }, origin: { choice: [b] } } }
transforms:
  both: { type: union, inputs: [a, b], parallelism: 3 }
  even: { type: filter, inputs: [both], where: "id % 2 = 0" }
sinks:
  all:   { type: file, inputs: [both], path: all.csv, format: csv }
  evens: { type: file, inputs: [even], path: evens.jsonl }
  count: { type: blackhole, inputs: [even, a] }
settings: { batch_size: 1000, channel_capacity: 2 }
"#,
        )
        .await
        .unwrap();
    let all = ws.read("all.csv");
    assert_eq!(all.lines().count(), 1 + 50_000, "header plus every row of both inputs");
    let mut ids: Vec<i64> = all.lines().skip(1).map(|line| line.split(',').next().unwrap().parse().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50_000, "no row lost or duplicated");
    let evens = json_lines(&ws.read("evens.jsonl"));
    assert_eq!(evens.len(), 25_000);
    assert_eq!(counters(&metrics, "count").sent_events, 25_000 + 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_is_repeatable_per_seed_and_parallel_sequences_stay_global() {
    let yaml = |seed: u64| {
        format!(
            r#"
sources:
  g: {{ type: generator, count: 5000, seed: {seed}, parallelism: 2, columns: {{ id: {{ sequence: {{ start: 1 }} }}, v: {{ random: {{ min: 0, max: 1000000 }} }}, t: {{ timestamp: {{ start: "2024-01-01T00:00:00Z", step: 1s }} }} }} }}
sinks:
  out: {{ type: file, inputs: [g], path: out.jsonl }}
"#
        )
    };
    let seed = 7;
    eprintln!("seed = {seed}");
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let ws = Workspace::new();
        ws.run(&yaml(seed)).await.unwrap();
        let mut rows: Vec<String> = ws.read("out.jsonl").lines().map(str::to_owned).collect();
        rows.sort();
        outputs.push(rows);
    }
    assert_eq!(outputs[0], outputs[1], "same seed, same rows");
    let mut ids: Vec<i64> = outputs[0]
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=5000).collect::<Vec<_>>());
    let row: serde_json::Value = serde_json::from_str(&outputs[0][0]).unwrap();
    assert!(row["t"].as_str().unwrap().starts_with("2024-01-01T"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_rate_limit_paces_output() {
    let ws = Workspace::new();
    let started = std::time::Instant::now();
    ws.run("sources:\n  g: { type: generator, count: 300, rate: 1000, columns: { id: { sequence: {} } } }\nsinks:\n  out: { type: blackhole, inputs: [g] }\n")
        .await
        .unwrap();
    // 300 rows at 1000/s cannot finish in much less than 0.3 s (the last batch is due at ~0.2 s).
    assert!(started.elapsed() >= std::time::Duration::from_millis(190), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nexmark_subtasks_split_the_same_events() {
    let mut outputs = Vec::new();
    for parallelism in [1, 3] {
        let ws = Workspace::new();
        ws.run(&format!(
            "sources:\n  a: {{ type: nexmark, kind: auction, events: 5000, parallelism: {parallelism} }}\nsinks:\n  out: {{ type: file, inputs: [a], path: out.jsonl }}\n"
        ))
        .await
        .unwrap();
        let mut lines: Vec<String> = ws.read("out.jsonl").lines().map(str::to_owned).collect();
        lines.sort();
        outputs.push(lines);
    }
    assert_eq!(outputs[0].len(), 300, "3 auctions per 50 events");
    assert_eq!(outputs[0], outputs[1], "parallel subtasks generate exactly the same auctions");
    let ids: std::collections::BTreeSet<i64> = outputs[0]
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1000..1300).collect(), "auction ids are dense from 1000");
}
