//! Bad input never crashes the job and is never dropped silently: `fail`, `skip` and
//! `dead-letter` with malformed JSON, wrong types, invalid UTF-8, a truncated last line and an
//! empty file, for JSON and CSV.

use crate::support::{Workspace, counters, json_lines};

/// Five good lines and four bad ones (line numbers 2, 4, 6 and 9), the last one truncated.
fn messy_json() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"id\": 1, \"name\": \"a\"}\n");
    bytes.extend_from_slice(b"{\"id\": 2, \"name\": \n"); // malformed
    bytes.extend_from_slice(b"{\"id\": 3, \"name\": \"c\"}\n");
    bytes.extend_from_slice(b"{\"id\": \"four\", \"name\": \"d\"}\n"); // wrong type
    bytes.extend_from_slice(b"{\"id\": 5, \"name\": \"e\"}\n");
    bytes.extend_from_slice(b"{\"id\": 6, \"name\": \"\xff\xfe\"}\n"); // invalid UTF-8
    bytes.extend_from_slice(b"\n"); // blank lines are not records
    bytes.extend_from_slice(b"{\"id\": 7, \"name\": \"g\"}\n");
    bytes.extend_from_slice(b"{\"id\": 9, \"na"); // truncated last line
    bytes
}

fn pipeline(policy: &str) -> String {
    let dead_letter = if policy == "dead-letter" { ", dead_letter: rejects" } else { "" };
    format!(
        r#"
sources:
  rows: {{ type: file, path: in/*.jsonl, schema: {{ id: int64, name: string }}, on_error: {policy}{dead_letter} }}
sinks:
  good: {{ type: file, inputs: [rows], path: good.jsonl }}
  rejects: {{ type: file, path: rejects.jsonl, inputs: [] }}
"#
    )
}

fn ids(ws: &Workspace) -> Vec<i64> {
    json_lines(&ws.read("good.jsonl")).iter().map(|row| row["id"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_stops_with_file_line_and_reason() {
    let ws = Workspace::new();
    ws.write("in/a.jsonl", messy_json());
    let err = ws
        .run(&pipeline("fail").replace("  rejects: { type: file, path: rejects.jsonl, inputs: [] }\n", ""))
        .await
        .unwrap_err();
    assert!(
        err.contains("rows") && err.contains("a.jsonl:2 (byte 23)"),
        "names component, file, line and offset: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_counts_and_keeps_the_good_rows_in_order() {
    let ws = Workspace::new();
    ws.write("in/a.jsonl", messy_json());
    ws.write("in/b.jsonl", b""); // an empty file is fine
    let metrics = ws
        .run(&pipeline("skip").replace("  rejects: { type: file, path: rejects.jsonl, inputs: [] }\n", ""))
        .await
        .unwrap();
    assert_eq!(ids(&ws), vec![1, 3, 5, 7]);
    let rows = counters(&metrics, "rows");
    assert_eq!((rows.discarded_events, rows.errors, rows.sent_events), (4, 4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_keeps_original_bytes_reason_and_position() {
    let ws = Workspace::new();
    ws.write("in/a.jsonl", messy_json());
    let metrics = ws.run(&pipeline("dead-letter")).await.unwrap();
    assert_eq!(ids(&ws), vec![1, 3, 5, 7]);
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    let positions: Vec<&str> = rejects.iter().map(|row| row["position"].as_str().unwrap()).collect();
    assert_eq!(positions.len(), 4, "{rejects:?}");
    for (position, line) in positions.iter().zip([2, 4, 6, 9]) {
        assert!(position.contains(&format!("a.jsonl:{line} ")), "{position}");
    }
    assert!(rejects.iter().all(|row| row["component"] == "rows" && !row["error"].as_str().unwrap().is_empty()));
    // Binary columns are written as hex: the raw bytes survive exactly, invalid UTF-8 included.
    let raw_of_line_6 = hex(rejects[2]["raw"].as_str().unwrap());
    assert_eq!(raw_of_line_6, b"{\"id\": 6, \"name\": \"\xff\xfe\"}");
    assert_eq!(hex(rejects[3]["raw"].as_str().unwrap()), b"{\"id\": 9, \"na");
    assert!(
        rejects[1]["error"].as_str().unwrap().to_lowercase().contains("four")
            || rejects[1]["error"].as_str().unwrap().contains("Int64"),
        "{}",
        rejects[1]
    );
    assert_eq!(counters(&metrics, "rows").dead_lettered_events, 4);
    assert_eq!(counters(&metrics, "rejects").sent_events, 4);
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_bad_rows_follow_the_policy_too() {
    let ws = Workspace::new();
    ws.write("in/a.csv", "id,name\n1,a\nx,b\n3,c\n4\n5,\"e\"\n");
    let metrics = ws
        .run(
            r#"
sources:
  rows: { type: file, path: in/a.csv, format: csv, schema: { id: int64, name: string }, on_error: dead-letter, dead_letter: rejects }
sinks:
  good: { type: file, inputs: [rows], path: good.jsonl }
  rejects: { type: file, path: rejects.jsonl }
"#,
        )
        .await
        .unwrap();
    assert_eq!(ids(&ws), vec![1, 3, 5]);
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    let positions: Vec<&str> = rejects.iter().map(|row| row["position"].as_str().unwrap()).collect();
    assert!(positions[0].contains("a.csv:3 ") && positions[1].contains("a.csv:5 "), "{positions:?}");
    assert_eq!(counters(&metrics, "rows").errors, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_input_gives_an_empty_complete_output() {
    let ws = Workspace::new();
    ws.write("in/empty.jsonl", b"");
    ws.run(&pipeline("fail").replace("  rejects: { type: file, path: rejects.jsonl, inputs: [] }\n", ""))
        .await
        .unwrap();
    assert_eq!(ws.read("good.jsonl"), "");
}
