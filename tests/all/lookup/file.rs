//! A `file` dimension table: joins with no external service, and the pipeline checks of
//! `lookup_join` and `tables:`.

use crate::support::{Workspace, assert_golden_unordered, counters};

const DEVICES: &str = "id,site,name,floor\n1,berlin,boiler,1\n2,berlin,chiller,2\n3,austin,pump,\n";

/// Events: devices 1-3 exist, 4 does not, one event has no device.
const EVENTS: &str = r#"{"id": 1, "device": 1, "site": "berlin"}
{"id": 2, "device": 2, "site": "berlin"}
{"id": 3, "device": 3, "site": "austin"}
{"id": 4, "device": 4, "site": "austin"}
{"id": 5, "device": null, "site": "berlin"}
{"id": 6, "device": 1, "site": "berlin"}
{"id": 7, "device": 2, "site": "austin"}
"#;

fn pipeline(join: &str) -> String {
    format!(
        r#"
sources:
  events: {{ type: file, path: events.jsonl, schema: {{ id: int64, device: int32, site: string }} }}
tables:
  devices: {{ type: file, path: devices.csv, format: csv, key: [id] }}
  sited: {{ type: file, path: devices.csv, format: csv, key: [site, id], columns: {{ id: int64, site: string, name: string, floor: int32 }} }}
transforms:
  joined: {{ type: lookup_join, inputs: [events], {join} }}
sinks:
  out: {{ type: file, inputs: [joined], path: out.jsonl }}
"#
    )
}

