//! A service that is not there: the job fails at start, within a bounded time, with an error
//! that names the connector, the address and the cause.

use std::time::{Duration, Instant};

use crate::support::Workspace;

async fn start_error(yaml: &str) -> String {
    let ws = Workspace::new();
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(30), ws.run(yaml))
        .await
        .expect("gives up within 30 s")
        .expect_err("cannot start without its service");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_network_connector_names_what_it_could_not_reach() {
    let source = "gen: { type: generator, count: 1, columns: { id: { sequence: {} } } }";
    let cases = [
        (
            "postgres at 127.0.0.1:1/test",
            r#"{ type: postgres, inputs: [gen], url: "postgres://postgres@127.0.0.1:1/test", table: t }"#,
        ),
        (
            "mysql at 127.0.0.1:1/test",
            r#"{ type: mysql, inputs: [gen], url: "mysql://root@127.0.0.1:1/test", table: t }"#,
        ),
        ("redis at 127.0.0.1:1", r#"{ type: redis, inputs: [gen], url: "redis://127.0.0.1:1", command: set, key: k }"#),
        ("nats at nats://127.0.0.1:1", r#"{ type: nats, inputs: [gen], url: "nats://127.0.0.1:1", subject: s }"#),
        ("mqtt at 127.0.0.1:1", r#"{ type: mqtt, inputs: [gen], url: "mqtt://127.0.0.1:1", topic: t }"#),
        (
            "amqp at 127.0.0.1:1/",
            r#"{ type: amqp, inputs: [gen], url: "amqp://guest:guest@127.0.0.1:1/%2f", routing_key: q }"#,
        ),
        ("kafka at 127.0.0.1:1", r#"{ type: kafka, inputs: [gen], brokers: "127.0.0.1:1", topic: t }"#),
    ];
    for (expected, sink) in cases {
        let error = start_error(&format!("sources:\n  {source}\nsinks:\n  out: {sink}\n")).await;
        assert!(error.contains(expected) && error.contains("cannot connect"), "expected `{expected}` in: {error}");
    }
    let error = start_error(
        "sources:\n  s: { type: kafka, brokers: \"127.0.0.1:1\", topics: [t], group: g, schema: { id: int64 } }\nsinks:\n  out: { type: blackhole, inputs: [s] }\n",
    )
    .await;
    assert!(error.contains("kafka at 127.0.0.1:1"), "{error}");
}
