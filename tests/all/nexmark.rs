//! The Nexmark queries of `examples/nexmark/` through `weir bench nexmark`: every query's output,
//! from the generator in memory and from a JSON-lines file, against a plain-Rust evaluation of the
//! query's definition (the Flink SQL in `bench/nexmark/flink/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{Workspace, json_lines, repo, weir};

const QUERIES: [&str; 9] = ["q0", "q1", "q1-wasm", "q2", "q5", "q7", "q14", "q21", "q22"];

/// Event time of a bid in ms (the JSON holds it as text).
fn millis(bid: &Value) -> i64 {
    let text = bid["dateTime"].as_str().unwrap().replace(' ', "T");
    let text = text.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|err| panic!("{text}: {err}"))
        .and_utc()
        .timestamp_millis()
}

/// Nexmark q5: per hopping window (10 s every 2 s), the auctions with the most bids.
fn hot_items(bids: &[Value]) -> Vec<Value> {
    let mut windows: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for bid in bids {
        let time = millis(bid);
        let mut start = time - time.rem_euclid(2_000);
        while start > time - 10_000 {
            *windows.entry(start).or_default().entry(bid["auction"].as_i64().unwrap()).or_default() += 1;
            start -= 2_000;
        }
    }
    let mut rows = Vec::new();
    for counts in windows.values() {
        let top = counts.values().max().unwrap();
        rows.extend(
            counts.iter().filter(|(_, n)| *n == top).map(|(auction, n)| json!({ "auction": auction, "num": n })),
        );
    }
    rows
}

/// Nexmark q7: per tumbling 10 s window, the bids with the highest price.
fn highest_bids(bids: &[Value]) -> Vec<Value> {
    let mut windows: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for bid in bids {
        let time = millis(bid);
        windows.entry(time - time.rem_euclid(10_000)).or_default().push(bid);
    }
    let mut rows = Vec::new();
    for window in windows.values() {
        let top = window.iter().map(|b| b["price"].as_i64().unwrap()).max().unwrap();
        rows.extend(window.iter().filter(|b| b["price"].as_i64() == Some(top)).map(|b| {
            json!({ "auction": b["auction"], "price": b["price"], "bidder": b["bidder"], "dateTime": b["dateTime"], "extra": b["extra"] })
        }));
    }
    rows
}

/// `weir bench nexmark ... --runs 1 --json --output-dir <out>`: the report lines by query.
fn bench(args: &[&str], out: &Path) -> BTreeMap<String, Value> {
    let output = weir()
        .args(["bench", "nexmark", "--runs", "1", "--json", "--queries"])
        .arg(repo().join("examples/nexmark"))
        .args(args)
        .arg("--output-dir")
        .arg(out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = json_lines(&String::from_utf8(output.stdout).unwrap());
    report.into_iter().map(|line| (line["query"].as_str().unwrap().to_owned(), line)).collect()
}

fn sorted_lines(path: PathBuf) -> Vec<String> {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort_unstable();
    lines
}

/// The value of `channel_id` in a URL's query string.
fn channel_id_param(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix("channel_id="))
}

/// What each query must output for these bids, by its definition.
fn expected(query: &str, bids: &[Value]) -> Vec<Value> {
    let int = |bid: &Value, column: &str| bid[column].as_i64().unwrap();
    let text = |bid: &Value, column: &str| bid[column].as_str().unwrap().to_owned();
    let euros = |bid: &Value| 0.908 * int(bid, "price") as f64;
    let q1 = |bid: &Value| json!({ "auction": bid["auction"], "bidder": bid["bidder"], "price": euros(bid), "dateTime": bid["dateTime"], "extra": bid["extra"] });
    match query {
        "q0" => bids
            .iter()
            .map(|b| {
                json!({ "auction": b["auction"], "bidder": b["bidder"], "price": b["price"], "dateTime": b["dateTime"], "extra": b["extra"] })
            })
            .collect(),
        "q1" | "q1-wasm" => bids.iter().map(q1).collect(),
        "q5" => hot_items(bids),
        "q7" => highest_bids(bids),
        "q2" => bids
            .iter()
            .filter(|b| int(b, "auction") % 123 == 0)
            .map(|b| json!({ "auction": b["auction"], "price": b["price"] }))
            .collect(),
        "q14" => bids
            .iter()
            .filter(|b| euros(b) > 1_000_000.0 && euros(b) < 50_000_000.0)
            .map(|b| {
                let hour: u32 = text(b, "dateTime")[11..13].parse().unwrap();
                let time_type = match hour {
                    8..=18 => "dayTime",
                    0..=6 | 20.. => "nightTime",
                    _ => "otherTime",
                };
                let mut row = q1(b);
                row["bidTimeType"] = json!(time_type);
                row["c_counts"] = json!(text(b, "extra").matches('c').count());
                row
            })
            .collect(),
        "q21" => bids
            .iter()
            .filter_map(|b| {
                let url = text(b, "url");
                let id = match text(b, "channel").to_lowercase().as_str() {
                    "apple" => "0".to_owned(),
                    "google" => "1".to_owned(),
                    "facebook" => "2".to_owned(),
                    "baidu" => "3".to_owned(),
                    _ => channel_id_param(&url)?.to_owned(),
                };
                Some(json!({ "auction": b["auction"], "bidder": b["bidder"], "price": b["price"], "channel": b["channel"], "channel_id": id }))
            })
            .collect(),
        "q22" => bids
            .iter()
            .map(|b| {
                // Flink's SPLIT_INDEX(url, '/', n): the n-th piece of the URL split at '/'.
                let url = text(b, "url");
                let pieces: Vec<&str> = url.split('/').collect();
                json!({ "auction": b["auction"], "bidder": b["bidder"], "price": b["price"], "channel": b["channel"],
                        "dir1": pieces[3], "dir2": pieces[4], "dir3": pieces[5] })
            })
            .collect(),
        other => panic!("no definition for {other}"),
    }
}

