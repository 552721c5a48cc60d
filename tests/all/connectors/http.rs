//! `http` push source: JSON lines and arrays, answers only after the sinks confirmed, 413 for
//! oversized bodies, 429 under backpressure.

use std::sync::Arc;
use std::time::Duration;

use crate::connectors::webhook::{Hook, serve};
use crate::support::{Workspace, eventually, free_port, sorted_ids};

async fn wait_for_listener(port: u16) {
    eventually(10, "the ingest endpoint", async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_json_lines_and_arrays_and_rejects_oversized_bodies() {
    let port = free_port();
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  events:
    type: http
    listen: 127.0.0.1:{port}
    max_body: 64KiB
    schema: {{ id: int64 }}
    on_error: dead-letter
    dead_letter: bad
sinks:
  out: {{ type: file, inputs: [events], path: out.jsonl }}
  bad: {{ type: file, path: bad.jsonl }}
"#
    ));
    wait_for_listener(port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let lines: String = (1..=100).map(|id| format!("{{\"id\": {id}}}\n")).collect();
    let response = client.post(&url).body(lines).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"accepted":100}"#);
    // A 200 means the sink already has the rows.
    assert_eq!(ws.rows("out.jsonl").len(), 100);
    let array = format!(
        "[{}, {{\"id\": \"x\"}}]",
        (101..=150).map(|id| format!("{{\"id\": {id}}}")).collect::<Vec<_>>().join(",")
    );
    assert_eq!(client.post(&url).body(array).send().await.unwrap().status(), 200);
    let too_big = "x".repeat(100 * 1024);
    assert_eq!(client.post(&url).body(too_big).send().await.unwrap().status(), 413);
    assert_eq!(client.post(&url).body("[1, 2").send().await.unwrap().status(), 400);
    running.stop().await.unwrap();
    assert_eq!(sorted_ids(&ws.rows("out.jsonl")), (1..=150).collect::<Vec<_>>());
    assert_eq!(ws.rows("bad.jsonl").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_429_when_the_pipeline_is_backed_up() {
    // Every batch goes to a webhook that takes 300 ms: requests pile up behind it.
    let hook = Arc::new(Hook { delay: Duration::from_millis(300), ..Default::default() });
    let hook_url = serve(Arc::clone(&hook)).await;
    let port = free_port();
    let ws = Workspace::new();
    let running = ws.start(&format!(
        r#"
sources:
  events: {{ type: http, listen: 127.0.0.1:{port}, schema: {{ id: int64 }} }}
sinks:
  slow: {{ type: webhook, inputs: [events], url: "{hook_url}/hook", batch: true }}
settings: {{ channel_capacity: 1 }}
"#
    ));
    wait_for_listener(port).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/ingest");
    let requests = (0..30).map(|id| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.post(url).body(format!("{{\"id\": {id}}}")).send().await.unwrap().status() })
    });
    let statuses: Vec<u16> =
        futures::future::join_all(requests).await.into_iter().map(|s| s.unwrap().as_u16()).collect();
    let accepted = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(accepted + refused, 30, "only 200 and 429: {statuses:?}");
    assert!(refused > 0, "backpressure shows as 429: {statuses:?}");
    running.stop().await.unwrap();
    // Everything that got a 200 reached the webhook.
    let delivered: usize = hook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|body| serde_json::from_str::<Vec<serde_json::Value>>(body).unwrap().len())
        .sum();
    assert_eq!(delivered, accepted);
}
