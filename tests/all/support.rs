//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

use weir_engine::metrics::PipelineMetrics;
use weir_engine::runner;
use weir_pipeline::{Pipeline, PipelineError};

/// A temporary directory holding a pipeline file and its inputs and outputs.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_else(|err| panic!("reading {name}: {err}"))
    }

    /// Writes `pipeline.yaml` and loads it.
    pub fn load(&self, yaml: &str) -> Result<Pipeline, PipelineError> {
        weir_pipeline::load(&self.write("pipeline.yaml", yaml), &weir_cli::registry())
    }

    /// Loads and runs a pipeline to completion.
    pub async fn run(&self, yaml: &str) -> Result<PipelineMetrics, String> {
        let pipeline = self.load(yaml).map_err(|err| err.to_string())?;
        let metrics = runner::metrics_for(&pipeline.graph);
        runner::run(&pipeline.graph, &metrics, tokio_util::sync::CancellationToken::new())
            .await
            .map_err(|err| err.to_string())?;
        Ok(metrics)
    }
}

/// The repository root (examples, plugins).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A workspace holding the secured services' password in `right` and another in `wrong`, for
/// pipelines that read `password: { file: right }`.
pub fn password_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("right", "weir-secret\n");
    ws.write("wrong", "not-the-password\n");
    ws
}

/// A file of the TLS material `tests/services.sh` made for the secured services (`ca.pem`, the
/// authority that signed their certificates; `other-ca.pem`, one that signed nothing of theirs).
pub fn tls_file(name: &str) -> String {
    repo().join("target/services/tls").join(name).display().to_string()
}

/// The `weir` binary, with the caller's `RUST_LOG` removed.
pub fn weir() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_weir"));
    command.env_remove("RUST_LOG");
    command
}

/// Sends `signal` (`libc::SIGTERM`, `SIGINT`, `SIGKILL`) to the child process `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: `kill` with a pid of a child this test started; no memory is involved.
    let sent = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(sent, 0, "signal {signal} to {pid}: {}", std::io::Error::last_os_error());
}

/// Peak resident set of a running process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Counter of one component.
pub fn counters(metrics: &PipelineMetrics, name: &str) -> weir_engine::metrics::MetricsSnapshot {
    metrics.components.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no component {name}")).2.snapshot()
}

/// Parses JSON lines.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Every row of every JSON-lines file (`.jsonl`) in `dir` whose name starts with `prefix`: the parts a file
/// sink wrote over several runs (`out.jsonl`, `out-00001.jsonl`, ...; completed files only).
pub fn json_rows_of_files(dir: &Path, prefix: &str) -> Vec<serde_json::Value> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(prefix) && name.ends_with(".jsonl"))
        .collect();
    names.sort();
    names.iter().flat_map(|name| json_lines(&std::fs::read_to_string(dir.join(name)).unwrap())).collect()
}

/// Compares output lines with a golden file, ignoring order. `WEIR_BLESS=1` rewrites the file.
pub fn assert_golden_unordered(golden: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(golden);
    let mut actual_lines: Vec<&str> = actual.lines().collect();
    actual_lines.sort_unstable();
    let sorted = actual_lines.join("\n") + "\n";
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&path, &sorted).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("golden file {}: {err} (WEIR_BLESS=1 creates it)", path.display()));
    if expected != sorted {
        let first_difference = expected.lines().zip(sorted.lines()).position(|(a, b)| a != b);
        panic!(
            "output differs from {} ({} expected lines, {} actual); first difference at sorted line {:?}",
            path.display(),
            expected.lines().count(),
            sorted.lines().count(),
            first_difference
        );
    }
}

/// A pipeline running in the background until [`Running::stop`].
pub struct Running {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<PipelineMetrics, String>>,
}

impl Workspace {
    /// Loads `yaml` and starts running it in the background.
    pub fn start(&self, yaml: &str) -> Running {
        let pipeline = self.load(yaml).unwrap_or_else(|err| panic!("{err}"));
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let metrics = runner::metrics_for(&pipeline.graph);
            runner::run(&pipeline.graph, &metrics, token).await.map_err(|err| err.to_string())?;
            Ok(metrics)
        });
        Running { stop, task }
    }

    /// Rows of a JSON-lines output file written so far: the complete file, or while the job runs
    /// the file sink's in-progress file (`.name.inprogress`, flushed at least once a second while
    /// sources wait for confirmation), whose last line may still be half written and is then left
    /// out. Empty if neither exists yet.
    pub fn rows(&self, name: &str) -> Vec<serde_json::Value> {
        let in_progress = self.path(&format!(".{name}.inprogress"));
        std::fs::read_to_string(self.path(name))
            .or_else(|_| std::fs::read_to_string(in_progress))
            .map(|text| {
                let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
                json_lines(complete)
            })
            .unwrap_or_default()
    }
}

impl Running {
    /// Stops the job (like Ctrl-C) and waits for it to drain.
    pub async fn stop(self) -> Result<PipelineMetrics, String> {
        self.stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(60), self.task)
            .await
            .expect("the job stops within 60 s")
            .expect("the job task does not panic")
    }

    /// Waits for the job to end on its own.
    pub async fn finish(self) -> Result<PipelineMetrics, String> {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.task)
            .await
            .expect("the job ends within 60 s")
            .expect("the job task does not panic")
    }
}