fn workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("devices.csv", DEVICES);
    ws.write("events.jsonl", EVENTS);
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_join_keeps_unmatched_and_null_key_rows_with_nulls() {
    let ws = workspace();
    let metrics = ws
        .run(&pipeline("table: devices, on: { device: id }, kind: left, columns: [name, \"floor AS level\"]"))
        .await
        .unwrap();
    assert_golden_unordered("lookup_file_left.jsonl", &ws.read("out.jsonl"));
    assert_eq!(counters(&metrics, "joined").received_events, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_join_drops_rows_without_a_match() {
    let ws = workspace();
    ws.run(&pipeline("table: devices, on: { device: id }, columns: [name, floor]")).await.unwrap();
    let rows = super::sorted_rows(&ws);
    let ids: Vec<i64> = rows.iter().map(|row| row["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 6, 7], "device 4 and the NULL device have no match");
    assert_eq!(rows[0]["name"], "boiler");
    assert_eq!(rows[0]["floor"], 1);
    assert_eq!(rows[0]["site"], "berlin", "the stream's own site column stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_match_on_every_column() {
    let ws = workspace();
    ws.run(&pipeline("table: sited, on: { site: site, device: id }, kind: left, columns: [\"name AS device_name\"]"))
        .await
        .unwrap();
    let rows = super::sorted_rows(&ws);
    let names: Vec<Option<&str>> = rows.iter().map(|row| row["device_name"].as_str()).collect();
    // Event 7 is device 2 at austin: device 2 is in berlin, so no match.
    assert_eq!(names, [Some("boiler"), Some("chiller"), Some("pump"), None, None, Some("boiler"), None]);
}

fn load_error(join: &str) -> String {
    workspace().load(&pipeline(join)).expect_err("the pipeline is refused").to_string()
}

#[test]
fn joins_that_cannot_work_are_refused_with_the_reason() {
    let err = load_error("table: nope, on: { device: id }");
    assert!(err.contains("unknown table `nope`") && err.contains("devices, sited"), "{err}");
    let err = load_error("table: sited, on: { device: id }");
    assert!(err.contains("`site` is not joined"), "{err}");
    let err = load_error("table: devices, on: { site: id }");
    assert!(err.contains("`site` is Utf8 but key `id` is Int64"), "{err}");
    let err = load_error("table: devices, on: { device: name }");
    assert!(err.contains("`name` is not a key column"), "{err}");
    let err = load_error("table: devices, on: { device: id }, columns: [site]");
    assert!(err.contains("already has a column `site`"), "{err}");
    // The default (every non-key column) includes `site` too: the clash is reported, not hidden.
    let err = load_error("table: devices, on: { device: id }");
    assert!(err.contains("already has a column `site`"), "{err}");
    let err = load_error("table: devices, on: { device: id }, columns: [colour]");
    assert!(err.contains("no column `colour`"), "{err}");
    assert!(err.contains("pipeline.yaml:"), "errors name the file and line: {err}");
}

#[test]
fn table_declarations_are_checked() {
    let ws = workspace();
    let with_table = |table: &str| {
        format!(
            "sources:\n  events: {{ type: file, path: events.jsonl, schema: {{ id: int64, device: int64 }} }}\ntables:\n  devices: {table}\nsinks:\n  out: {{ type: blackhole, inputs: [events] }}\n"
        )
    };
    let err = ws
        .load(&with_table("{ type: file, path: devices.csv, format: csv, key: [id], cache: { mode: partial } }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tables.devices") && err.contains("only be `full`"), "{err}");
    let err =
        ws.load(&with_table("{ type: file, path: devices.csv, format: csv, key: [serial] }")).unwrap_err().to_string();
    assert!(err.contains("key column `serial` is not declared"), "{err}");
    let err = ws.load(&with_table("{ type: oracle, url: x }")).unwrap_err().to_string();
    assert!(err.contains("unknown table type `oracle`") && err.contains("postgres, mysql, redis, file"), "{err}");
    let err = ws
        .load(&with_table("{ type: postgres, url: \"postgres://u@h/d\", table: t, key: [id], columns: { id: int64 }, cache: { mode: full, max_rows: 3 } }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("options of `mode: partial`"), "{err}");
    let err = ws
        .load(&with_table("{ type: redis, url: \"redis://127.0.0.1\", key: \"dev:{id}{site}\", columns: { id: int64, site: string } }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("literal text between them"), "{err}");
}

#[test]
fn retry_is_refused_where_retrying_cannot_help() {
    let ws = workspace();
    let err = ws
        .load("sources:\n  events: { type: file, path: events.jsonl, schema: { id: int64 }, on_error: retry }\nsinks:\n  out: { type: blackhole, inputs: [events] }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`on_error: retry` is for lookup joins"), "{err}");
}

/// Issue 19 (21): several lookup counters were in the run summary but not in `/metrics`,
/// although DESIGN.md says the admin API exports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lookup_counter_of_the_summary_is_in_metrics() {
    let ws = workspace();
    let pipeline = ws.load(&pipeline("table: devices, on: { device: id }, kind: left, columns: [name]")).unwrap();
    let metrics = weir_engine::runner::metrics_for(&pipeline.graph);
    weir_engine::runner::run(&pipeline.graph, &metrics, Default::default()).await.unwrap();
    let context = weir_api::AdminContext::new(&pipeline, &metrics);
    let stop = tokio_util::sync::CancellationToken::new();
    let address = weir_api::serve("127.0.0.1:0".parse().unwrap(), None, context, stop.clone()).await.unwrap();
    let text = reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap();
    stop.cancel();
    for name in [
        "lookup_cache_hits_total{table=\"devices\"}",
        "lookup_cache_misses_total{table=\"devices\"}",
        "lookup_cache_evictions_total{table=\"devices\"}",
        "lookup_cache_expirations_total{table=\"devices\"}",
        "lookup_queries_total{table=\"devices\"}",
        "lookup_loads_total{table=\"devices\"}",
        "lookup_snapshot_rows{table=\"devices\"}",
        "lookup_rows_joined_total{table=\"devices\"} 5",
        "lookup_rows_unmatched_total{table=\"devices\"}",
        "lookup_errors_total{table=\"devices\"}",
        "lookup_query_seconds_count{table=\"devices\"}",
    ] {
        let lookup_lines: Vec<&str> = text.lines().filter(|line| line.starts_with("lookup_")).collect();
        assert!(text.contains(name), "/metrics lacks {name}:\n{}", lookup_lines.join("\n"));
    }
}
