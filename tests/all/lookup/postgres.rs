//! `postgres` dimension tables: joins with every cache mode, updates on the cache's schedule,
//! one query per distinct key set, and the database going away mid-run.

use std::time::{Duration, Instant};

use super::{Update, free_port, http_join_pipeline, name_for, sorted_rows, wait_for_update};
use crate::connectors::postgres::{URL, client};
use crate::support::{Proxy, Workspace, counters, unique};

/// A `devices` table with ids 1..=3 (and a composite-key `sited` twin), dropped at the end.
struct Devices {
    db: tokio_postgres::Client,
    table: String,
    sited: String,
}

impl Devices {
    async fn create() -> Self {
        let db = client().await;
        let table = unique("pg_devices");
        let sited = unique("pg_sited");
        db.batch_execute(&format!(
            "CREATE TABLE {table} (id int4 PRIMARY KEY, name text, weight float8, active bool, installed timestamptz);
             INSERT INTO {table} VALUES (1, 'boiler', 1.5, true, '2024-05-01T10:00:00Z'), (2, 'chiller', NULL, false, NULL), (3, 'pump', 3.25, true, '2024-05-03T12:30:00Z');
             CREATE TABLE {sited} (site text, id int8, name text, PRIMARY KEY (site, id));
             INSERT INTO {sited} VALUES ('berlin', 1, 'boiler'), ('austin', 1, 'pump');"
        ))
        .await
        .unwrap();
        Self { db, table, sited }
    }

    fn declaration(&self, extra: &str) -> String {
        format!(
            "    type: postgres\n    url: \"{URL}\"\n    table: {}\n    key: [id]\n    columns: {{ id: int64, name: string }}\n{extra}",
            self.table
        )
    }

    async fn rename(&self, id: i64, name: &str) {
        self.db
            .execute(&format!("UPDATE {} SET name = $1 WHERE id = $2", self.table), &[&name, &(id as i32)])
            .await
            .unwrap();
    }

    async fn drop(self) {
        self.db.batch_execute(&format!("DROP TABLE {}; DROP TABLE {}", self.table, self.sited)).await.unwrap();
    }
}

