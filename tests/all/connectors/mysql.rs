//! `mysql` sink (MariaDB here): batched inserts, upserts, rows rejected in strict mode, a killed
//! connection.

use mysql_async::prelude::Queryable;

use crate::support::{Workspace, eventually, json_lines, unique};

pub const URL: &str = "mysql://root@127.0.0.1:3306/test";

pub async fn connection() -> mysql_async::Conn {
    mysql_async::Conn::from_url(URL).await.expect("MariaDB on 3306")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_then_upserts_by_key() {
    let table = unique("my_readings");
    let ws = Workspace::new();
    let pipeline = |mode: &str, factor: i64| {
        format!(
            r#"
sources:
  gen:
    type: generator
    count: 3000
    columns:
      id: {{ sequence: {{ start: 1 }} }}
      city: {{ choice: [Berlin, Hangzhou] }}
      ts: {{ timestamp: {{ start: "2026-11-24T00:00:00Z", step: 1s }} }}
transforms:
  scaled: {{ type: select, inputs: [gen], columns: ["id", "city", "ts", "id * {factor} AS v"] }}
sinks:
  db: {{ type: mysql, inputs: [scaled], url: "{URL}", table: {table}, mode: {mode}, key: [id], create_table: true }}
settings: {{ batch_size: 1000 }}
"#
        )
    };
    ws.run(&pipeline("append", 1)).await.unwrap();
    let mut db = connection().await;
    let count: Option<i64> = db.query_first(format!("SELECT count(*) FROM {table}")).await.unwrap();
    assert_eq!(count, Some(3000));
    let ts: Option<String> =
        db.query_first(format!("SELECT CAST(ts AS CHAR) FROM {table} WHERE id = 61")).await.unwrap();
    assert_eq!(ts.as_deref(), Some("2026-11-24 00:01:00.000000"));
    ws.run(&pipeline("upsert", 2)).await.unwrap();
    let (count, sum): (i64, i64) =
        db.query_first(format!("SELECT count(*), CAST(sum(v) AS SIGNED) FROM {table}")).await.unwrap().unwrap();
    assert_eq!((count, sum), (3000, 2 * 3000 * 3001 / 2));
    db.query_drop(format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_rejected_in_strict_mode_go_to_the_dead_letter_sink() {
    let table = unique("my_strict");
    let mut db = connection().await;
    db.query_drop(format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, v TINYINT)")).await.unwrap();
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 200, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  db: {{ type: mysql, inputs: [gen2], url: "{URL}", table: {table}, on_error: dead-letter, dead_letter: rejected }}
  rejected: {{ type: file, path: rejected.jsonl }}
transforms:
  gen2: {{ type: select, inputs: [gen], columns: ["id", "id AS v"] }}
"#
    ))
    .await
    .unwrap();
    let count: Option<i64> = db.query_first(format!("SELECT count(*) FROM {table}")).await.unwrap();
    assert_eq!(count, Some(127), "TINYINT holds 1..=127");
    let rejected = json_lines(&ws.read("rejected.jsonl"));
    assert_eq!(rejected.len(), 73);
    assert!(rejected[0]["error"].as_str().unwrap().contains("Out of range"), "{}", rejected[0]);
    db.query_drop(format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_reopened_and_nothing_is_lost() {
    let table = unique("my_killed");
    // The sink logs in as its own user, so its connections can be told apart and killed.
    let user = unique("weir_my");
    let mut db = connection().await;
    db.query_drop(format!("CREATE USER '{user}'@'%'; GRANT ALL ON test.* TO '{user}'@'%'")).await.unwrap();
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 3000, rate: 1500, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  db: {{ type: mysql, inputs: [gen], url: "mysql://{user}@127.0.0.1:3306/test", table: {table}, mode: upsert, key: [id], create_table: true }}
settings: {{ batch_size: 100 }}
"#
    ));
    eventually(20, "the first rows", async || {
        let mut db = connection().await;
        db.query_first::<i64, _>(format!("SELECT count(*) FROM {table}")).await.is_ok_and(|n| n > Some(300))
    })
    .await;
    let sessions: Vec<u64> =
        db.exec("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", (user.as_str(),)).await.unwrap();
    assert!(!sessions.is_empty(), "the sink has a connection to kill");
    for id in &sessions {
        db.query_drop(format!("KILL CONNECTION {id}")).await.unwrap();
    }
    running.finish().await.unwrap();
    let row: (i64, i64, i64) =
        db.query_first(format!("SELECT count(*), count(DISTINCT id), max(id) FROM {table}")).await.unwrap().unwrap();
    assert_eq!(row, (3000, 3000, 3000));
    db.query_drop(format!("DROP TABLE {table}; DROP USER '{user}'@'%'")).await.unwrap();
}

/// Issue 19 (20): the MySQL sink had no TLS options, and its password could only sit in the URL.
/// The MariaDB on 3307 (tests/services.sh) requires TLS and the password of the user `weir`. The
/// sink writes through TLS with the password from a file; a wrong password and a wrong authority
/// fail, without showing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_from_a_file_reach_a_server_that_requires_them() {
    let table = unique("my_secured");
    let ws = crate::support::password_workspace();
    let pipeline = |password: &str, ca: &str| {
        format!(
            r#"
sources:
  gen: {{ type: generator, count: 500, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  db: {{ type: mysql, inputs: [gen], url: "mysql://weir@127.0.0.1:3307/test", password: {{ file: {password} }}, tls: {{ ca_file: "{ca}" }}, table: {table}, create_table: true }}
"#
        )
    };
    let ca = crate::support::tls_file("ca.pem");
    let err = ws.run(&pipeline("wrong", &ca)).await.unwrap_err();
    assert!(!err.contains("not-the-password") && err.contains("Access denied"), "{err}");
    let err = ws.run(&pipeline("right", &crate::support::tls_file("other-ca.pem"))).await.unwrap_err();
    assert!(err.contains("3307") && err.to_lowercase().contains("certificate"), "{err}");
    ws.run(&pipeline("right", &ca)).await.unwrap();

    let ssl = mysql_async::SslOpts::default()
        .with_root_certs(vec![std::path::PathBuf::from(&ca).into()])
        .with_disable_built_in_roots(true);
    let opts = mysql_async::OptsBuilder::from_opts(
        mysql_async::Opts::from_url("mysql://weir:weir-secret@127.0.0.1:3307/test").unwrap(),
    )
    .ssl_opts(ssl);
    let mut db = mysql_async::Conn::new(opts).await.expect("MariaDB with TLS on 3307");
    let count: Option<i64> = db.query_first(format!("SELECT count(DISTINCT id) FROM {table}")).await.unwrap();
    assert_eq!(count, Some(500));
    db.query_drop(format!("DROP TABLE {table}")).await.unwrap();
}
