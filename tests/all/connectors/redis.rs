//! `redis`: Streams source with a consumer group (XACK after the sinks confirm, pending entries
//! recovered after a crash) and the SET / HSET / XADD sink, which survives a killed connection.

use redis::AsyncCommands;
use redis::streams::{StreamPendingReply, StreamReadOptions, StreamReadReply};

use crate::support::{Workspace, eventually, sorted_ids, unique};

pub const URL: &str = "redis://127.0.0.1:6379";

pub async fn connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(URL).unwrap().get_multiplexed_async_connection().await.expect("Redis on 6379")
}

fn source(stream: &str) -> String {
    format!(
        r#"
sources:
  events:
    type: redis
    url: {URL}
    stream: {stream}
    group: weir
    consumer: weir-1
    schema: {{ id: int64 }}
    metadata: {{ entry: id }}
    on_error: dead-letter
    dead_letter: bad
sinks:
  out: {{ type: file, inputs: [events], path: out.jsonl }}
  bad: {{ type: file, path: bad.jsonl }}
settings: {{ batch_size: 100 }}
"#
    )
}

async fn pending(redis: &mut redis::aio::MultiplexedConnection, stream: &str) -> usize {
    let reply: StreamPendingReply = redis.xpending(stream, "weir").await.unwrap();
    reply.count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_round_trip_acknowledges_every_entry() {
    let stream = unique("events");
    let mut redis = connection().await;
    for id in 1..=1000 {
        let payload = if id == 300 { "oops".to_owned() } else { format!(r#"{{"id": {id}}}"#) };
        let _: String = redis.xadd(&stream, "*", &[("payload", payload)]).await.unwrap();
    }
    let ws = Workspace::new();
    let running = ws.start(&source(&stream));
    eventually(20, "999 rows", async || ws.rows("out.jsonl").len() >= 999).await;
    running.stop().await.unwrap();
    let mut expected: Vec<i64> = (1..=1000).collect();
    expected.retain(|&id| id != 300);
    assert_eq!(sorted_ids(&ws.rows("out.jsonl")), expected);
    assert_eq!(ws.rows("bad.jsonl").len(), 1);
    assert_eq!(pending(&mut redis, &stream).await, 0, "every entry acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_before_a_crash_are_recovered_from_the_pending_list() {
    let stream = unique("crash");
    let mut redis = connection().await;
    let _: () = redis.xgroup_create_mkstream(&stream, "weir", "0").await.unwrap();
    for id in 1..=50 {
        let _: String = redis.xadd(&stream, "*", &[("payload", format!(r#"{{"id": {id}}}"#))]).await.unwrap();
    }
    // A consumer named like the pipeline's reads 20 entries and "crashes" without XACK.
    let options = StreamReadOptions::default().group("weir", "weir-1").count(20);
    let read: StreamReadReply = redis.xread_options(&[&stream], &[">"], &options).await.unwrap();
    assert_eq!(read.keys[0].ids.len(), 20);
    assert_eq!(pending(&mut redis, &stream).await, 20);

    let ws = Workspace::new();
    let running = ws.start(&source(&stream));
    eventually(20, "50 rows", async || ws.rows("out.jsonl").len() >= 50).await;
    running.stop().await.unwrap();
    assert_eq!(sorted_ids(&ws.rows("out.jsonl")), (1..=50).collect::<Vec<_>>());
    assert_eq!(pending(&mut redis, &stream).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_writes_hashes_with_ttl_values_and_stream_entries() {
    let prefix = unique("dev");
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 300, columns: {{ id: {{ sequence: {{ start: 1 }} }}, city: {{ choice: [Berlin, Hangzhou] }} }} }}
sinks:
  hashes: {{ type: redis, inputs: [gen], url: {URL}, command: hset, key: "{prefix}:{{id}}", ttl: 1h }}
  values: {{ type: redis, inputs: [gen], url: {URL}, command: set, key: "{prefix}:v:{{id}}" }}
  entries: {{ type: redis, inputs: [gen], url: {URL}, command: xadd, key: "{prefix}:stream" }}
"#
    ))
    .await
    .unwrap();
    let mut redis = connection().await;
    let hash: std::collections::HashMap<String, String> = redis.hgetall(format!("{prefix}:42")).await.unwrap();
    assert_eq!(hash.get("id").map(String::as_str), Some("42"));
    assert!(matches!(hash.get("city").map(String::as_str), Some("Berlin" | "Hangzhou")));
    let ttl: i64 = redis.ttl(format!("{prefix}:42")).await.unwrap();
    assert!((3500..=3600).contains(&ttl), "ttl {ttl}");
    let value: String = redis.get(format!("{prefix}:v:300")).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&value).unwrap()["id"], 300);
    let length: usize = redis.xlen(format!("{prefix}:stream")).await.unwrap();
    assert_eq!(length, 300);
    let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys.len(), 601);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_reopened_and_nothing_is_lost() {
    let prefix = unique("killed");
    // The sink logs in as its own ACL user, so its connections can be told apart and killed.
    let user = unique("weir_redis");
    let mut redis = connection().await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", &user, "on", ">secret", "~*", "&*", "+@all"][..])
        .query_async(&mut redis)
        .await
        .unwrap();
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 3000, rate: 1500, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  values: {{ type: redis, inputs: [gen], url: "redis://{user}:secret@127.0.0.1:6379", command: set, key: "{prefix}:{{id}}" }}
settings: {{ batch_size: 100 }}
"#
    ));
    eventually(20, "the first keys", async || {
        let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.unwrap();
        keys.len() > 300
    })
    .await;
    let killed: i64 = redis::cmd("CLIENT").arg(&["KILL", "USER", &user][..]).query_async(&mut redis).await.unwrap();
    assert!(killed >= 1, "the sink had a connection to kill");
    running.finish().await.unwrap();
    let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys.len(), 3000);
    let last: String = redis.get(format!("{prefix}:3000")).await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&last).unwrap()["id"], 3000);
    let _: () = redis::cmd("ACL").arg(&["DELUSER", &user][..]).query_async(&mut redis).await.unwrap();
}

