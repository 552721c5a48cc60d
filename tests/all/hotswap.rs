//! Hot swaps of plugins in running jobs: every row exactly once and in order per partition
//! across v1 -> v2 -> v3 (through `weir plugin reload` and the watched plugins directory),
//! broken versions refused or rolled back without losing rows, aggregate state carried over
//! (and a new state version refused), canary and promote, and the admin API's token rules.
//! The `tagger` and `counter` versions are crates under `plugins/hotswap/`.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use weir_engine::metrics::PipelineMetrics;
use weir_engine::runner;
use weir_pipeline::Pipeline;
use weir_plugin::{PluginHandle, SwapError};

use crate::support::{Workspace, counters, eventually, free_port, json_lines, weir};

fn plugin(name: &str) -> std::path::PathBuf {
    let path = crate::support::repo().join("plugins/target/wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run ./tests/run.sh, which builds the plugins", path.display());
    path
}

/// A job started from a loaded pipeline, so the test can reach its plugin registry.
struct Job {
    pipeline: Pipeline,
    metrics: PipelineMetrics,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<PipelineMetrics, String>>,
}

impl Job {
    fn start(ws: &Workspace, yaml: &str) -> Self {
        let pipeline = ws.load(yaml).unwrap_or_else(|err| panic!("{err}"));
        let stop = tokio_util::sync::CancellationToken::new();
        let metrics = runner::metrics_for(&pipeline.graph);
        let (running, counting, token) = (pipeline.clone(), metrics.clone(), stop.clone());
        let task = tokio::spawn(async move {
            runner::run(&running.graph, &counting, token).await.map_err(|err| err.to_string())?;
            Ok(counting)
        });
        Self { pipeline, metrics, stop, task }
    }

    fn plugin(&self, name: &str) -> Arc<PluginHandle> {
        self.pipeline.plugins.get(name).expect("a declared plugin")
    }

    /// Installs a file as the next version, loading off the async workers as the API does.
    async fn install(&self, name: &str, file: &str) -> Result<String, SwapError> {
        let (registry, path) = (Arc::clone(&self.pipeline.plugins), plugin(file));
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || registry.reload(&name, Some(&path), "test").map(|v| v.label()))
            .await
            .expect("no panic")
    }

    async fn stop(self) -> PipelineMetrics {
        self.stop.cancel();
        self.finish().await
    }

    async fn finish(self) -> PipelineMetrics {
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the job ends within 60 s")
            .expect("no panic")
            .unwrap_or_else(|err| panic!("the job failed: {err}"))
    }
}

/// Checks rows `{seq, tag}` from a generator with `partitions` subtasks (subtask k emits
/// k, k + n, ...): per partition, every number from k up to the partition's last exactly once and
/// in order (a stopped job's subtasks may stop a batch apart), and the tags in `expected` order,
/// each as one unbroken run.
fn verify_exactly_once_in_order(rows: &[serde_json::Value], partitions: i64, expected: &[&str]) {
    let mut next: HashMap<i64, i64> = HashMap::new();
    let mut runs: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        let seq = row["seq"].as_i64().expect("seq");
        let tag = row["tag"].as_str().expect("tag").to_owned();
        let partition = seq % partitions;
        let wanted = next.entry(partition).or_insert(partition);
        assert!(seq >= *wanted, "partition {partition}: {seq} arrived twice or out of order (expected {wanted})");
        assert_eq!(seq, *wanted, "partition {partition}: a row is missing before {seq}");
        *wanted += partitions;
        let tags = runs.entry(partition).or_default();
        if tags.last() != Some(&tag) {
            tags.push(tag);
        }
    }
    for (partition, tags) in runs {
        assert_eq!(tags, expected, "partition {partition}: the tag switches once per swap, never back");
    }
}

