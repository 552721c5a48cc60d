//! `amqp` (RabbitMQ): queue consumer with manual acks, a connection closed by the broker, and the
//! sink with publisher confirms.

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::support::{Workspace, eventually, sorted_ids, unique};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

async fn channel() -> Channel {
    let connection = Connection::connect(URL, ConnectionProperties::default()).await.expect("RabbitMQ on 5672");
    let channel = connection.create_channel().await.unwrap();
    std::mem::forget(connection); // lives for the test
    channel
}

async fn declare(channel: &Channel, queue: &str) -> lapin::Queue {
    channel
        .queue_declare(queue.into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap()
}

async fn publish(channel: &Channel, queue: &str, payload: &str) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            payload.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
}

/// Ready plus unacknowledged messages of a queue, through the management-free route: a passive
/// declare reports ready messages; unacknowledged ones come back once the consumer is gone.
async fn ready(channel: &Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions { passive: true, ..Default::default() };
    channel.queue_declare(queue.into(), options, FieldTable::default()).await.unwrap().message_count()
}

fn pipeline(queue: &str) -> String {
    format!(
        r#"
sources:
  orders:
    type: amqp
    url: "{URL}"
    queue: {queue}
    prefetch: 200
    schema: {{ id: int64 }}
    metadata: {{ key: routing_key }}
sinks:
  out: {{ type: file, inputs: [orders], path: out.jsonl }}
settings: {{ batch_size: 100 }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_round_trip_acknowledges_every_delivery() {
    let queue = unique("orders");
    let channel = channel().await;
    declare(&channel, &queue).await;
    for id in 1..=2000 {
        publish(&channel, &queue, &format!(r#"{{"id": {id}}}"#)).await;
    }
    let ws = Workspace::new();
    let running = ws.start(&pipeline(&queue));
    eventually(20, "2000 rows", async || ws.rows("out.jsonl").len() >= 2000).await;
    running.stop().await.unwrap();
    let rows = ws.rows("out.jsonl");
    assert_eq!(sorted_ids(&rows), (1..=2000).collect::<Vec<_>>());
    assert_eq!(rows[0]["key"], queue.as_str());
    // Nothing is left or requeued: every delivery was acknowledged.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(ready(&channel, &queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_broker_is_reopened_and_nothing_is_lost() {
    let queue = unique("flaky");
    let channel = channel().await;
    declare(&channel, &queue).await;
    let ws = Workspace::new();
    let running = ws.start(&pipeline(&queue));
    for id in 1..=300 {
        publish(&channel, &queue, &format!(r#"{{"id": {id}}}"#)).await;
    }
    eventually(20, "the first 300 rows", async || ws.rows("out.jsonl").len() >= 300).await;
    // Close the consumer's connection from the broker's side (only this test's).
    close_consumer_connection(&queue);
    let channel = self::channel().await;
    for id in 301..=600 {
        publish(&channel, &queue, &format!(r#"{{"id": {id}}}"#)).await;
    }
    eventually(30, "all 600 ids after the reconnect", async || {
        let ids = sorted_ids(&ws.rows("out.jsonl"));
        let mut unique_ids = ids.clone();
        unique_ids.dedup();
        unique_ids.len() == 600
    })
    .await;
    running.stop().await.unwrap();
    let ids = sorted_ids(&ws.rows("out.jsonl"));
    let mut unique_ids = ids.clone();
    unique_ids.dedup();
    assert_eq!(unique_ids, (1..=600).collect::<Vec<_>>(), "nothing lost (redeliveries are allowed)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_with_confirms_and_refuses_unroutable_messages() {
    let queue = unique("alerts");
    let channel = channel().await;
    declare(&channel, &queue).await;
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 700, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  out: {{ type: amqp, inputs: [gen], url: "{URL}", routing_key: {queue} }}
"#
    ))
    .await
    .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "check".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < 700 {
        let delivery =
            tokio::time::timeout(std::time::Duration::from_secs(10), consumer.next()).await.unwrap().unwrap().unwrap();
        ids.push(serde_json::from_slice::<serde_json::Value>(&delivery.data).unwrap()["id"].as_i64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=700).collect::<Vec<_>>());

    let error = ws
        .run(&format!(
            r#"
sources:
  gen: {{ type: generator, count: 1, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  out: {{ type: amqp, inputs: [gen], url: "{URL}", routing_key: "{queue}-nobody" }}
"#
        ))
        .await
        .unwrap_err();
    assert!(error.contains("no queue is bound"), "{error}");
}

fn rabbitmqctl(args: &[&str]) -> String {
    let output = std::process::Command::new("rabbitmqctl").arg("-q").args(args).output().expect("rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Finds the connection behind the consumer of `queue` and closes it, as a broker restart or a
/// network failure would.
fn close_consumer_connection(queue: &str) {
    let consumers = rabbitmqctl(&["list_consumers", "queue_name", "channel_pid"]);
    let channel = consumers
        .lines()
        .find_map(|line| line.split_once('\t').filter(|(name, _)| *name == queue).map(|(_, pid)| pid.trim().to_owned()))
        .unwrap_or_else(|| panic!("no consumer on {queue}: {consumers}"));
    let channels = rabbitmqctl(&["list_channels", "pid", "connection"]);
    let connection = channels
        .lines()
        .find_map(|line| {
            line.split_once('\t').filter(|(pid, _)| pid.trim() == channel).map(|(_, c)| c.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no channel {channel}: {channels}"));
    rabbitmqctl(&["close_connection", &connection, "weir test: connection killed"]);
}

/// Issue 19 (20): AMQP had no TLS, and its password could only sit in the URL. The RabbitMQ node
/// on 5673 (tests/services.sh) takes only TLS, with a certificate the test authority signed, and
/// the user `weir`. One pipeline publishes 100 rows and reads them back, both through `amqps://`
/// with the password from a file; a wrong password and a wrong authority fail, without showing
/// the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_from_a_file_for_the_source_and_the_sink() {
    let queue = unique("secured");
    let ca = crate::support::tls_file("ca.pem");
    let tls = lapin::tcp::OwnedTLSConfig { identity: None, cert_chain: Some(std::fs::read_to_string(&ca).unwrap()) };
    let connection = Connection::connect_with_config(
        "amqps://weir:weir-secret@127.0.0.1:5673/%2f",
        ConnectionProperties::default(),
        tls,
        lapin::runtime::default_runtime().unwrap(),
    )
    .await
    .expect("RabbitMQ with TLS on 5673");
    declare(&connection.create_channel().await.unwrap(), &queue).await;
    let (ws, refused) = (crate::support::password_workspace(), crate::support::password_workspace());
    let pipeline = |password: &str, ca: &str| {
        let access = format!(r#"username: weir, password: {{ file: {password} }}, tls: {{ ca_file: "{ca}" }}"#);
        format!(
            r#"
sources:
  gen: {{ type: generator, count: 100, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
  orders: {{ type: amqp, url: "amqps://127.0.0.1:5673/%2f", {access}, queue: {queue}, schema: {{ id: int64 }} }}
sinks:
  published: {{ type: amqp, inputs: [gen], url: "amqps://127.0.0.1:5673/%2f", {access}, routing_key: {queue} }}
  out: {{ type: file, inputs: [orders], path: out.jsonl }}
"#
        )
    };
    // Failed runs in a workspace of their own: they leave their (empty) output file behind.
    let err = refused.run(&pipeline("wrong", &ca)).await.unwrap_err();
    assert!(!err.contains("not-the-password") && err.to_lowercase().contains("refused"), "{err}");
    let err = refused.run(&pipeline("right", &crate::support::tls_file("other-ca.pem"))).await.unwrap_err();
    assert!(err.contains("5673") && err.to_lowercase().contains("certificate"), "{err}");
    let running = ws.start(&pipeline("right", &ca));
    eventually(20, "100 rows through TLS both ways", async || ws.rows("out.jsonl").len() >= 100).await;
    running.stop().await.unwrap();
    assert_eq!(sorted_ids(&ws.rows("out.jsonl")), (1..=100).collect::<Vec<_>>());
}