/// Issue 19 (20): Redis had no TLS, and its password could only sit in the URL. The server on
/// 6380 (tests/services.sh) takes only TLS, with a certificate the test authority signed, and a
/// password. A stream is read and hashes are written through `rediss://` with the password from
/// a file; a wrong password and a wrong authority fail, without showing the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_from_a_file_for_the_source_and_the_sink() {
    let stream = unique("secured");
    let ca = crate::support::tls_file("ca.pem");
    let certificates = || redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&ca).unwrap()) };
    let client = redis::Client::build_with_tls("rediss://:weir-secret@127.0.0.1:6380", certificates()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.expect("Redis with TLS on 6380");
    for id in 1..=50 {
        let _: String = redis.xadd(&stream, "*", &[("payload", format!(r#"{{"id": {id}}}"#))]).await.unwrap();
    }
    let ws = crate::support::password_workspace();
    let pipeline = |password: &str, ca: &str| {
        format!(
            r#"
sources:
  entries: {{ type: redis, url: "rediss://127.0.0.1:6380", password: {{ file: {password} }}, tls: {{ ca_file: "{ca}" }}, stream: {stream}, group: weir, schema: {{ id: int64 }} }}
sinks:
  hashes: {{ type: redis, inputs: [entries], url: "rediss://127.0.0.1:6380", password: {{ file: {password} }}, tls: {{ ca_file: "{ca}" }}, command: hset, key: "{stream}:{{id}}" }}
"#
        )
    };
    let err = ws.run(&pipeline("wrong", &ca)).await.unwrap_err();
    assert!(!err.contains("not-the-password") && err.to_lowercase().contains("pass"), "{err}");
    let err = ws.run(&pipeline("right", &crate::support::tls_file("other-ca.pem"))).await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let running = ws.start(&pipeline("right", &ca));
    eventually(20, "every entry written back as a hash", async || {
        let keys: Vec<String> = redis.keys(format!("{stream}:*")).await.unwrap();
        keys.len() == 50
    })
    .await;
    running.stop().await.unwrap();
    let hash: std::collections::HashMap<String, String> = redis.hgetall(format!("{stream}:42")).await.unwrap();
    assert_eq!(hash.get("id").map(String::as_str), Some("42"));
}
