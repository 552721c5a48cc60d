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

/// Issue 19 (12): an unterminated quote made the CSV reader take every following line into the
/// field, and the good rows after it vanished (exit 0 under `on_error: fail`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_unterminated_quote_is_a_bad_record_at_its_line() {
    let ws = Workspace::new();
    ws.write("in/a.csv", "id,name\n1,a\n2,\"open\n3,c\n4,d\n");
    let csv_pipeline = |policy: &str| {
        format!(
            r#"
sources:
  rows: {{ type: file, path: in/a.csv, format: csv, schema: {{ id: int64, name: string }}, on_error: {policy} }}
sinks:
  good: {{ type: file, inputs: [rows], path: good.jsonl, overwrite: true }}
"#
        )
    };
    let err = ws.run(&csv_pipeline("fail")).await.unwrap_err();
    assert!(err.contains("a.csv:3 ") && err.contains("unterminated quote"), "{err}");
    let metrics = ws.run(&csv_pipeline("skip")).await.unwrap();
    assert_eq!(ids(&ws), vec![1, 3, 4], "the rows after the bad one are kept");
    assert_eq!(counters(&metrics, "rows").errors, 1);
}

/// Issue 19 (13): about 50,000 levels of nesting in a declared column overflowed the stack and
/// killed the process whatever `on_error` said. Run as a child process: the old failure is an
/// abort, which would take the test binary down with it.
#[test]
fn deeply_nested_json_is_a_bad_record_not_a_crash() {
    use std::io::Write;
    let ws = Workspace::new();
    let file = ws.write(
        "nested.yaml",
        "sources:\n  lines: { type: stdin, schema: { id: int64, doc: int64 }, on_error: dead-letter, dead_letter: bad }\nsinks:\n  out: { type: stdout, inputs: [lines] }\n  bad: { type: file, path: bad.jsonl }\n",
    );
    let mut child = crate::support::weir()
        .args(["run", "--quiet", "--no-admin"])
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let nested = format!("{{\"id\": 2, \"doc\": {}1{}}}\n", "[".repeat(50_000), "]".repeat(50_000));
    let input = format!("{{\"id\": 1, \"doc\": 5}}\n{nested}{{\"id\": 3, \"doc\": 7}}\n");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {}", output.status, &stderr[..stderr.len().min(2000)]);
    let ids: Vec<i64> =
        json_lines(&String::from_utf8(output.stdout).unwrap()).iter().map(|row| row["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![1, 3]);
    let bad = json_lines(&ws.read("bad.jsonl"));
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["error"].as_str().unwrap().contains("nested deeper than 128"), "{}", bad[0]["error"]);
}

/// Issue 19 (16): `-9223372036854775809` became the smallest int64 (the positive overflow was
/// refused), `2.9` became `2` in an int64 column and `1e400` became NULL, silently. Each is a bad
/// record, through the line decoders (files) and the message decoders (HTTP push).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_a_column_cannot_hold_are_bad_records() {
    let ws = Workspace::new();
    ws.write(
        "in/n.jsonl",
        concat!(
            "{\"id\": 1, \"v\": 1.5}\n",
            "{\"id\": -9223372036854775809, \"v\": 1.0}\n",
            "{\"id\": 2.9, \"v\": 1.0}\n",
            "{\"id\": 4, \"v\": 1e400}\n",
            "{\"id\": 5, \"v\": 2}\n",
            "{\"id\": 1e3, \"v\": 3}\n",
            "{\"id\": -9223372036854775808, \"v\": 4}\n",
        ),
    );
    let metrics = ws
        .run(
            r#"
sources:
  rows: { type: file, path: in/n.jsonl, schema: { id: int64, v: float64 }, on_error: dead-letter, dead_letter: rejects }
sinks:
  good: { type: file, inputs: [rows], path: good.jsonl }
  rejects: { type: file, path: rejects.jsonl }
"#,
        )
        .await
        .unwrap();
    assert_eq!(ids(&ws), vec![1, 5, 1000, i64::MIN], "the exact values stay");
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    let positions: Vec<&str> = rejects.iter().map(|row| row["position"].as_str().unwrap()).collect();
    assert_eq!(positions.len(), 3, "{rejects:?}");
    assert!(
        positions[0].contains("n.jsonl:2 ")
            && positions[1].contains("n.jsonl:3 ")
            && positions[2].contains("n.jsonl:4 "),
        "{positions:?}"
    );
    assert!(rejects[1]["error"].as_str().unwrap().contains("2.9 does not fit Int64 exactly"), "{}", rejects[1]);
    assert_eq!(counters(&metrics, "rows").dead_lettered_events, 3);

    let port = crate::support::free_port();
    let running = ws.start(&format!(
        "sources:\n  events: {{ type: http, listen: 127.0.0.1:{port}, schema: {{ id: int64 }} }}\nsinks:\n  out: {{ type: blackhole, inputs: [events] }}\n"
    ));
    crate::support::eventually(10, "the endpoint", async || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        .await;
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/ingest"))
        .body("{\"id\": 7}\n{\"id\": 2.9}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("2.9 does not fit Int64 exactly"));
    running.stop().await.unwrap();
}
