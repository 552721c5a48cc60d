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