/// Polls `condition` every 50 ms until it holds; panics with `what` after `seconds`.
pub async fn eventually(seconds: u64, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "timed out after {seconds}s waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A name unique to this test run (topics, queues, tables), so reruns never see old data.
pub fn unique(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{nanos:x}_{n}", std::process::id())
}

/// The `id` field of every row, sorted.
pub fn sorted_ids(rows: &[serde_json::Value]) -> Vec<i64> {
    let mut ids: Vec<i64> =
        rows.iter().map(|row| row["id"].as_i64().unwrap_or_else(|| panic!("no id in {row}"))).collect();
    ids.sort_unstable();
    ids
}

/// A TCP proxy in front of a real service, to make the service go away and come back (fault
/// injection): [`Proxy::cut`] drops every open connection and refuses new ones until
/// [`Proxy::restore`].
pub struct Proxy {
    pub port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.subscribe();
        let target = target.to_owned();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = state.clone();
                if !*state.borrow() {
                    continue; // dropped: the client sees the connection closed at once
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// The windowed job of issue 22's `kill -9` tests over a broker: message `id` has key `id % 5`
/// and event time `WINDOWED_BASE + 2 * id` ms, and a last message far ahead in event time (key
/// 99) makes every window fire. [`windowed_steps`] are the steps after the source `events`.
pub mod windowed {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Event time of message 0 (a whole second).
    pub const BASE: i64 = 1_700_000_000_000;

    /// The payload of message `id`.
    pub fn payload(id: i64) -> String {
        format!(r#"{{"id": {id}, "k": {}, "ts": {}}}"#, id % 5, BASE + id * 2)
    }

    /// The message that ends event time for the test.
    pub fn last() -> String {
        format!(r#"{{"id": -1, "k": 99, "ts": {}}}"#, BASE + 7_200_000)
    }

    /// Source options (schema, event time) and the steps after it: 1-second tumbling windows per
    /// key with count and sum, written to `out/windows.jsonl`. Event time may be out of order by
    /// 30 minutes, so no row is late when a restarted job catches up one partition after another
    /// (watermarks are per source subtask, not per partition): every window fires at the last
    /// message.
    pub const STEPS: &str = r#"
    schema: { id: int64, k: int64, ts: int64 }
    event_time: { column: ts, max_out_of_orderness: 30m }
transforms:
  per_second: { type: window, inputs: [events], tumble: 1s, group_by: [k], aggregates: { n: "count(*)", total: "sum(id)" } }
sinks:
  out: { type: file, inputs: [per_second], path: out/windows.jsonl }
"#;

    /// (window start, key) → the distinct (count, sum) rows written for it, in complete files and
    /// in the whole lines of a file still being written (`.windows.jsonl.inprogress`).
    pub fn written(dir: &Path) -> BTreeMap<(i64, i64), BTreeSet<(i64, i64)>> {
        let out = dir.join("out");
        let mut rows = super::json_rows_of_files(&out, "windows");
        for entry in std::fs::read_dir(&out).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".windows") && name.ends_with(".inprogress") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
                rows.extend(super::json_lines(complete));
            }
        }
        let mut windows: BTreeMap<(i64, i64), BTreeSet<(i64, i64)>> = BTreeMap::new();
        for row in rows {
            if row["k"] == 99 {
                continue;
            }
            let key = (row["window_start"].as_i64().unwrap(), row["k"].as_i64().unwrap());
            windows.entry(key).or_default().insert((row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap()));
        }
        windows
    }

    /// How many (window, key) pairs `messages` messages make.
    pub fn expected_windows(messages: i64) -> usize {
        ((messages * 2 + 999) / 1000 * 5) as usize
    }

    /// Every window of messages `0..messages` was written, and only with the count and sum a
    /// recomputation from the input gives (a window written twice has the same values both times).
    pub fn assert_recomputed(dir: &Path, messages: i64) {
        let mut expected: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
        for id in 0..messages {
            let ts = BASE + id * 2;
            let entry = expected.entry((ts - ts.rem_euclid(1000), id % 5)).or_default();
            entry.0 += 1;
            entry.1 += id;
        }
        let written = written(dir);
        assert_eq!(written.len(), expected.len(), "every window and key fired");
        for (key, values) in &written {
            let values: Vec<(i64, i64)> = values.iter().copied().collect();
            assert_eq!(values, vec![expected[key]], "window {key:?}: lost or doubled rows");
        }
    }

    /// Whether checkpoint `at_least` or a newer one of `job` is complete in `storage`.
    pub fn checkpoint_complete(storage: &Path, job: &str, at_least: u64) -> bool {
        std::fs::read_dir(storage.join(job)).into_iter().flatten().flatten().any(|entry| {
            let id = entry.file_name().to_str().and_then(|name| name.strip_prefix("chk-")?.parse::<u64>().ok());
            id.is_some_and(|id| id >= at_least) && entry.path().join("_metadata").exists()
        })
    }
}

/// A `weir` child process that is killed if the test fails before waiting for it, so a failing
/// test leaves no job running.
pub struct Job(Option<std::process::Child>);

impl Job {
    /// Starts `command`.
    pub fn spawn(command: &mut std::process::Command) -> Self {
        Self(Some(command.spawn().expect("the weir binary starts")))
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.0.as_mut().expect("running").kill().expect("SIGKILL");
    }

    /// Waits for it to end, with what it printed.
    pub fn wait_with_output(mut self) -> std::process::Output {
        self.0.take().expect("running").wait_with_output().expect("waiting for weir")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The seed of a randomized or fault test: `WEIR_TEST_SEED`, else the clock (print it).
pub fn test_seed() -> u64 {
    std::env::var("WEIR_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}