fn wait_for_exit(mut child: Child, seconds: u64) -> std::process::Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    while child.try_wait().expect("waitable").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir did not end within {seconds}s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn swaps_under_load_keep_every_row_exactly_once_and_in_order() {
    let ws = Workspace::new();
    let watched = ws.path("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let rows = 1_200_000;
    let file = ws.write(
        "swap.yaml",
        format!(
            r#"
settings: {{ batch_size: 1024 }}
plugins:
  tagger: {{ path: {} }}
sources:
  numbers: {{ type: generator, count: {rows}, rate: 150000, parallelism: 2, columns: {{ seq: {{ sequence: {{}} }} }} }}
transforms:
  tagged: {{ type: udf, inputs: [numbers], plugin: tagger, function: tag, args: [seq], as: tag, parallelism: 2, on_error: fail }}
sinks:
  out: {{ type: file, inputs: [tagged], path: out.jsonl }}
"#,
            plugin("tagger_v1").display()
        ),
    );
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let child = weir()
        .args(["run", "--quiet", "--admin", &admin, "--admin-token", "t0ken", "--plugins-dir"])
        .arg(&watched)
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tags_written = |tag: &str| ws.rows("out.jsonl").iter().filter(|row| row["tag"] == tag).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tags_written("v1") < 50_000 {
        assert!(std::time::Instant::now() < deadline, "no v1 rows written");
        std::thread::sleep(Duration::from_millis(50));
    }
    // v1 -> v2 through the CLI and the admin API.
    let reload = weir()
        .args(["plugin", "reload", "tagger", "--admin", &admin, "--token", "t0ken"])
        .arg(plugin("tagger_v2"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&reload.stdout);
    assert!(reload.status.success(), "{}", String::from_utf8_lossy(&reload.stderr));
    assert!(said.contains("now serving 2.0.0+"), "{said}");
    while tags_written("v2") < 50_000 {
        assert!(std::time::Instant::now() < deadline, "no v2 rows written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let list = weir().args(["plugin", "list", "--json", "--admin", &admin, "--token", "t0ken"]).output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    // v2 -> v3 by writing a file into the watched directory.
    std::fs::copy(plugin("tagger_v3"), watched.join("tagger.wasm")).unwrap();
    let output = wait_for_exit(child, 60);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let written = json_lines(&ws.read("out.jsonl"));
    assert_eq!(written.len(), rows, "every generated row is written once");
    verify_exactly_once_in_order(&written, 2, &["v1", "v2", "v3"]);
    assert!(stderr.contains("tagger"), "the swaps are logged: {stderr}");
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(listed[0]["name"], "tagger");
    assert_eq!(listed[0]["swaps"], 1, "the list was taken after the first swap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_refused_or_rolled_back_without_losing_rows() {
    let ws = Workspace::new();
    let job = Job::start(
        &ws,
        &format!(
            r#"
settings: {{ batch_size: 512 }}
plugins:
  tagger: {{ path: {}, rollback: {{ max_traps: 2, window: 30s }} }}
sources:
  numbers: {{ type: generator, rate: 40000, parallelism: 2, columns: {{ seq: {{ sequence: {{}} }} }} }}
transforms:
  tagged: {{ type: udf, inputs: [numbers], plugin: tagger, function: tag, args: [seq], as: tag, parallelism: 2, on_error: fail }}
sinks:
  out: {{ type: file, inputs: [tagged], path: out.jsonl }}
"#,
            plugin("tagger_v1").display()
        ),
    );
    let tagger = job.plugin("tagger");
    let v1 = tagger.current().label();
    eventually(20, "v1 rows", async || ws.rows("out.jsonl").len() > 5_000).await;

    let refused = job.install("tagger", "tagger_bad_signature").await.expect_err("a wrong signature is refused");
    let message = refused.to_string();
    assert!(message.contains("`tag`") && message.contains("Utf8") && message.contains("Int64"), "{message}");
    let refused = job.install("tagger", "tagger_huge_memory").await.expect_err("it cannot be instantiated");
    assert!(refused.to_string().contains("instantiated"), "{refused}");
    assert_eq!(tagger.current().label(), v1, "v1 keeps serving");
    assert_eq!(tagger.stats.refused.load(std::sync::atomic::Ordering::Relaxed), 2, "both refusals are counted");

    let installed = job.install("tagger", "tagger_traps").await.expect("a trapping version is compatible");
    assert!(installed.starts_with("2.0.0-traps+"), "{installed}");
    eventually(20, "the automatic rollback", async || tagger.current().label() == v1).await;
    assert_eq!(tagger.stats.automatic_rollbacks.load(std::sync::atomic::Ordering::Relaxed), 1);
    let before = ws.rows("out.jsonl").len();
    eventually(20, "rows after the rollback", async || ws.rows("out.jsonl").len() > before + 5_000).await;

    let metrics = job.stop().await;
    let rows = json_lines(&ws.read("out.jsonl"));
    assert_eq!(counters(&metrics, "tagged").errors, 0, "no row reached the error policy");
    assert_eq!(counters(&metrics, "numbers").sent_events, rows.len() as u64, "every row is written");
    verify_exactly_once_in_order(&rows, 2, &["v1"]);
    let events: Vec<String> = tagger.events().iter().map(|e| e.action.clone()).collect();
    assert_eq!(events, ["refused", "refused", "swap", "automatic-rollback"], "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_state_carries_over_a_swap_and_a_new_state_version_is_refused() {
    let ws = Workspace::new();
    let per_key = 60_000;
    let job = Job::start(
        &ws,
        &format!(
            r#"
settings: {{ batch_size: 1000 }}
plugins:
  counter: {{ path: {} }}
sources:
  numbers: {{ type: generator, count: {}, rate: 80000, columns: {{ seq: {{ sequence: {{}} }} }} }}
transforms:
  keyed: {{ type: select, inputs: [numbers], columns: [seq, "seq % 4 AS key"] }}
  totals: {{ type: aggregate, inputs: [keyed], group_by: [key], aggregates: {{ n: "count_rows(seq)" }}, parallelism: 2 }}
sinks:
  out: {{ type: file, inputs: [totals], path: out.jsonl }}
"#,
            plugin("counter_v1").display(),
            per_key * 4
        ),
    );
    eventually(20, "running counts", async || ws.rows("out.jsonl").len() > 20).await;
    let refused = job.install("counter", "counter_v2").await.expect_err("state version 2 cannot read version 1 state");
    assert!(refused.to_string().contains("state version 2"), "{refused}");
    job.install("counter", "counter_v1_scaled").await.expect("the same state version is accepted");
    let metrics = job.finish().await;
    assert_eq!(counters(&metrics, "totals").errors, 0);
    let rows = json_lines(&ws.read("out.jsonl"));
    let mut last: HashMap<i64, i64> = HashMap::new();
    for row in &rows {
        last.insert(row["key"].as_i64().unwrap(), row["n"].as_i64().unwrap());
    }
    let expected: HashMap<i64, i64> = (0..4).map(|key| (key, per_key * 1000)).collect();
    assert_eq!(last, expected, "counts kept across the swap, finished by the new version");
    assert!(rows.iter().any(|row| row["n"].as_i64().unwrap() < 1000), "updates before the swap came from v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_canary_compares_and_promote_swaps() {
    let ws = Workspace::new();
    let job = Job::start(
        &ws,
        &format!(
            r#"
settings: {{ batch_size: 256 }}
plugins:
  tagger: {{ path: {} }}
sources:
  numbers: {{ type: generator, rate: 20000, columns: {{ seq: {{ sequence: {{}} }} }} }}
transforms:
  tagged: {{ type: udf, inputs: [numbers], plugin: tagger, function: tag, args: [seq], as: tag, parallelism: 1 }}
  in_sql: {{ type: filter, inputs: [numbers], where: "tag(seq) <> ''" }}
sinks:
  out: {{ type: file, inputs: [tagged], path: out.jsonl }}
  checked: {{ type: blackhole, inputs: [in_sql] }}
"#,
            plugin("tagger_v1").display()
        ),
    );
    let context = weir_api::AdminContext::new(&job.pipeline, &job.metrics);
    let stop = tokio_util::sync::CancellationToken::new();
    let address =
        weir_api::serve("127.0.0.1:0".parse().unwrap(), Some("t0ken".into()), context, stop.clone()).await.unwrap();
    let http = reqwest::Client::builder()
        .default_headers(
            [(reqwest::header::AUTHORIZATION, reqwest::header::HeaderValue::from_static("Bearer t0ken"))]
                .into_iter()
                .collect(),
        )
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{address}{path}");

    let health: serde_json::Value = http.get(url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let started = http
        .post(url("/plugins/tagger/canary?sample=1"))
        .json(&serde_json::json!({ "path": plugin("tagger_v2") }))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200, "{}", started.text().await.unwrap());
    let mut report = serde_json::Value::Null;
    eventually(20, "compared rows", async || {
        let answer: serde_json::Value =
            http.get(url("/plugins/tagger/canary")).send().await.unwrap().json().await.unwrap();
        report = answer["canary"].clone();
        report["rows_compared"].as_u64().unwrap_or(0) >= 1000
    })
    .await;
    assert_eq!(report["rows_differing"], report["rows_compared"], "v2 tags every row differently: {report}");
    let example = &report["examples"][0];
    assert_eq!((example["current"].as_str(), example["candidate"].as_str()), (Some("v1"), Some("v2")), "{report}");
    assert!(example["args"].as_str().unwrap().contains("arg1"), "{report}");
    assert!(report["candidate_ns_per_row"].as_f64().unwrap() > 0.0);
    assert!(ws.rows("out.jsonl").iter().all(|row| row["tag"] == "v1"), "the canary's output is never emitted");

    let promoted = http.post(url("/plugins/tagger/promote")).send().await.unwrap();
    assert_eq!(promoted.status(), 200, "{}", promoted.text().await.unwrap());
    eventually(20, "v2 rows", async || ws.rows("out.jsonl").iter().any(|row| row["tag"] == "v2")).await;
    let rolled = http.post(url("/plugins/tagger/rollback")).send().await.unwrap();
    assert_eq!(rolled.status(), 200);
    let listed: serde_json::Value = http.get(url("/plugins")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["current"]["declared_version"], "1.0.0", "{listed}");
    assert_eq!(listed[0]["swaps"], 1);
    assert_eq!(listed[0]["rollbacks"], 1);
    let uses: Vec<(String, bool)> = listed[0]["uses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["user"].as_str().unwrap().to_owned(), u["active"].as_bool().unwrap()))
        .collect();
    assert!(uses.contains(&("transforms.tagged".into(), true)), "{uses:?}");
    assert!(uses.contains(&("SQL expressions".into(), true)), "the filter calls `tag`: {uses:?}");

    // Changes need the token; unknown plugins are 404.
    let upload = reqwest::Client::new()
        .post(url("/plugins/tagger/reload"))
        .header("content-type", "application/wasm")
        .body(std::fs::read(plugin("tagger_v3")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 401);
    assert_eq!(http.post(url("/plugins/nope/rollback")).send().await.unwrap().status(), 404);

    let text = http.get(url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "component_received_events_total{component_id=\"tagged\"",
        "component_sent_events_total",
        "component_errors_total",
        "plugin_calls_total{plugin=\"tagger\",version=\"1.0.0+",
        "plugin_traps_total",
        "plugin_call_seconds_bucket{plugin=\"tagger\"",
        "plugin_swaps_total{plugin=\"tagger\"} 1",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    stop.cancel();
    job.stop().await;
}

#[test]
fn admin_api_off_loopback_requires_a_token() {
    let ws = Workspace::new();
    let file = ws.write(
        "pipe.yaml",
        "sources:\n  g: { type: generator, rate: 100, columns: { id: { sequence: {} } } }\nsinks:\n  out: { type: blackhole, inputs: [g] }\n",
    );
    let port = free_port();
    let refused = weir()
        .args(["run", "--quiet", "--admin", &format!("0.0.0.0:{port}")])
        .arg(&file)
        .env_remove("WEIR_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("token"), "{}", String::from_utf8_lossy(&refused.stderr));

    let mut child = weir()
        .args(["run", "--quiet", "--admin", &format!("0.0.0.0:{port}"), "--admin-token", "s3cret"])
        .arg(&file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let statuses = runtime.block_on(async {
        let http = reqwest::Client::new();
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while http.get(url("/health")).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the admin API did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let status = |request: reqwest::RequestBuilder| async move { request.send().await.unwrap().status().as_u16() };
        [
            status(http.get(url("/health"))).await,
            status(http.get(url("/plugins"))).await,
            status(http.get(url("/metrics")).bearer_auth("wrong")).await,
            status(http.post(url("/plugins/x/rollback"))).await,
            status(http.get(url("/pipelines")).bearer_auth("s3cret")).await,
        ]
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(statuses, [200, 401, 401, 401, 200], "health is open; everything else needs the token");
}

/// Issue 19 (18, 19): the admin API read request bodies (up to 256 MiB) before checking the
/// token, accepted a cross-site `text/plain` POST from any web page and any `Host`, reloaded
/// from any path (`/dev/zero` was read past 2 GB, a FIFO hung the request, the answers told
/// whether `/etc/shadow` exists), and kept refused uploads in the cache.
#[test]
fn admin_api_refuses_browsers_strangers_and_paths_outside_the_plugins() {
    let ws = Workspace::new();
    let cache = ws.path("cache");
    let file = ws.write(
        "pipe.yaml",
        format!(
            "plugins:\n  tagger: {{ path: {} }}\nsources:\n  g: {{ type: generator, rate: 100, columns: {{ seq: {{ sequence: {{}} }} }} }}\ntransforms:\n  t: {{ type: udf, inputs: [g], plugin: tagger, function: tag, args: [seq], as: tag }}\nsinks:\n  out: {{ type: blackhole, inputs: [t] }}\n",
            plugin("tagger_v1").display()
        ),
    );
    let watched = ws.path("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let fifo = watched.join("fifo.wasm");
    let fifo_name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo_name.as_ptr(), 0o600) }, 0);
    let start = |token: Option<&str>| {
        let port = free_port();
        let mut command = weir();
        command.args(["run", "--quiet", "--admin", &format!("127.0.0.1:{port}"), "--plugins-dir"]).arg(&watched);
        command.env("WEIR_CACHE_DIR", &cache);
        if let Some(token) = token {
            command.args(["--admin-token", token]);
        }
        let child = command.arg(&file).env_remove("WEIR_ADMIN_TOKEN").stderr(Stdio::null()).spawn().unwrap();
        (child, port)
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let wait_up = |port: u16| {
        let http = http.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_err() {
                assert!(std::time::Instant::now() < deadline, "the admin API did not come up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let status = |request: reqwest::RequestBuilder| async move { request.send().await.unwrap().status().as_u16() };

    // Without a token: read-only, no browsers, no foreign hosts.
    let (mut open, port) = start(None);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let v2 = serde_json::json!({ "path": plugin("tagger_v2") }).to_string();
    let statuses = runtime.block_on(async {
        wait_up(port).await;
        [
            status(http.get(url("/plugins"))).await,
            status(http.post(url("/plugins/tagger/reload")).body(v2.clone())).await,
            status(
                http.post(url("/plugins/tagger/reload"))
                    .header("origin", "http://evil.example")
                    .header("content-type", "text/plain")
                    .body(v2.clone()),
            )
            .await,
            status(http.get(url("/plugins")).header("sec-fetch-mode", "cors")).await,
            status(http.get(url("/plugins")).header("host", "evil.example:8686")).await,
        ]
    });
    let _ = open.kill();
    let _ = open.wait();
    assert_eq!(statuses, [200, 403, 403, 403, 421], "read-only without a token; browsers and foreign hosts refused");

    // With a token: nothing is read before the token is checked; paths stay in the plugins' folder.
    let (mut guarded, port) = start(Some("s3cret"));
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let (big, paths, upload) = runtime.block_on(async {
        wait_up(port).await;
        let mut big = Vec::new();
        for _ in 0..6 {
            let body = vec![b'x'; 250 << 20];
            let answer = http.post(url("/plugins/tagger/reload")).body(body).send().await;
            big.push(answer.map(|r| r.status().as_u16()).unwrap_or(0));
        }
        let mut paths = Vec::new();
        for path in ["/dev/zero".into(), "/etc/shadow".into(), "/no/such/file.wasm".into(), fifo.clone()] {
            let answer = http
                .post(url("/plugins/tagger/reload"))
                .bearer_auth("s3cret")
                .json(&serde_json::json!({ "path": path }))
                .send()
                .await
                .unwrap();
            let code = answer.status().as_u16();
            let text: serde_json::Value = answer.json().await.unwrap();
            let reason = text["error"].as_str().unwrap().replace(&path.display().to_string(), "<path>");
            paths.push((code, reason));
        }
        let mut junk = b"\0asm".to_vec();
        junk.extend_from_slice(&[7; 1000]);
        let upload = status(
            http.post(url("/plugins/tagger/reload"))
                .bearer_auth("s3cret")
                .header("content-type", "application/wasm")
                .body(junk),
        )
        .await;
        (big, paths, upload)
    });
    let peak = crate::support::peak_rss_kib(guarded.id());
    let _ = guarded.kill();
    let _ = guarded.wait();
    assert!(big.iter().all(|&code| code == 401 || code == 0), "unauthenticated bodies refused: {big:?}");
    assert!(peak < 400 * 1024, "six unauthenticated 250 MB bodies left weir at {} MiB", peak / 1024);
    assert!(paths.iter().all(|(code, _)| *code == 422), "{paths:?}");
    assert!(paths.windows(2).all(|pair| pair[0].1 == pair[1].1), "one answer for every refused path: {paths:?}");
    assert_eq!(upload, 422, "junk is not a component");
    let kept: Vec<_> = std::fs::read_dir(cache.join("uploads")).map(|dir| dir.collect()).unwrap_or_default();
    assert!(kept.is_empty(), "a refused upload is not kept: {kept:?}");
}
