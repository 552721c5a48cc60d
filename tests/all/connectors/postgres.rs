//! `postgres` sink: COPY appends, upserts, rejected rows, a killed connection.

use crate::support::{Workspace, eventually, json_lines, unique};

pub const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub async fn client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(URL, tokio_postgres::NoTls).await.expect("PostgreSQL on 5432");
    tokio::spawn(connection);
    client
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_with_copy_then_upserts_by_key() {
    let table = unique("pg_readings");
    let ws = Workspace::new();
    let pipeline = |mode: &str, scale: f64| {
        format!(
            r#"
sources:
  gen:
    type: generator
    count: 5000
    columns:
      id: {{ sequence: {{ start: 1 }} }}
      city: {{ choice: [Berlin, Hangzhou] }}
      ts: {{ timestamp: {{ start: "2026-11-24T00:00:00Z", step: 1s }} }}
transforms:
  scaled: {{ type: select, inputs: [gen], columns: ["id", "city", "ts", "id * {scale:.1} AS v"] }}
sinks:
  db: {{ type: postgres, inputs: [scaled], url: "{URL}", table: {table}, mode: {mode}, key: [id], create_table: true }}
settings: {{ batch_size: 1000 }}
"#
        )
    };
    ws.run(&pipeline("append", 1.0)).await.unwrap();
    let db = client().await;
    assert_eq!(count(&db, &table).await, 5000);
    let row = db.query_one(&format!("SELECT city, ts::text, v FROM {table} WHERE id = 61"), &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(1), "2026-11-24 00:01:00");
    assert_eq!(row.get::<_, f64>(2), 61.0);

    // Upsert the same keys twice with new values: still one row per key, the last value wins.
    ws.run(&pipeline("upsert", 2.0)).await.unwrap();
    ws.run(&pipeline("upsert", 3.0)).await.unwrap();
    assert_eq!(count(&db, &table).await, 5000);
    let sum: f64 = db.query_one(&format!("SELECT sum(v) FROM {table}"), &[]).await.unwrap().get(0);
    assert_eq!(sum, 3.0 * (5000.0 * 5001.0 / 2.0));
    db.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_database_rejects_go_to_the_dead_letter_sink_with_its_error() {
    let table = unique("pg_checked");
    let db = client().await;
    db.batch_execute(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY, v bigint CHECK (v >= 0))")).await.unwrap();
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 20, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
transforms:
  shifted: {{ type: select, inputs: [gen], columns: ["id", "id - 5 AS v"] }}
sinks:
  db: {{ type: postgres, inputs: [shifted], url: "{URL}", table: {table}, on_error: dead-letter, dead_letter: rejected }}
  rejected: {{ type: file, path: rejected.jsonl }}
"#
    ))
    .await
    .unwrap();
    assert_eq!(count(&db, &table).await, 16, "ids 5..=20 satisfy the check");
    let rejected = json_lines(&ws.read("rejected.jsonl"));
    assert_eq!(rejected.len(), 4);
    for row in &rejected {
        assert_eq!(row["component"], "db");
        assert!(row["error"].as_str().unwrap().contains("check constraint"), "{row}");
    }
    db.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_reopened_and_nothing_is_lost() {
    let table = unique("pg_killed");
    let app = unique("weir_app");
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 3000, rate: 1500, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "{URL}?application_name={app}", table: {table}, mode: upsert, key: [id], create_table: true }}
settings: {{ batch_size: 100 }}
"#
    ));
    let db = client().await;
    eventually(20, "the first rows", async || {
        db.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.is_ok_and(|row| row.get::<_, i64>(0) > 300)
    })
    .await;
    let killed: i64 = db
        .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the sink's connection was killed");
    running.finish().await.unwrap();
    let row = db.query_one(&format!("SELECT count(*), count(DISTINCT id), max(id) FROM {table}"), &[]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1), row.get::<_, i64>(2)), (3000, 3000, 3000));
    db.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}
