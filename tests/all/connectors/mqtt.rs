//! `mqtt`: QoS 1 source with manual acks and persistent sessions, and the QoS 1 sink.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::support::{Workspace, eventually, sorted_ids, unique};

/// A test client: publishes through `AsyncClient`, received publishes arrive on the channel.
async fn client(id: &str, clean: bool) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    let mut options = MqttOptions::new(id, "127.0.0.1", 1883);
    options.set_clean_session(clean);
    client_with(options).await
}

/// [`client`] with options of the test's own (another port, credentials, packet size).
async fn client_with(mut options: MqttOptions) -> (AsyncClient, mpsc::UnboundedReceiver<rumqttc::Publish>) {
    options.set_keep_alive(Duration::from_secs(10)).set_inflight(1000);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    let (sender, receiver) = mpsc::unbounded_channel();
    let (connected, ready) = tokio::sync::oneshot::channel();
    let mut connected = Some(connected);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(connected) = connected.take() {
                        let _ = connected.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let _ = sender.send(publish);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(err) => panic!("test MQTT client: {err}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready).await.expect("Mosquitto on 1883").unwrap();
    (client, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_topics_with_wildcards_arrive_with_the_topic_column() {
    let root = unique("plant");
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  readings:
    type: mqtt
    url: mqtt://127.0.0.1:1883
    topics: ["{root}/+/temp"]
    qos: 1
    schema: {{ id: int64, temp: float64 }}
    metadata: {{ topic: topic }}
sinks:
  out: {{ type: file, inputs: [readings], path: out.jsonl }}
settings: {{ batch_size: 50 }}
"#
    ));
    // The subscription is in place once a probe message makes it through.
    let (publisher, _) = client(&unique("pub"), true).await;
    eventually(10, "the subscription", async || {
        publisher.publish(format!("{root}/probe/temp"), QoS::AtLeastOnce, false, r#"{"id": 0}"#).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        !ws.rows("out.jsonl").is_empty()
    })
    .await;
    for id in 1..=500 {
        let topic = format!("{root}/line{}/temp", id % 4);
        publisher.publish(topic, QoS::AtLeastOnce, false, format!(r#"{{"id": {id}, "temp": 21.5}}"#)).await.unwrap();
    }
    publisher.publish(format!("{root}/other/humidity"), QoS::AtLeastOnce, false, r#"{"id": -1}"#).await.unwrap();
    eventually(20, "500 readings", async || ws.rows("out.jsonl").iter().filter(|r| r["id"] != 0).count() >= 500).await;
    running.stop().await.unwrap();
    let rows: Vec<_> = ws.rows("out.jsonl").into_iter().filter(|r| r["id"] != 0).collect();
    assert_eq!(sorted_ids(&rows), (1..=500).collect::<Vec<_>>(), "no filtered-out topic, nothing lost or doubled");
    let row = rows.iter().find(|r| r["id"] == 7).unwrap();
    assert_eq!(row["topic"], format!("{root}/line3/temp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_receives_what_was_published_while_the_job_was_down() {
    let root = unique("fleet");
    let client_id = unique("weir-fleet");
    let pipeline = format!(
        r#"
sources:
  readings:
    type: mqtt
    url: mqtt://127.0.0.1:1883
    topics: ["{root}/#"]
    client_id: {client_id}
    clean_session: false
    schema: {{ id: int64 }}
sinks:
  out: {{ type: file, inputs: [readings], path: out.jsonl }}
"#
    );
    let (publisher, _) = client(&unique("pub"), true).await;
    // First run: subscribe (the broker keeps the session), receive id 1, stop.
    let ws = Workspace::new();
    let running = ws.start(&pipeline);
    eventually(10, "the first message", async || {
        publisher.publish(format!("{root}/a"), QoS::AtLeastOnce, false, r#"{"id": 1}"#).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        !ws.rows("out.jsonl").is_empty()
    })
    .await;
    running.stop().await.unwrap();
    // While the job is down.
    for id in 100..200 {
        publisher.publish(format!("{root}/b"), QoS::AtLeastOnce, false, format!(r#"{{"id": {id}}}"#)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ws2 = Workspace::new();
    let running = ws2.start(&pipeline);
    eventually(20, "the queued messages", async || ws2.rows("out.jsonl").len() >= 100).await;
    running.stop().await.unwrap();
    let ids: Vec<i64> = sorted_ids(&ws2.rows("out.jsonl")).into_iter().filter(|&id| id >= 100).collect();
    assert_eq!(ids, (100..200).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_publishes_with_qos1_to_templated_topics() {
    let root = unique("alerts");
    let (subscriber, mut received) = client(&unique("sub"), true).await;
    subscriber.subscribe(format!("{root}/#"), QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 400, columns: {{ id: {{ sequence: {{ start: 1 }} }}, site: {{ choice: [a, b, c] }} }} }}
sinks:
  alerts: {{ type: mqtt, inputs: [gen], url: mqtt://127.0.0.1:1883, topic: "{root}/{{site}}", qos: 1 }}
"#
    ))
    .await
    .unwrap();
    let mut ids = Vec::new();
    while ids.len() < 400 {
        let publish = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.unwrap().unwrap();
        let row: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
        assert_eq!(publish.topic, format!("{root}/{}", row["site"].as_str().unwrap()));
        ids.push(row["id"].as_i64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=400).collect::<Vec<_>>());
}

/// Issue 19 (7): with a sink that confirms late (Parquet rolled every 10 s), the source held
/// Mosquitto's window (20 in flight) full, the broker queued and then discarded the rest
/// (1,020 of 3,000 readings arrived) and weir said nothing. It must report how many messages it
/// holds unacknowledged and warn when the window stays full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holding_acknowledgements_past_the_brokers_window_is_reported() {
    let root = unique("window");
    let ws = Workspace::new();
    let file = ws.write(
        "pipeline.yaml",
        format!(
            r#"
sources:
  readings: {{ type: mqtt, url: mqtt://127.0.0.1:1883, topics: ["{root}/#"], qos: 1, schema: {{ id: int64 }} }}
sinks:
  archive: {{ type: file, inputs: [readings], path: out/raw.parquet, format: parquet, roll: {{ max_age: 30s }} }}
settings: {{ batch_size: 50 }}
"#
        ),
    );
    let summary = ws.path("summary.json");
    let child = crate::support::weir()
        .args(["run", "--quiet", "--no-admin", "--summary-json"])
        .arg(&summary)
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (publisher, _) = client(&unique("pub"), true).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the job subscribes
    for id in 1..=600 {
        publisher
            .publish(format!("{root}/d{}", id % 7), QoS::AtLeastOnce, false, format!(r#"{{"id": {id}}}"#))
            .await
            .unwrap();
        if id % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    crate::support::signal(child.id(), libc::SIGTERM);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("an MQTT broker discards messages beyond its window"), "warned: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let readings = &report["components"][0];
    assert!(
        readings["peak_unacknowledged_events"].as_u64().unwrap() >= 20,
        "the gauge saw the full window: {readings}"
    );
}

/// Issue 19 (8): a message above the 16 MiB packet limit broke the connection; with a persistent
/// session the broker sent it again forever (the message before it was written 189 times in
/// 30 s, nothing after it arrived). It is a bad record under `on_error`, dead-lettered with its
/// topic, and the messages after it arrive once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_dead_lettered_and_the_stream_goes_on() {
    let root = unique("big");
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  readings:
    type: mqtt
    url: mqtt://127.0.0.1:1883
    topics: ["{root}/#"]
    client_id: {client}
    clean_session: false
    max_message_size: 1MiB
    schema: {{ id: int64 }}
    on_error: dead-letter
    dead_letter: bad
sinks:
  out: {{ type: file, inputs: [readings], path: out.jsonl }}
  bad: {{ type: file, path: bad.jsonl }}
settings: {{ batch_size: 10 }}
"#,
        client = unique("weir-big")
    ));
    let mut options = MqttOptions::new(unique("pub"), "127.0.0.1", 1883);
    options.set_max_packet_size(64 << 20, 64 << 20);
    let (publisher, _) = client_with(options).await;
    eventually(10, "the subscription", async || {
        publisher.publish(format!("{root}/probe"), QoS::AtLeastOnce, false, r#"{"id": 0}"#).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        !ws.rows("out.jsonl").is_empty()
    })
    .await;
    publisher.publish(format!("{root}/a"), QoS::AtLeastOnce, false, r#"{"id": 1}"#).await.unwrap();
    let huge = format!(r#"{{"id": 2, "pad": "{}"}}"#, "x".repeat(17 << 20));
    publisher.publish(format!("{root}/huge"), QoS::AtLeastOnce, false, huge).await.unwrap();
    publisher.publish(format!("{root}/b"), QoS::AtLeastOnce, false, r#"{"id": 3}"#).await.unwrap();
    eventually(30, "the message after the big one", async || ws.rows("out.jsonl").iter().any(|r| r["id"] == 3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await.unwrap();
    let ids: Vec<i64> = sorted_ids(&ws.rows("out.jsonl")).into_iter().filter(|&id| id > 0).collect();
    assert_eq!(ids, vec![1, 3], "each message once, the oversized one not among them");
    let bad = ws.rows("bad.jsonl");
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0]["position"].as_str().unwrap().contains(&format!("{root}/huge")), "{}", bad[0]);
    assert!(bad[0]["error"].as_str().unwrap().contains("max_message_size"), "{}", bad[0]);
}

/// Issue 19 (20): `mqtt://user:pass@host` passed validation and then failed `NotAuthorized`:
/// there was no user name or password. The Mosquitto on 1884 (tests/services.sh) requires them;
/// the password comes from a file the pipeline names and never shows up in an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_secret_file_reach_a_broker_that_requires_them() {
    let root = unique("auth");
    let ws = Workspace::new();
    ws.write("mqtt-password", "weir-secret\n");
    let pipeline = |secret: &str| {
        format!(
            r#"
sources:
  readings: {{ type: mqtt, url: mqtt://127.0.0.1:1884, topics: ["{root}/#"], username: weir, password: {{ file: {secret} }}, schema: {{ id: int64 }} }}
sinks:
  out: {{ type: file, inputs: [readings], path: out.jsonl }}
  relay: {{ type: mqtt, inputs: [readings], url: mqtt://127.0.0.1:1884, topic: "{root}-relayed/x", username: weir, password: {{ file: {secret} }} }}
"#
        )
    };
    let refused = Workspace::new();
    refused.write("wrong-password", "not-the-password\n");
    let err = refused.run(&pipeline("wrong-password")).await.unwrap_err();
    assert!(!err.contains("not-the-password"), "the password is never shown: {err}");
    assert!(err.to_lowercase().contains("auth") || err.contains("refused"), "{err}");

    let running = ws.start(&pipeline("mqtt-password"));
    let mut options = MqttOptions::new(unique("pub"), "127.0.0.1", 1884);
    options.set_credentials("weir", "weir-secret");
    let (publisher, _) = client_with(options).await;
    eventually(20, "a message through the authenticated broker", async || {
        publisher.publish(format!("{root}/a"), QoS::AtLeastOnce, false, r#"{"id": 1}"#).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        !ws.rows("out.jsonl").is_empty()
    })
    .await;
    running.stop().await.unwrap();
    assert!(ws.rows("out.jsonl").iter().all(|row| row["id"] == 1));
}

/// Issue 19 (20): MQTT had no TLS. The Mosquitto with passwords also listens on 8884 with TLS only,
/// with a certificate the test authority signed (tests/services.sh); both listeners are one
/// broker. weir reads and relays through `mqtts://` while the test publishes and subscribes in
/// plain text on 1884. Trusting another authority fails on the certificate, before any data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_broker_with_a_private_authority_and_a_wrong_authority_is_refused() {
    let root = unique("tls");
    let ws = Workspace::new();
    ws.write("mqtt-password", "weir-secret\n");
    let pipeline = |ca: &str| {
        format!(
            r#"
sources:
  readings: {{ type: mqtt, url: "mqtts://127.0.0.1:8884", topics: ["{root}/#"], username: weir, password: {{ file: mqtt-password }}, tls: {{ ca_file: "{ca}" }}, schema: {{ id: int64 }} }}
sinks:
  out: {{ type: file, inputs: [readings], path: out.jsonl }}
  relay: {{ type: mqtt, inputs: [readings], url: "mqtts://127.0.0.1:8884", topic: "{root}-relayed/x", username: weir, password: {{ file: mqtt-password }}, tls: {{ ca_file: "{ca}" }} }}
"#
        )
    };
    // A workspace of its own: a failed run leaves its (empty) output file behind.
    let refused = Workspace::new();
    refused.write("mqtt-password", "weir-secret\n");
    let err = refused.run(&pipeline(&crate::support::tls_file("other-ca.pem"))).await.unwrap_err();
    assert!(err.contains("8884") && err.to_lowercase().contains("certificate"), "{err}");

    let mut options = MqttOptions::new(unique("plain"), "127.0.0.1", 1884);
    options.set_credentials("weir", "weir-secret");
    let (plain, mut relayed) = client_with(options).await;
    plain.subscribe(format!("{root}-relayed/#"), QoS::AtLeastOnce).await.unwrap();
    let running = ws.start(&pipeline(&crate::support::tls_file("ca.pem")));
    let mut id = 0;
    eventually(20, "a message in through TLS", async || {
        id += 1;
        plain.publish(format!("{root}/a"), QoS::AtLeastOnce, false, format!(r#"{{"id": {id}}}"#)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        !ws.rows("out.jsonl").is_empty()
    })
    .await;
    let message = tokio::time::timeout(Duration::from_secs(10), relayed.recv()).await.expect("relayed through TLS");
    let relayed: serde_json::Value = serde_json::from_slice(&message.unwrap().payload).unwrap();
    assert!(relayed["id"].as_i64().is_some_and(|id| id >= 1), "{relayed}");
    running.stop().await.unwrap();
}
