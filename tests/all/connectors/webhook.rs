//! `webhook` sink against a local HTTP server: retries with backoff, final failures to the dead
//! letter sink, the circuit breaker, templated bodies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;

use crate::support::{Workspace, json_lines};

/// What the test server saw, and how it answers: the first `fail_first` requests get 503.
#[derive(Default)]
pub struct Hook {
    pub bodies: Mutex<Vec<String>>,
    pub fail_first: usize,
    pub delay: Duration,
    pub status: Option<StatusCode>,
}

/// Serves `hook` on a free port; returns `http://127.0.0.1:port`.
pub async fn serve(hook: Arc<Hook>) -> String {
    async fn receive(State(hook): State<Arc<Hook>>, body: String) -> StatusCode {
        tokio::time::sleep(hook.delay).await;
        let mut bodies = hook.bodies.lock().unwrap();
        bodies.push(body);
        if bodies.len() <= hook.fail_first {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        hook.status.unwrap_or(StatusCode::OK)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", axum::routing::post(receive)).with_state(hook);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_transient_failures_and_renders_the_body_template() {
    let hook = Arc::new(Hook { fail_first: 3, ..Default::default() });
    let url = serve(Arc::clone(&hook)).await;
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 5, columns: {{ id: {{ sequence: {{ start: 1 }} }}, note: {{ choice: ['say "hi"'] }} }} }}
sinks:
  page: {{ type: webhook, inputs: [gen], url: "{url}/hook", body: '{{{{"text": "alert {{id}}: {{note}}"}}}}' }}
"#
    ))
    .await
    .unwrap();
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 8, "3 failed attempts, then 5 deliveries");
    let texts: Vec<String> = bodies[3..]
        .iter()
        .map(|body| serde_json::from_str::<serde_json::Value>(body).unwrap()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts[0], r#"alert 1: say "hi""#);
    assert_eq!(texts.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_failures_go_to_the_dead_letter_sink_and_open_the_circuit() {
    let hook = Arc::new(Hook { status: Some(StatusCode::BAD_REQUEST), ..Default::default() });
    let url = serve(Arc::clone(&hook)).await;
    let ws = Workspace::new();
    ws.run(&format!(
        r#"
sources:
  gen: {{ type: generator, count: 10, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  page:
    type: webhook
    inputs: [gen]
    url: "{url}/hook"
    circuit: {{ failures: 3, cooldown: 1h }}
    on_error: dead-letter
    dead_letter: undelivered
  undelivered: {{ type: file, path: undelivered.jsonl }}
"#
    ))
    .await
    .unwrap();
    // 400 is final (no retry); after 3 failures in a row the circuit opens and the rest are
    // dead-lettered without a request.
    assert_eq!(hook.bodies.lock().unwrap().len(), 3);
    let dead = json_lines(&ws.read("undelivered.jsonl"));
    assert_eq!(dead.len(), 10);
    assert!(dead[0]["error"].as_str().unwrap().contains("400"), "{}", dead[0]);
    assert!(dead[9]["error"].as_str().unwrap().contains("circuit open"), "{}", dead[9]);
}

/// Issue 19 (21): a webhook that never delivered was reported as "2 written". Written counts
/// what reached the destination; rows the endpoint refused are counted as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_endpoint_refused_are_not_counted_as_written() {
    let hook = Arc::new(Hook { status: Some(StatusCode::BAD_REQUEST), ..Default::default() });
    let url = serve(Arc::clone(&hook)).await;
    let ws = Workspace::new();
    let metrics = ws
        .run(&format!(
            r#"
sources:
  gen: {{ type: generator, count: 2, columns: {{ id: {{ sequence: {{ start: 1 }} }} }} }}
sinks:
  page: {{ type: webhook, inputs: [gen], url: "{url}/hook", on_error: skip }}
"#
        ))
        .await
        .unwrap();
    assert_eq!(hook.bodies.lock().unwrap().len(), 2, "both rows were tried");
    let page = crate::support::counters(&metrics, "page");
    assert_eq!((page.sent_events, page.discarded_events), (0, 2), "nothing was written, both were refused");
}
