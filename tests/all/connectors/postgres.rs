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

/// Issue 19 (6): a COPY's completion message arrives before its implicit commit, so a backend
/// terminated in between lost whole batches that the sink had counted as written ("500000
/// written", exit 0, rows missing). Terminating the sink's backend every 30 ms must lose nothing
/// the sink counted: appends are at-least-once (a commit whose answer was lost may repeat a
/// batch), so ids are compared as a set. Under this fault the sink may also give up after its
/// retries (a database that drops every connection within 30 ms is down): then the job fails,
/// and still everything it counted as written is in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_loses_nothing_when_its_backend_is_terminated_every_30ms() {
    const ROWS: i64 = 200_000;
    let table = unique("pg_terminated");
    let app = unique("weir_term");
    let ws = Workspace::new();
    let pipeline = ws
        .load(&format!(
            r#"
sources:
  gen: {{ type: generator, count: {ROWS}, rate: 50000, columns: {{ id: {{ sequence: {{ start: 1 }} }}, site: {{ choice: [north, south, east, west] }} }} }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "{URL}?application_name={app}", table: {table}, create_table: true }}
settings: {{ batch_size: 2000 }}
"#
        ))
        .unwrap();
    let metrics = weir_engine::runner::metrics_for(&pipeline.graph);
    let job = {
        let (pipeline, metrics) = (pipeline.clone(), metrics.clone());
        tokio::spawn(async move { weir_engine::runner::run(&pipeline.graph, &metrics, Default::default()).await })
    };
    let kills = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let killer = {
        let (app, kills) = (app.clone(), std::sync::Arc::clone(&kills));
        tokio::spawn(async move {
            let db = client().await;
            loop {
                let killed: i64 = db
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                        &[&app],
                    )
                    .await
                    .unwrap()
                    .get(0);
                kills.fetch_add(killed, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
        })
    };
    let result = tokio::time::timeout(std::time::Duration::from_secs(180), job).await.expect("the job ends").unwrap();
    killer.abort();
    let kills = kills.load(std::sync::atomic::Ordering::Relaxed);
    let written = crate::support::counters(&metrics, "db").sent_events as i64;
    let db = client().await;
    // A job that failed while setting up may not have created the table: then it holds nothing.
    let created: bool = db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.unwrap().get(0);
    let (rows, distinct) = if created {
        let row = db.query_one(&format!("SELECT count(*), count(DISTINCT id) FROM {table}"), &[]).await.unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    } else {
        (0, 0)
    };
    eprintln!(
        "fault schedule: pg_terminate_backend every 30 ms: {kills} backends terminated; the sink counted {written} \
         written; the table has {rows} rows, {distinct} distinct ids; the job {}",
        match &result {
            Ok(()) => "finished".to_owned(),
            Err(err) => format!("failed: {err}"),
        }
    );
    assert!(kills > 0, "the sink's backend was terminated at least once");
    assert!(distinct >= written, "every batch the sink counted as written is committed");
    if result.is_ok() {
        assert_eq!(distinct, ROWS, "a job that finished wrote every generated id");
    }
    db.batch_execute(&format!("DROP TABLE IF EXISTS {table}")).await.unwrap();
}

/// Issue 19 (9): with default parallelism, rows of one key reached an upsert sink out of order
/// (batches of two subtasks overtake each other) and a device's "latest" row could be stale. A
/// trigger counts every update that would replace a row with an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_sink_sees_each_keys_rows_in_order_whatever_the_parallelism() {
    let table = unique("pg_latest");
    let db = client().await;
    db.batch_execute(&format!(
        "CREATE TABLE {table} (device bigint PRIMARY KEY, seq bigint, doubled bigint);
         CREATE TABLE {table}_regressions (device bigint, old_seq bigint, new_seq bigint);
         CREATE FUNCTION {table}_order() RETURNS trigger AS $$ BEGIN
           IF NEW.seq < OLD.seq THEN INSERT INTO {table}_regressions VALUES (OLD.device, OLD.seq, NEW.seq); END IF;
           RETURN NEW; END $$ LANGUAGE plpgsql;
         CREATE TRIGGER keep_order BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_order();"
    ))
    .await
    .unwrap();
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 200000, seed: 3, columns: {{ seq: {{ sequence: {{ start: 1 }} }}, device: {{ random: {{ min: 1, max: 40 }} }} }} }}
transforms:
  doubled: {{ type: select, inputs: [gen], columns: ["device", "seq", "seq * 2 AS doubled"], parallelism: 4 }}
sinks:
  latest: {{ type: postgres, inputs: [doubled], url: "{URL}", table: {table}, mode: upsert, key: [device] }}
settings: {{ batch_size: 250 }}
"#
    ))
    .await
    .unwrap();
    let regressions: i64 =
        db.query_one(&format!("SELECT count(*) FROM {table}_regressions"), &[]).await.unwrap().get(0);
    let devices = count(&db, &table).await;
    eprintln!("{regressions} updates replaced a newer row with an older one; {devices} devices");
    assert_eq!(regressions, 0, "every key's rows arrived in order");
    assert_eq!(devices, 40);
    db.batch_execute(&format!("DROP TABLE {table}; DROP TABLE {table}_regressions; DROP FUNCTION {table}_order()"))
        .await
        .unwrap();
}

/// Issue 19 (20): the PostgreSQL sink connected without TLS only, and its password could only sit
/// in the connection string. The cluster on 5433 (tests/services.sh) accepts only TLS
/// connections with a SCRAM password. The sink writes through TLS with the password from a file;
/// a wrong password and a wrong authority fail, without showing the password; `psql` confirms
/// the rows arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_from_a_file_reach_a_server_that_requires_them() {
    let table = unique("pg_secured");
    let ws = crate::support::password_workspace();
    let pipeline = |password: &str, ca: &str| {
        format!(
            r#"
sources:
  gen: {{ type: generator, count: 500, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  db: {{ type: postgres, inputs: [gen], url: "postgres://weir@127.0.0.1:5433/test", password: {{ file: {password} }}, tls: {{ ca_file: "{ca}" }}, table: {table}, create_table: true }}
"#
        )
    };
    let ca = crate::support::tls_file("ca.pem");
    let err = ws.run(&pipeline("wrong", &ca)).await.unwrap_err();
    assert!(!err.contains("not-the-password") && err.contains("password authentication failed"), "{err}");
    let err = ws.run(&pipeline("right", &crate::support::tls_file("other-ca.pem"))).await.unwrap_err();
    assert!(err.contains("5433") && err.to_lowercase().contains("certificate"), "{err}");
    ws.run(&pipeline("right", &ca)).await.unwrap();
    let counted = std::process::Command::new("psql")
        .env("PGPASSWORD", "weir-secret")
        .args([
            &format!("host=127.0.0.1 port=5433 user=weir dbname=test sslmode=verify-full sslrootcert={ca}"),
            "-tAc",
            &format!("SELECT count(DISTINCT id) FROM {table}"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "500", "{}", String::from_utf8_lossy(&counted.stderr));
}
