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

/// Issue 19 (14): bodies were read whole before the endpoint answered 429 or 413 (300 clients
/// posting 4 MB drove memory to 984 MB), and under the default `on_error: fail` one client's bad
/// record stopped the job for every client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_big_bodies_stays_bounded_and_a_bad_record_is_the_senders_error() {
    let port = free_port();
    let ws = Workspace::new();
    let file = ws.write(
        "pipeline.yaml",
        format!(
            r#"
sources:
  events: {{ type: http, listen: 127.0.0.1:{port}, max_body: 8MiB, schema: {{ id: int64, pad: string }} }}
sinks:
  out: {{ type: blackhole, inputs: [events] }}
"#
        ),
    );
    let mut child = crate::support::weir()
        .args(["run", "--quiet", "--no-admin"])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_listener(port).await;
    let url = format!("http://127.0.0.1:{port}/ingest");
    let client = reqwest::Client::new();

    // One client's bad record is its own 400, naming the record; everyone else goes on.
    let bad = client
        .post(&url)
        .body("{\"id\": 1, \"pad\": \"a\"}\n{\"id\": \"two\", \"pad\": \"b\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("record 2"), "names the record");
    let good = client.post(&url).body("{\"id\": 3, \"pad\": \"c\"}\n").send().await.unwrap();
    assert_eq!(good.status(), 200, "the job still serves other clients");

    // A declared length above the limit is refused before the body is read.
    let declared = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let head = format!("POST /ingest HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\n\r\n", 64_u64 << 20);
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 64];
        let read = socket.read(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    };
    let declared = tokio::time::timeout(Duration::from_secs(10), declared).await.expect("answered without the body");
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");

    // 300 clients posting 4 MB at once.
    let line = format!("{{\"id\": 7, \"pad\": \"{}\"}}\n", "x".repeat(200));
    let body = bytes::Bytes::from(line.repeat((4 << 20) / line.len()));
    let posts: Vec<_> = (0..300)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move { client.post(&url).body(body).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for post in posts {
        *statuses.entry(post.await.unwrap().unwrap_or(0)).or_insert(0) += 1;
    }
    let peak = crate::support::peak_rss_kib(child.id());
    crate::support::signal(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    eprintln!("answers to 300 concurrent 4 MB posts: {statuses:?}; weir peaked at {} MiB", peak / 1024);
    assert!(status.success(), "the job ends cleanly: {status:?}");
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "a crowd gets 429s: {statuses:?}");
    assert!(peak < 400 * 1024, "peak RSS {} MiB for 300 concurrent 4 MB bodies", peak / 1024);
}