/// Rows as sorted canonical strings; numbers with a fraction to 6 decimals.
fn canonical(rows: &[Value]) -> Vec<String> {
    let mut lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let columns: BTreeMap<&String, String> = row
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, value)| match value.as_f64() {
                    Some(number) if value.is_f64() => (name, format!("{number:.6}")),
                    _ => (name, value.to_string()),
                })
                .collect();
            format!("{columns:?}")
        })
        .collect();
    lines.sort_unstable();
    lines
}

#[test]
fn example_queries_compute_their_definitions_in_memory_and_from_a_file() {
    let ws = Workspace::new();
    // The generator's bids written as JSON lines: the same bids the in-memory runs generate;
    // 25 s of event time, so q5 and q7 see many windows.
    let bids_file = ws.path("bids.jsonl");
    let generate = ws.write(
        "generate.yaml",
        format!(
            "sources:\n  bids: {{ type: nexmark, kind: bid, events: 250000 }}\nsinks:\n  out: {{ type: file, inputs: [bids], path: {} }}\n",
            bids_file.display()
        ),
    );
    let generated = weir().args(["run", "--quiet"]).arg(&generate).output().unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let bids = json_lines(&std::fs::read_to_string(&bids_file).unwrap());
    assert_eq!(bids.len(), 230_000, "5000 epochs of 46 bids");

    let from_file = bench(&["--mode", "file", "--input", bids_file.to_str().unwrap()], &ws.path("file"));
    let in_memory = bench(&["--mode", "memory", "--events", "230000"], &ws.path("memory"));
    assert_eq!(from_file.keys().collect::<Vec<_>>().len(), QUERIES.len(), "{from_file:?}");

    for query in QUERIES {
        let (file_report, memory_report) = (&from_file[query], &in_memory[query]);
        for report in [file_report, memory_report] {
            assert_eq!(report["events"], 230_000, "{query}: {report}");
            assert!(report["cpu_seconds"].as_f64().unwrap() > 0.0 && report["peak_rss_bytes"].as_u64().unwrap() > 0);
        }
        assert!(file_report["mb_per_second"].as_f64().unwrap() > 0.0, "{file_report}");
        assert!(memory_report["mb_per_second"].is_null(), "{memory_report}");

        let file_output = sorted_lines(ws.path("file").join(format!("{query}.jsonl")));
        assert_eq!(file_report["events_out"], file_output.len(), "{query}");
        assert_eq!(
            file_output,
            sorted_lines(ws.path("memory").join(format!("{query}.jsonl"))),
            "{query}: the generator in memory and its bids read from the file give the same rows"
        );
        let actual: Vec<Value> = file_output.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
        let wanted = expected(query, &bids);
        assert!(!wanted.is_empty(), "{query}: the input exercises the query");
        assert_eq!(canonical(&actual), canonical(&wanted), "{query} differs from its definition");
    }
    // q21 takes both branches: named partner channels and ids from the URL.
    let q21 = expected("q21", &bids);
    let partner = q21.iter().filter(|row| row["channel_id"].as_str().unwrap().len() == 1).count();
    assert!(partner > 0 && partner < q21.len(), "{partner} of {}", q21.len());
}

#[test]
fn bench_nexmark_names_the_query_it_cannot_find_or_rewrite() {
    let output = weir()
        .args(["bench", "nexmark", "--runs", "1", "--only", "q99", "--queries"])
        .arg(repo().join("examples/nexmark"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no query `q99`") && stderr.contains("q1-wasm"), "{stderr}");

    let ws = Workspace::new();
    ws.write(
        "queries/q5.yaml",
        "sources:\n  people: { type: nexmark, kind: person, events: 100 }\nsinks:\n  out: { type: blackhole, inputs: [people] }\n",
    );
    let input = ws.write("bids.jsonl", "");
    let output = weir()
        .args(["bench", "nexmark", "--runs", "1", "--mode", "file", "--queries"])
        .arg(ws.path("queries"))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("q5.yaml") && stderr.contains("source `people` generates person events"), "{stderr}");
}
