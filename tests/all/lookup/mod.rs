//! Lookup joins against dimension tables: a file table (no service needed), and PostgreSQL,
//! MariaDB and Redis on loopback with every cache mode, updates becoming visible on the cache's
//! schedule, one lookup per distinct key, and a database that goes away in the middle of a run.

mod file;
mod mysql;
mod postgres;
mod redis;

use std::time::{Duration, Instant};

use crate::support::{Workspace, json_lines};

pub use crate::support::free_port;

/// A pipeline around one table declaration: an HTTP ingest source of `{id, device}` rows, a left
/// lookup join on `device`, a JSON-lines file sink `out.jsonl`.
pub fn http_join_pipeline(port: u16, table: &str) -> String {
    format!(
        r#"
sources:
  events: {{ type: http, listen: "127.0.0.1:{port}", schema: {{ id: int64, device: int64 }} }}
tables:
  devices:
{table}
transforms:
  joined: {{ type: lookup_join, inputs: [events], table: devices, on: {{ device: id }}, kind: left, columns: [name], parallelism: 1 }}
sinks:
  out: {{ type: file, inputs: [joined], path: out.jsonl }}
"#
    )
}

/// Posts one event through the HTTP source and returns the `name` the join gave it (the source
/// answers once the sink has the row).
pub async fn name_for(ws: &Workspace, port: u16, id: i64, device: i64) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/ingest");
    let client = reqwest::Client::new();
    let mut response = None;
    for _ in 0..100 {
        match client.post(&url).body(format!("{{\"id\": {id}, \"device\": {device}}}\n")).send().await {
            Ok(ok) => {
                response = Some(ok);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // not listening yet
        }
    }
    assert_eq!(response.expect("the ingest endpoint answers").status(), 200);
    let rows = ws.rows("out.jsonl");
    let row = rows.iter().find(|row| row["id"] == id).unwrap_or_else(|| panic!("row {id} in {rows:?}"));
    row["name"].as_str().map(str::to_owned)
}

/// An update to device 1's name and when it may show.
pub struct Update<'a> {
    /// The name before.
    pub old: &'a str,
    /// The name after.
    pub new: &'a str,
    /// When the old row was cached or loaded (at the latest).
    pub since: Instant,
    /// The new name must not show before this long after `since`...
    pub not_before: Duration,
    /// ...and must show at most this much later.
    pub slack: Duration,
}

/// Posts events for device 1 (ids from `first_id`) until the update shows, checking every row
/// before it still had the old name and that it showed within its window.
pub async fn wait_for_update(ws: &Workspace, port: u16, first_id: i64, update: Update<'_>) {
    let mut id = first_id;
    loop {
        let name = name_for(ws, port, id, 1).await;
        let elapsed = update.since.elapsed();
        if name.as_deref() == Some(update.new) {
            assert!(
                elapsed >= update.not_before,
                "the update showed after {elapsed:?}, before {:?}",
                update.not_before
            );
            return;
        }
        assert_eq!(name.as_deref(), Some(update.old), "row {id}");
        let deadline = update.not_before + update.slack;
        assert!(elapsed < deadline, "the update did not show within {deadline:?}");
        id += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes `events.jsonl` with one `{id, site, device}` event per tuple.
pub fn write_site_events(ws: &Workspace, events: &[(i64, &str, i64)]) {
    let lines: String = events
        .iter()
        .map(|(id, site, device)| format!("{{\"id\": {id}, \"site\": \"{site}\", \"device\": {device}}}\n"))
        .collect();
    ws.write("events.jsonl", lines);
}

/// Rows of the `out.jsonl` file sorted by `id`.
pub fn sorted_rows(ws: &Workspace) -> Vec<serde_json::Value> {
    let mut rows = json_lines(&ws.read("out.jsonl"));
    rows.sort_by_key(|row| row["id"].as_i64());
    rows
}
