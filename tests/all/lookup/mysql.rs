//! `mysql` dimension tables on MariaDB: composite keys, remembered misses, full reloads.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use super::{Update, free_port, http_join_pipeline, name_for, sorted_rows, wait_for_update, write_site_events};
use crate::connectors::mysql::{URL, connection};
use crate::support::{Workspace, unique};

async fn create(table: &str) -> mysql_async::Conn {
    let mut db = connection().await;
    db.query_drop(format!(
        "CREATE TABLE {table} (site VARCHAR(20), id INT, name VARCHAR(50), score DOUBLE, PRIMARY KEY (site, id));
         INSERT INTO {table} VALUES ('berlin', 1, 'boiler', 0.5), ('austin', 1, 'pump', NULL), ('berlin', 2, 'chiller', 2)"
    ))
    .await
    .unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_with_a_partial_cache_that_remembers_misses() {
    let table = unique("my_devices");
    let mut db = create(&table).await;
    let ws = Workspace::new();
    write_site_events(&ws, &[(1, "berlin", 1), (2, "austin", 1), (3, "austin", 2), (4, "berlin", 2), (5, "austin", 2)]);
    let yaml = format!(
        r#"
sources:
  events: {{ type: file, path: events.jsonl, schema: {{ id: int64, site: string, device: int64 }} }}
tables:
  devices:
    type: mysql
    url: "{URL}"
    table: {table}
    key: [site, id]
    columns: {{ site: string, id: int64, name: string, score: float64 }}
    cache: {{ mode: partial, max_rows: 10, cache_missing: true }}
transforms:
  joined: {{ type: lookup_join, inputs: [events], table: devices, on: {{ site: site, device: id }}, kind: left, columns: [name, score], parallelism: 1, in_flight: 1 }}
sinks:
  out: {{ type: file, inputs: [joined], path: out.jsonl }}
settings: {{ batch_size: 2 }}
"#
    );
    let pipeline = ws.load(&yaml).unwrap();
    let metrics = weir_engine::runner::metrics_for(&pipeline.graph);
    weir_engine::runner::run(&pipeline.graph, &metrics, Default::default()).await.unwrap();
    let rows = sorted_rows(&ws);
    let joined: Vec<(Option<&str>, Option<f64>)> =
        rows.iter().map(|row| (row["name"].as_str(), row["score"].as_f64())).collect();
    assert_eq!(
        joined,
        [(Some("boiler"), Some(0.5)), (Some("pump"), None), (None, None), (Some("chiller"), Some(2.0)), (None, None)]
    );
    let table_metrics = pipeline.tables.get("devices").unwrap().metrics.snapshot();
    // Batches of 2, one at a time: (berlin 1, austin 1) miss, (austin 2, berlin 2) miss, then
    // (austin 2) hits the remembered miss.
    assert_eq!((table_metrics.cache_misses, table_metrics.cache_hits), (4, 1), "{table_metrics:?}");
    db.query_drop(format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cache_reloads_on_schedule() {
    let table = unique("my_full");
    let mut db = connection().await;
    db.query_drop(format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT); INSERT INTO {table} VALUES (1, 'boiler')"
    ))
    .await
    .unwrap();
    let port = free_port();
    let ws = Workspace::new();
    let loaded_at = Instant::now();
    let declaration = format!(
        "    type: mysql\n    url: \"{URL}\"\n    table: {table}\n    key: [id]\n    columns: {{ id: int64, name: string }}\n    cache: {{ mode: full, reload_every: 3s }}\n"
    );
    let running = ws.start(&http_join_pipeline(port, &declaration));
    assert_eq!(name_for(&ws, port, 1, 1).await.as_deref(), Some("boiler"));
    db.query_drop(format!("UPDATE {table} SET name = 'furnace' WHERE id = 1")).await.unwrap();
    let update = Update {
        old: "boiler",
        new: "furnace",
        since: loaded_at,
        not_before: Duration::from_secs(3),
        slack: Duration::from_secs(6),
    };
    wait_for_update(&ws, port, 2, update).await;
    running.stop().await.unwrap();
    db.query_drop(format!("DROP TABLE {table}")).await.unwrap();
}