/// A pipeline over `events.jsonl` (`{id, device}`): a lookup join on `device` with `join` options,
/// a JSON-lines sink `out.jsonl`, and `settings`.
fn file_join_pipeline(declaration: &str, join: &str, settings: &str) -> String {
    format!(
        r#"
sources:
  events: {{ type: file, path: events.jsonl, schema: {{ id: int64, device: int64 }} }}
tables:
  devices:
{declaration}
transforms:
  joined: {{ type: lookup_join, inputs: [events], table: devices, on: {{ device: id }}, {join} }}
sinks:
  out: {{ type: file, inputs: [joined], path: out.jsonl }}
settings: {{ {settings} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_and_inner_joins_with_every_type_null_and_missing_keys() {
    let devices = Devices::create().await;
    let ws = Workspace::new();
    ws.write(
        "events.jsonl",
        "{\"id\": 1, \"device\": 1, \"site\": \"berlin\"}\n{\"id\": 2, \"device\": 2, \"site\": \"austin\"}\n\
         {\"id\": 3, \"device\": 9, \"site\": \"austin\"}\n{\"id\": 4, \"device\": null, \"site\": \"austin\"}\n\
         {\"id\": 5, \"device\": 3, \"site\": \"berlin\"}\n{\"id\": 6, \"device\": 1, \"site\": \"austin\"}\n",
    );
    let yaml = format!(
        r#"
sources:
  events: {{ type: file, path: events.jsonl, schema: {{ id: int64, device: int64, site: string }} }}
tables:
  devices:
    type: postgres
    url: "{URL}"
    table: {table}
    key: [id]
    columns: {{ id: int64, name: string, weight: float64, active: bool, installed: "timestamp(ms, UTC)" }}
  sited:
    type: postgres
    url: "{URL}"
    query: "SELECT site, id, upper(name) AS name FROM {sited}"
    key: [site, id]
    columns: {{ site: string, id: int64, name: string }}
transforms:
  left: {{ type: lookup_join, inputs: [events], table: devices, on: {{ device: id }}, kind: left }}
  both: {{ type: lookup_join, inputs: [left], table: sited, on: {{ site: site, device: id }}, columns: ["name AS site_name"] }}
sinks:
  out: {{ type: file, inputs: [left], path: out.jsonl }}
  inner: {{ type: file, inputs: [both], path: inner.jsonl }}
"#,
        table = devices.table,
        sited = devices.sited
    );
    ws.run(&yaml).await.unwrap();
    let rows = sorted_rows(&ws);
    assert_eq!(rows.len(), 6, "a left join keeps every row");
    assert_eq!(rows[0]["name"], "boiler");
    assert_eq!(rows[0]["weight"], 1.5);
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[0]["installed"], "2024-05-01T10:00:00Z");
    assert_eq!(rows[1]["name"], "chiller");
    assert!(rows[1]["weight"].is_null() && rows[1]["installed"].is_null(), "NULL columns stay NULL: {}", rows[1]);
    assert!(rows[2]["name"].is_null(), "a missing key joins NULLs: {}", rows[2]);
    assert!(rows[3]["name"].is_null(), "a NULL key matches nothing: {}", rows[3]);
    let mut inner: Vec<(i64, String)> = crate::support::json_lines(&ws.read("inner.jsonl"))
        .iter()
        .map(|row| (row["id"].as_i64().unwrap(), row["site_name"].as_str().unwrap().to_owned()))
        .collect();
    inner.sort();
    assert_eq!(inner, [(1, "BOILER".to_owned()), (6, "PUMP".to_owned())], "composite keys from a query");
    devices.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_sharing_a_key_cost_one_lookup() {
    let devices = Devices::create().await;
    let ws = Workspace::new();
    let events: String = (0..10_000).map(|i| format!("{{\"id\": {i}, \"device\": {}}}\n", i % 3 + 1)).collect();
    ws.write("events.jsonl", events);
    let yaml = file_join_pipeline(&devices.declaration(""), "parallelism: 1", "batch_size: 10000");
    let pipeline = ws.load(&yaml).unwrap();
    let metrics = weir_engine::runner::metrics_for(&pipeline.graph);
    weir_engine::runner::run(&pipeline.graph, &metrics, Default::default()).await.unwrap();
    assert_eq!(counters(&metrics, "out").sent_events, 10_000);
    let table = pipeline.tables.get("devices").unwrap().metrics.snapshot();
    assert_eq!((table.queries, table.keys_fetched), (1, 3), "10,000 rows with 3 keys: one query for 3 keys");
    drop(pipeline); // closes the pool, so the server flushes its statistics
    // The server agrees: the table was scanned once.
    let scans = || async {
        devices.db.batch_execute("SELECT pg_stat_clear_snapshot()").await.unwrap();
        let row = devices
            .db
            .query_one(
                "SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = $1",
                &[&devices.table],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    let mut seen = 0;
    for _ in 0..100 {
        seen = scans().await;
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One query; PostgreSQL counts a scan per key probed in the index (or one sequential scan),
    // so at most 3 for 3 keys where one lookup per row would have made 10,000.
    assert!((1..=3).contains(&seen), "PostgreSQL counted {seen} scans of the dimension table");
    devices.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_cache_serves_the_old_row_until_it_expires() {
    let devices = Devices::create().await;
    let port = free_port();
    let ws = Workspace::new();
    let ttl = Duration::from_secs(4);
    let running = ws.start(&http_join_pipeline(
        port,
        &devices.declaration("    cache: { mode: partial, max_rows: 100, expire_after_write: 4s }\n"),
    ));
    let cached_at = Instant::now();
    assert_eq!(name_for(&ws, port, 1, 1).await.as_deref(), Some("boiler"));
    devices.rename(1, "furnace").await;
    let update =
        Update { old: "boiler", new: "furnace", since: cached_at, not_before: ttl, slack: Duration::from_secs(6) };
    wait_for_update(&ws, port, 2, update).await;
    running.stop().await.unwrap();
    devices.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cache_serves_the_old_table_until_the_next_reload() {
    let devices = Devices::create().await;
    let port = free_port();
    let ws = Workspace::new();
    let loaded_at = Instant::now();
    let running =
        ws.start(&http_join_pipeline(port, &devices.declaration("    cache: { mode: full, reload_every: 4s }\n")));
    assert_eq!(name_for(&ws, port, 1, 1).await.as_deref(), Some("boiler"));
    devices.rename(1, "furnace").await;
    // A row added after the load is not there either, until the reload.
    devices.db.execute(&format!("INSERT INTO {} (id, name) VALUES (7, 'fan')", devices.table), &[]).await.unwrap();
    assert_eq!(name_for(&ws, port, 100, 7).await, None);
    let update = Update {
        old: "boiler",
        new: "furnace",
        since: loaded_at,
        not_before: Duration::from_secs(4),
        slack: Duration::from_secs(6),
    };
    wait_for_update(&ws, port, 2, update).await;
    assert_eq!(name_for(&ws, port, 101, 7).await.as_deref(), Some("fan"));
    running.stop().await.unwrap();
    devices.drop().await;
}

fn generated(rows: usize, table_url: &str, table: &str, on_error: &str) -> String {
    let dead_letter =
        if on_error.starts_with("dead-letter") { "\n  failed: { type: file, path: failed.jsonl }" } else { "" };
    format!(
        r#"
sources:
  gen: {{ type: generator, count: {rows}, rate: 1000, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
tables:
  devices:
    type: postgres
    url: "{table_url}"
    table: {table}
    key: [id]
    columns: {{ id: int64, name: string }}
    lookup: {{ timeout: 1s, max_retries: 1 }}
transforms:
  keyed: {{ type: select, inputs: [gen], columns: ["id", "id % 3 + 1 AS device"] }}
  joined: {{ type: lookup_join, inputs: [keyed], table: devices, on: {{ device: id }}, columns: [name], on_error: {on_error} }}
sinks:
  out: {{ type: file, inputs: [joined], path: out.jsonl }}{dead_letter}
settings: {{ batch_size: 50 }}
"#
    )
}

/// Runs a generated pipeline through a proxy to PostgreSQL that is cut for 3 s once 500 rows
/// were joined; returns the job's counters and the lookups that failed.
async fn run_with_outage(ws: &Workspace, rows: usize, on_error: &str) -> (weir_engine::metrics::PipelineMetrics, u64) {
    let devices = Devices::create().await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    let pipeline = ws.load(&generated(rows, &url, &devices.table, on_error)).unwrap();
    let metrics = weir_engine::runner::metrics_for(&pipeline.graph);
    let tables = std::sync::Arc::clone(&pipeline.tables);
    let job = {
        let metrics = metrics.clone();
        tokio::spawn(async move { weir_engine::runner::run(&pipeline.graph, &metrics, Default::default()).await })
    };
    crate::support::eventually(20, "500 joined rows", async || counters(&metrics, "joined").sent_events >= 500).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    tokio::time::timeout(Duration::from_secs(60), job).await.expect("the job ends").unwrap().unwrap();
    let failed_lookups = tables.get("devices").unwrap().metrics.snapshot().errors;
    devices.drop().await;
    (metrics, failed_lookups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_retry_no_row_is_lost_while_the_database_is_away() {
    let ws = Workspace::new();
    let (metrics, failed_lookups) = run_with_outage(&ws, 3000, "retry").await;
    let rows = sorted_rows(&ws);
    let ids: Vec<i64> = rows.iter().map(|row| row["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=3000).collect::<Vec<_>>(), "every row, once");
    assert!(rows.iter().all(|row| row["name"].is_string()), "every row joined");
    assert!(failed_lookups > 0, "the outage made lookups fail");
    assert_eq!(counters(&metrics, "joined").errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_dead_letter_the_rows_of_failed_lookups_go_to_the_dead_letter_sink() {
    let ws = Workspace::new();
    let (metrics, failed_lookups) = run_with_outage(&ws, 3000, "dead-letter, dead_letter: failed").await;
    let joined = ws.rows("out.jsonl");
    let failed = ws.rows("failed.jsonl");
    assert!(failed_lookups > 0 && !failed.is_empty(), "lookups failed while the database was away");
    assert_eq!(joined.len() + failed.len(), 3000, "every row is joined or dead-lettered");
    assert!(failed[0]["error"].as_str().unwrap().contains("lookup in table `devices` failed"), "{}", failed[0]);
    assert_eq!(counters(&metrics, "joined").dead_lettered_events, failed.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_the_job_stops_naming_the_database() {
    let devices = Devices::create().await;
    let ws = Workspace::new();
    let closed = free_port();
    let yaml = generated(100, &format!("postgres://postgres@127.0.0.1:{closed}/test"), &devices.table, "fail");
    let err = ws.run(&yaml).await.unwrap_err();
    assert!(err.contains(&format!("postgres at 127.0.0.1:{closed}/test")) && err.contains("devices"), "{err}");
    devices.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_keeps_input_order_while_batches_are_in_flight() {
    let devices = Devices::create().await;
    let ws = Workspace::new();
    // Small batches, 8 in flight: batches that hit the cache finish before earlier ones that
    // wait for PostgreSQL, yet the output must come out in input order.
    let events: String = (1..=2000).map(|i| format!("{{\"id\": {i}, \"device\": {}}}\n", i % 5)).collect();
    ws.write("events.jsonl", events);
    let yaml = file_join_pipeline(
        &devices.declaration("    cache: { mode: partial, max_rows: 2, expire_after_write: 50ms }\n"),
        "kind: left, columns: [name], parallelism: 1, in_flight: 8",
        "batch_size: 7",
    );
    ws.run(&yaml).await.unwrap();
    let ids: Vec<i64> =
        crate::support::json_lines(&ws.read("out.jsonl")).iter().map(|row| row["id"].as_i64().unwrap()).collect();
    let first_out_of_order = ids.iter().zip(1..).position(|(&id, expected)| id != expected);
    assert_eq!((ids.len(), first_out_of_order), (2000, None), "rows come out in input order");
    devices.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_miss_finds_a_row_that_arrives_just_after_the_fact() {
    let devices = Devices::create().await;
    let ws = Workspace::new();
    ws.write("events.jsonl", "{\"id\": 1, \"device\": 42}\n{\"id\": 2, \"device\": 43}\n");
    let yaml = file_join_pipeline(
        &devices.declaration(""),
        "kind: left, columns: [name], retry_on_miss: { attempts: 10, delay: 300ms }",
        "",
    );
    // Device 42 is written half a second after the job starts; 43 never is.
    let late = {
        let table = devices.table.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            client().await.execute(&format!("INSERT INTO {table} (id, name) VALUES (42, 'late')"), &[]).await.unwrap();
        })
    };
    let started = Instant::now();
    ws.run(&yaml).await.unwrap();
    late.await.unwrap();
    let rows = sorted_rows(&ws);
    assert_eq!(rows[0]["name"], "late", "the row that arrived late was found");
    assert!(rows[1]["name"].is_null(), "a key that never arrives stays unmatched after the retries");
    assert!(started.elapsed() >= Duration::from_secs(3), "10 retries 300 ms apart were made for the missing key");
    devices.drop().await;
}
