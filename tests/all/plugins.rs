//! Wasm plugins end to end: the `udf` and `flat_map` steps, plugin functions in expressions,
//! load-time checks, and the hostile fixtures (each contained, with a typed error, host alive).
//! The plugins are built by `tests/run.sh` before the tests run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{Workspace, counters, json_lines};

fn plugin(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run ./tests/run.sh, which builds the plugins", path.display());
    path.display().to_string()
}

fn plugins_section() -> String {
    format!(
        "plugins:\n  currency: {{ path: {} }}\n  strings: {{ path: {} }}\n  words: {{ path: {} }}\n  hostile: {{ path: {}, limits: {{ time: 200ms, memory: 32MiB }} }}\n",
        plugin("currency"),
        plugin("strings"),
        plugin("words"),
        plugin("hostile")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udf_step_matches_the_native_expression() {
    let ws = Workspace::new();
    let metrics = ws
        .run(&format!(
            r#"{}
sources:
  bids: {{ type: nexmark, kind: bid, events: 5000 }}
transforms:
  eur: {{ type: udf, inputs: [bids], plugin: currency, function: dollar_to_euro, args: [price], as: price_eur, parallelism: 2 }}
  both: {{ type: select, inputs: [eur], columns: [auction, price_eur, "price * 0.908 AS native"] }}
sinks:
  out: {{ type: file, inputs: [both], path: out.jsonl }}
"#,
            plugins_section()
        ))
        .await
        .unwrap();
    let rows = json_lines(&ws.read("out.jsonl"));
    assert_eq!(rows.len(), 4600);
    assert!(rows.iter().all(|row| row["price_eur"] == row["native"]), "Wasm and native agree on every row");
    assert_eq!(counters(&metrics, "eur").errors, 0);
}

/// Issue 20 (21): a `udf` step refused an argument the same call in a `select` took (a number of
/// another type than the parameter's). One coercion rule now holds for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udf_step_coerces_numbers_as_a_select_does() {
    let ws = Workspace::new();
    ws.run(&format!(
        r#"{}
sources:
  bids: {{ type: nexmark, kind: bid, events: 500 }}
transforms:
  eur: {{ type: udf, inputs: [bids], plugin: currency, function: dollar_to_euro, args: ["CAST(price AS INT)"], as: step }}
  both: {{ type: select, inputs: [eur], columns: [step, "dollar_to_euro(CAST(price AS INT)) AS expression"] }}
sinks:
  out: {{ type: file, inputs: [both], path: out.jsonl }}
"#,
        plugins_section()
    ))
    .await
    .unwrap();
    let rows = json_lines(&ws.read("out.jsonl"));
    assert_eq!(rows.len(), 460);
    assert!(rows.iter().all(|row| row["step"] == row["expression"] && row["step"].is_f64()), "{:?}", rows[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_functions_work_inside_filter_and_select() {
    let ws = Workspace::new();
    ws.run(&format!(
        r#"{}
sources:
  bids: {{ type: nexmark, kind: bid, events: 20000 }}
transforms:
  cold: {{ type: filter, inputs: [bids], where: "url_param(url, 'channel_id') IS NOT NULL AND char_count(channel) > 7" }}
  out: {{ type: select, inputs: [cold], columns: [channel, "url_param(url, 'channel_id') AS channel_id", "url_path_segment(url, 3) AS page", "fnv1a64(channel) AS bucket"] }}
sinks:
  file: {{ type: file, inputs: [out], path: out.jsonl }}
"#,
        plugins_section()
    ))
    .await
    .unwrap();
    let rows = json_lines(&ws.read("out.jsonl"));
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(row["channel"].as_str().unwrap().starts_with("channel-"), "{row}");
        assert!(row["channel_id"].as_str().unwrap().parse::<u64>().is_ok(), "{row}");
        assert_eq!(row["page"], "item.htm");
        assert!(row["bucket"].as_u64().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flat_map_emits_rows_per_input_row() {
    let ws = Workspace::new();
    ws.run(&format!(
        r#"{}
sources:
  docs: {{ type: generator, count: 3, columns: {{ id: {{ sequence: {{}} }}, body: {{ choice: ["Hello big World"] }} }} }}
transforms:
  tokens: {{ type: flat_map, inputs: [docs], plugin: words, function: split_words, args: [body], parallelism: 1 }}
sinks:
  out: {{ type: file, inputs: [tokens], path: out.jsonl }}
"#,
        plugins_section()
    ))
    .await
    .unwrap();
    let rows = json_lines(&ws.read("out.jsonl"));
    assert_eq!(rows.len(), 9);
    assert_eq!(rows[2]["id"], 0);
    assert_eq!(rows[2]["word"], "World");
    assert_eq!(rows[2]["lower"], "world");
    assert_eq!(rows[2]["position"], 2);
    assert_eq!(rows[3]["id"], 1);
}

#[test]
fn mismatched_uses_are_refused_at_load_time() {
    let ws = Workspace::new();
    let pipeline = |step: &str| {
        format!(
            "{}\nsources:\n  bids: {{ type: nexmark, kind: bid, events: 10 }}\ntransforms:\n  step: {step}\nsinks:\n  out: {{ type: blackhole, inputs: [step] }}\n",
            plugins_section()
        )
    };
    let err = ws
        .load(&pipeline(
            "{ type: udf, inputs: [bids], plugin: currency, function: dollar_to_euro, args: [channel], as: x }",
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transforms.step")
            && err.contains("currency.dollar_to_euro(Int64) -> Float64 is called with (Utf8)"),
        "{err}"
    );
    let err = ws
        .load(&pipeline("{ type: udf, inputs: [bids], plugin: currency, function: to_yen, args: [price], as: x }"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no function `to_yen`") && err.contains("dollar_to_euro, convert, celsius_to_fahrenheit"),
        "{err}"
    );
    let err = ws
        .load(&pipeline("{ type: udf, inputs: [bids], plugin: words, function: split_words, args: [url], as: x }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("table-udf plugin") && err.contains("needs a scalar-udf"), "{err}");
    let err = ws
        .load(&pipeline("{ type: filter, inputs: [bids], where: \"char_count(price) > 1\" }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("transforms.step") && err.contains("char_count"), "{err}");
    // A core module is not a component.
    ws.write("core.wasm", b"\0asm\x01\0\0\0");
    let err = ws
        .load(&pipeline("{ type: udf, inputs: [bids], plugin: core.wasm, function: f, args: [], as: x }"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("core WebAssembly module, not a component"), "{err}");
}

/// Runs a single-function hostile pipeline over `count` generated rows.
async fn hostile(
    function: &str,
    arg: &str,
    count: u64,
    policy: &str,
) -> (Workspace, Result<weir_engine::metrics::PipelineMetrics, String>) {
    let ws = Workspace::new();
    let dead_letter = if policy == "dead-letter" { ", dead_letter: rejects" } else { "" };
    let yaml = format!(
        r#"{}
sources:
  rows: {{ type: generator, count: {count}, columns: {{ x: {{ sequence: {{}} }} }} }}
transforms:
  bad: {{ type: udf, inputs: [rows], plugin: hostile, function: {function}, args: ["{arg}"], as: y, on_error: {policy}{dead_letter}, parallelism: 1 }}
sinks:
  out: {{ type: file, inputs: [bad], path: out.jsonl }}
  rejects: {{ type: file, path: rejects.jsonl }}
"#,
        plugins_section(),
    );
    let yaml = if policy == "dead-letter" {
        yaml
    } else {
        yaml.replace("  rejects: { type: file, path: rejects.jsonl }\n", "")
    };
    let result = ws.run(&yaml).await;
    (ws, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_on_one_row_keeps_the_others_and_follows_the_policy() {
    let (ws, result) = hostile("panic_on_13", "x", 100, "skip").await;
    let metrics = result.unwrap();
    let ys: Vec<i64> = json_lines(&ws.read("out.jsonl")).iter().map(|r| r["y"].as_i64().unwrap()).collect();
    assert_eq!(ys.len(), 99, "bisection isolates the one trapping row");
    assert!(!ys.contains(&26));
    assert_eq!(counters(&metrics, "bad").discarded_events, 1);

    let (ws, result) = hostile("panic_on_13", "x", 100, "dead-letter").await;
    result.unwrap();
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    assert_eq!(rejects.len(), 1);
    assert!(rejects[0]["error"].as_str().unwrap().contains("unreachable"), "{}", rejects[0]);
    assert!(
        rejects[0]["error"].as_str().unwrap().contains("13 is unlucky"),
        "the panic message is kept: {}",
        rejects[0]
    );
    let raw = rejects[0]["raw"].as_str().unwrap();
    let raw =
        String::from_utf8((0..raw.len()).step_by(2).map(|i| u8::from_str_radix(&raw[i..i + 2], 16).unwrap()).collect())
            .unwrap();
    assert!(raw.contains("\"x\":13"), "the failing row, as JSON: {raw}");

    let (_, result) = hostile("panic_on_13", "x", 100, "fail").await;
    let err = result.unwrap_err();
    assert!(
        err.contains("hostile") && err.contains("0.1.0") && err.contains("panic_on_13") && err.contains("input row 13"),
        "{err}"
    );
    // Issue 20 (20): the error shows the arguments the row was called with.
    assert!(err.contains("called with (13)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_interrupted_by_the_time_limit() {
    let started = Instant::now();
    let (_, result) = hostile("spin", "x", 1, "fail").await;
    let err = result.unwrap_err();
    assert!(err.contains("spin") && err.contains("time limit exceeded"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "the 200ms limit stopped it: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_inside_the_host_is_refused_at_once() {
    // Epoch interruption cannot stop a call blocked in the host, so plugins may not block at
    // all: a 5 s sleep traps immediately instead of holding the step for 5 s.
    let started = Instant::now();
    let (_, result) = hostile("nap", "x + 5000", 1, "fail").await;
    let err = result.unwrap_err();
    assert!(err.contains("nap") && err.contains("may not wait"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_stack_bomb_and_huge_output_are_contained() {
    let (_, result) = hostile("hog_memory", "x", 1, "fail").await;
    let err = result.unwrap_err();
    assert!(err.contains("hog_memory") && err.contains("trapped"), "{err}");
    let (_, result) = hostile("deep_recursion", "x", 1, "fail").await;
    let err = result.unwrap_err();
    assert!(err.contains("deep_recursion") && err.contains("stack overflow"), "{err}");
    // 100 MiB for one row, over the 32 MiB limit: the row fails, the job goes on (skip).
    let (ws, result) = hostile("huge_output", "x + 100", 1, "skip").await;
    let metrics = result.unwrap_or_else(|err| panic!("skip keeps the job alive: {err}"));
    assert_eq!(counters(&metrics, "bad").discarded_events, 1);
    assert_eq!(ws.read("out.jsonl"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_environment_and_network_are_denied() {
    for (function, arg) in [("read_file", "'/etc/passwd'"), ("read_env", "'HOME'"), ("connect", "'127.0.0.1:5432'")] {
        let (ws, result) = hostile(function, arg, 1, "dead-letter").await;
        result.unwrap();
        assert_eq!(ws.read("out.jsonl"), "", "{function} produced nothing");
        let rejects = json_lines(&ws.read("rejects.jsonl"));
        let error = rejects[0]["error"].as_str().unwrap();
        assert!(error.starts_with(function), "{error}");
        assert!(!error.contains("root:"), "no file content leaks: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_plugin_never_stalls_other_work() {
    // Another pipeline and a ticker keep running while a plugin spins until its limit.
    let ticker = tokio::spawn(async {
        let mut worst = Duration::ZERO;
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = Instant::now();
        let mut last = Instant::now();
        while start.elapsed() < Duration::from_millis(600) {
            interval.tick().await;
            worst = worst.max(last.elapsed());
            last = Instant::now();
        }
        worst
    });
    let spinning = tokio::spawn(hostile("spin", "x", 2, "skip"));
    let ws = Workspace::new();
    let normal = ws.run("sources:\n  g: { type: generator, count: 100000, columns: { id: { sequence: {} } } }\nsinks:\n  out: { type: blackhole, inputs: [g] }\n").await;
    assert_eq!(counters(&normal.unwrap(), "out").sent_events, 100_000);
    let worst = ticker.await.unwrap();
    assert!(worst < Duration::from_millis(60), "the runtime stalled for {worst:?}");
    let (_, result) = spinning.await.unwrap();
    assert_eq!(counters(&result.unwrap(), "bad").discarded_events, 2);
}

#[test]
fn inspect_describes_a_plugin_and_the_cache_skips_recompiling() {
    let cache = tempfile::tempdir().unwrap();
    let inspect = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["plugin", "inspect", &plugin("currency")])
            .env("WEIR_CACHE_DIR", cache.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let first = inspect();
    assert!(first.contains("world:    weir:plugin/scalar-udf@0.1.0"), "{first}");
    assert!(first.contains("dollar_to_euro(Int64) -> Float64"), "{first}");
    assert!(first.contains("reach:    only weir and WASI"), "{first}");
    assert!(first.contains("compiled now"), "{first}");
    assert!(inspect().contains("from the cache"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["plugin", "inspect", "Cargo.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    // Issue 20 (13): inspect said "sandbox: ok" for a plugin every pipeline refuses.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["plugin", "inspect", &plugin("hostile_shadow")])
        .env("WEIR_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("built-in SQL functions") && stdout.contains("upper"), "{stdout}");
    // Issue 20 (13): a describe() panic showed a backtrace but not the panic message.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["plugin", "inspect", &plugin("hostile_describe")])
        .env("WEIR_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("describe failed") && stderr.contains("describe exploded on purpose"), "{stderr}");
}

#[test]
fn guest_stdout_and_stderr_go_to_the_host_log() {
    let ws = Workspace::new();
    let file = ws.write(
        "chatty.yaml",
        format!(
            "{}\nsources:\n  rows: {{ type: generator, count: 3, columns: {{ x: {{ sequence: {{}} }} }} }}\ntransforms:\n  talk: {{ type: udf, inputs: [rows], plugin: hostile, function: chatty, args: [x], as: y }}\nsinks:\n  out: {{ type: blackhole, inputs: [talk] }}\n",
            plugins_section()
        ),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--log-format", "json", "run", "--quiet"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let said = |stream: &str| {
        lines.iter().any(|l| {
            l["fields"]["stream"] == stream
                && l["fields"]["plugin"] == "hostile"
                && l["fields"]["step"] == "transforms.talk"
                && l["fields"]["message"].as_str().unwrap_or("").contains("chatty says 2")
        })
    };
    assert!(said("stdout") && said("stderr"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("chatty"), "the guest never writes to weir's stdout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_level_plugin_with_arrow_kernels() {
    let ws = Workspace::new();
    ws.write("in.jsonl", "{\"x\": 1}\n{\"x\": null}\n{\"x\": -21}\n");
    ws.run(&format!(
        "sources:\n  rows: {{ type: file, path: in.jsonl, schema: {{ x: int64 }} }}\ntransforms:\n  doubled: {{ type: udf, inputs: [rows], plugin: {}, function: times_two, args: [x], as: y, parallelism: 1 }}\nsinks:\n  out: {{ type: file, inputs: [doubled], path: out.jsonl }}\n",
        plugin("columnar")
    ))
    .await
    .unwrap();
    assert_eq!(ws.read("out.jsonl"), "{\"x\":1,\"y\":2}\n{}\n{\"x\":-21,\"y\":-42}\n");
}

#[test]
fn plugin_counters_and_gauges_reach_the_host() {
    let ws = Workspace::new();
    ws.write("in.jsonl", "{\"x\": 1}\n{\"x\": 2}\n{\"x\": 3}\n");
    let file = ws.write(
        "counted.yaml",
        format!(
            "plugins:\n  columnar: {{ path: {} }}\nsources:\n  rows: {{ type: file, path: in.jsonl, schema: {{ x: int64 }} }}\ntransforms:\n  doubled: {{ type: udf, inputs: [rows], plugin: columnar, function: times_two, args: [x], as: y }}\nsinks:\n  out: {{ type: blackhole, inputs: [doubled] }}\n",
            plugin("columnar")
        ),
    );
    let output =
        std::process::Command::new(env!("CARGO_BIN_EXE_weir")).args(["run", "--quiet"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("plugin columnar: rows_doubled=3 last_batch_rows=3"), "{stderr}");
}

/// Issue 20 (1, 8): a table function reported an error for a row that does not exist, and the
/// host panicked (`(offset + length) <= self.num_rows()`) naming neither plugin nor function; and
/// one input row could become a million dead letters. Every row index a plugin returns is
/// checked (a contract error naming plugin and function, the job fails cleanly), and a row keeps
/// one error, with a count of the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_function_cannot_name_rows_that_do_not_exist_or_flood_dead_letters() {
    let pipeline = |function: &str| {
        format!(
            r#"plugins:
  hostile-table: {{ path: {} }}
sources:
  rows: {{ type: generator, count: 40, columns: {{ x: {{ sequence: {{}} }} }} }}
transforms:
  bad: {{ type: flat_map, inputs: [rows], plugin: hostile-table, function: {function}, args: [x], on_error: dead-letter, dead_letter: rejects, parallelism: 1 }}
sinks:
  out: {{ type: file, inputs: [bad], path: out.jsonl }}
  rejects: {{ type: file, path: rejects.jsonl }}
settings: {{ batch_size: 10 }}
"#,
            plugin("hostile_table")
        )
    };
    let ws = Workspace::new();
    let err = ws.run(&pipeline("phantom_row_error")).await.unwrap_err();
    assert!(
        err.contains("hostile-table") && err.contains("phantom_row_error") && err.contains("row 1010"),
        "a contract error naming the plugin, the function and the row: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let ws = Workspace::new();
    let metrics = ws.run(&pipeline("error_storm")).await.unwrap();
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    assert_eq!(rejects.len(), 4, "one dead letter per failed input row (the first of each batch of 10)");
    assert!(rejects[0]["error"].as_str().unwrap().contains("and 99999 more errors for this row"), "{}", rejects[0]);
    assert_eq!(counters(&metrics, "bad").dead_lettered_events, 4);
}

/// Issue 20 (7): SQL told a trap from a row error by looking for "trapped" in the message: a row
/// error saying it failed the job, a real trap after an earlier row error in the same batch
/// became NULL and the job went on, and rows reported as errors kept the plugin's value. Now the
/// kind is typed: row errors are NULL whatever they say, and a trap fails the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sql_a_row_error_is_null_whatever_it_says_and_a_trap_fails_the_step() {
    let pipeline = |count: u64| {
        format!(
            r#"{}
sources:
  rows: {{ type: generator, count: {count}, columns: {{ x: {{ sequence: {{ start: 1 }} }} }} }}
transforms:
  picked: {{ type: select, inputs: [rows], columns: ["x", "errs_or_traps(x) AS y"], parallelism: 1 }}
sinks:
  out: {{ type: file, inputs: [picked], path: out.jsonl }}
"#,
            plugins_section()
        )
    };
    let ws = Workspace::new();
    ws.run(&pipeline(12)).await.unwrap();
    let rows = json_lines(&ws.read("out.jsonl"));
    assert_eq!(rows.len(), 12);
    for row in &rows {
        let x = row["x"].as_i64().unwrap();
        if x % 2 == 0 {
            assert!(row["y"].is_null(), "a row error is NULL, not the plugin's value: {row}");
        } else {
            assert_eq!(row["y"], x, "{row}");
        }
    }
    let err = Workspace::new().run(&pipeline(20)).await.unwrap_err();
    assert!(err.contains("13 traps for real"), "the trap after row errors in the same batch fails the step: {err}");
}

/// Runs `function` of the hostile plugin over `count` rows with the `weir` binary (JSON logs);
/// returns the log lines and what the summary printed.
fn hostile_cli(function: &str, count: u64) -> (Vec<serde_json::Value>, String) {
    let ws = Workspace::new();
    let file = ws.write(
        "p.yaml",
        format!(
            "{}\nsources:\n  rows: {{ type: generator, count: {count}, columns: {{ x: {{ sequence: {{}} }} }} }}\ntransforms:\n  step: {{ type: udf, inputs: [rows], plugin: hostile, function: {function}, args: [x], as: y, parallelism: 1 }}\nsinks:\n  out: {{ type: blackhole, inputs: [step] }}\n",
            plugins_section()
        ),
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--log-format", "json", "run", "--no-admin"])
        .arg(&file)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let lines = stderr.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    (lines, stderr)
}

/// Issue 20 (9): guest output was not rate-limited (3 M lines, 347 MB of log in 13 s). 20,000
/// lines printed by one plugin reach the log at most 50 a second, and a line that gets through
/// after a pause says how many were suppressed.
#[test]
fn guest_output_reaches_the_log_at_a_bounded_rate() {
    let (lines, stderr) = hostile_cli("chatty", 10_000);
    let guest: Vec<&serde_json::Value> = lines.iter().filter(|l| l["fields"]["plugin"] == "hostile").collect();
    assert!(!guest.is_empty(), "{stderr}");
    assert!(guest.len() < 1_000, "{} guest lines of 20,000 reached the log", guest.len());
    eprintln!("{} of 20,000 guest lines logged", guest.len());
}

/// Issue 20 (3): metric names from `counter-add` grew host memory without bound (2 M names:
/// 894 MB) and the summary printed a 382 MB line. A plugin holds at most 256 series; the others
/// are refused and counted, and the summary says so.
#[test]
fn plugin_metric_series_are_capped_and_refusals_counted() {
    let (_, stderr) = hostile_cli("metric_per_value", 5_000);
    let series = stderr.matches("series_").count();
    assert!((1..=256).contains(&series), "{series} series shown: {stderr}");
    assert!(stderr.contains("4744 metric updates refused (at most 256 series"), "{stderr}");
}

/// Issue 20 (5): bisection multiplied the time limit: a batch whose every call runs into the
/// limit cost 2n-1 calls, each to the limit (16 rows at 1 s: 33 s). Isolating slow rows now has a
/// budget of timed-out calls (enough to find one slow row by halving); past it, a slice that
/// times out fails as a whole. (One slow row among 100 is still found alone: see
/// `languages::a_python_udf_that_spins_is_interrupted_and_only_its_row_is_lost`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_runs_into_the_time_limit_is_not_bisected_without_bound() {
    let started = Instant::now();
    let (ws, result) = hostile("spin", "x", 16, "dead-letter").await;
    result.unwrap();
    let elapsed = started.elapsed();
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    assert_eq!(rejects.len(), 16, "every row of the batch failed with the timeout");
    assert!(rejects.iter().all(|r| r["error"].as_str().unwrap().contains("time limit exceeded")));
    // At most 13 calls at the 200 ms limit (2.6 s), not 31 of them (6.2 s).
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// Issue 20 (2): listing a plugin was enough for its functions to replace built-in SQL functions
/// in every step (`upper(c)` returned `PWNED`), and `validate` said ok. A plugin function may not
/// take a name expressions already resolve; `validate` lists which names resolve to which plugin.
#[test]
fn a_plugin_cannot_replace_built_in_sql_functions_and_validate_says_what_resolves_where() {
    let ws = Workspace::new();
    let pipeline = |plugins: &str| {
        format!(
            "plugins:\n{plugins}\nsources:\n  rows: {{ type: generator, count: 3, columns: {{ c: {{ choice: [a, b] }} }} }}\ntransforms:\n  shout: {{ type: select, inputs: [rows], columns: [\"upper(c) AS c\"] }}\nsinks:\n  out: {{ type: blackhole, inputs: [shout] }}\n"
        )
    };
    let shadowing = ws.write("shadow.yaml", pipeline(&format!("  shadow: {{ path: {} }}", plugin("hostile_shadow"))));
    let output = crate::support::weir().arg("validate").arg(&shadowing).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`upper`") && stderr.contains("may not replace"), "{stderr}");

    // Two plugins with a function of the same name: SQL keeps the first listed, and says so.
    let twice = ws.write(
        "twice.yaml",
        pipeline(&format!("  strings: {{ path: {} }}\n  again: {{ path: {} }}", plugin("strings"), plugin("strings"))),
    );
    let output = crate::support::weir().arg("validate").arg(&twice).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("(in SQL: plugin strings)"), "{stdout}");

    let fine = ws.write("fine.yaml", pipeline(&format!("  strings: {{ path: {} }}", plugin("strings"))));
    let output = crate::support::weir().arg("validate").arg(&fine).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout
            .lines()
            .any(|line| line.contains("plugin") && line.contains("strings") && line.contains("SQL functions:")),
        "{stdout}"
    );
}

/// Issue 20 (4): aggregate state had no cap (256 KiB per group reached 1.05 GB in 1 s). A plugin
/// aggregate's state is bounded per group (`limits.state_per_group`) and per plugin
/// (`limits.state`); an update past them is refused for its group, whose rows follow the step's
/// `on_error` while every other group goes on. `percentile` keeps every value (8 bytes each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_state_is_capped_per_group_and_per_plugin_with_the_steps_error_policy() {
    let pipeline = |limits: &str, step: &str, on_error: &str| {
        format!(
            r#"plugins:
  sketches: {{ path: {}, limits: {{ {limits} }} }}
sources:
  rows:
    type: generator
    count: 6000
    columns: {{ x: {{ sequence: {{}} }}, t: {{ timestamp: {{ start: "2024-01-01T00:00:00Z", step: 1ms }} }} }}
    event_time: {{ column: t }}
transforms:
  keyed: {{ type: select, inputs: [rows], columns: ["CASE WHEN x % 100 = 0 THEN 'small' ELSE 'big' END AS key", "CAST(x AS DOUBLE) AS v", "x", "t"] }}
  agg: {{ type: {step}, inputs: [keyed], group_by: [key], aggregates: {{ n: "count(*)", p50: "percentile(v, 0.5)", top: "max(x)" }}, {on_error} }}
sinks:
  out: {{ type: file, inputs: [agg], path: out.jsonl }}
{rejects}settings: {{ batch_size: 500 }}
"#,
            plugin("sketches"),
            rejects =
                if on_error.contains("dead-letter") { "  rejects: { type: file, path: rejects.jsonl }\n" } else { "" }
        )
    };
    let window = "window, tumble: 1h";
    let dead_letter = "on_error: dead-letter, dead_letter: rejects";

    // Per group: 16 KiB holds about 2,000 values; `big` gets 5,940 rows, `small` 60.
    let ws = Workspace::new();
    let metrics = ws.run(&pipeline("state_per_group: 16KiB", window, dead_letter)).await.unwrap();
    let output = json_lines(&ws.read("out.jsonl"));
    let rejects = json_lines(&ws.read("rejects.jsonl"));
    let row = |key: &str| output.iter().find(|row| row["key"] == key).unwrap_or_else(|| panic!("{key}: {output:?}"));
    let big = row("big")["n"].as_i64().unwrap();
    assert!((1_500..2_100).contains(&big), "`big` keeps the rows that fit in 16 KiB: {big}");
    assert_eq!(row("small")["n"], 60, "the other group is not affected");
    assert_eq!(big as usize + rejects.len(), 5_940, "every refused row is a dead letter, none is lost");
    // The group's aggregates stay consistent: max(x) saw the same rows as the plugin.
    let kept_max = row("big")["top"].as_i64().unwrap();
    assert!(kept_max < 3_000, "max(x) of the accepted rows only: {kept_max}");
    let error = rejects[0]["error"].as_str().unwrap();
    assert!(
        error.contains("percentile") && error.contains("sketches") && error.contains("limits.state_per_group"),
        "{error}"
    );
    assert_eq!(counters(&metrics, "agg").dead_lettered_events, rejects.len() as u64);

    // The default policy fails the step and says why.
    let ws = Workspace::new();
    let err = ws.run(&pipeline("state_per_group: 16KiB", window, "on_error: fail")).await.unwrap_err();
    assert!(err.contains("limits.state_per_group") && err.contains("percentile"), "{err}");

    // Per plugin, in a running aggregate: 6,000 values take about 49 KiB over 100 groups.
    let ws = Workspace::new();
    let keyed_by_x = |limits: &str| {
        pipeline(limits, "aggregate", dead_letter).replace(
            "\"CASE WHEN x % 100 = 0 THEN 'small' ELSE 'big' END AS key\"",
            "\"CAST(x % 100 AS VARCHAR) AS key\"",
        )
    };
    ws.run(&keyed_by_x("state: 32KiB")).await.unwrap();
    let refused = json_lines(&ws.read("rejects.jsonl")).len();
    assert!((1_000..3_000).contains(&refused), "past 32 KiB for the plugin, growing groups are refused: {refused}");
    let error = json_lines(&ws.read("rejects.jsonl"))[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("limits.state") && error.contains("all groups"), "{error}");
    let ws = Workspace::new();
    let metrics = ws.run(&keyed_by_x("state: 1MiB")).await.unwrap();
    let rejects = std::fs::read_to_string(ws.path("rejects.jsonl")).unwrap_or_default();
    assert_eq!(rejects.lines().count(), 0, "1 MiB holds every group");
    assert_eq!(counters(&metrics, "agg").dead_lettered_events, 0);
}

/// Issue 20 (5): a step that fails on the first bad row (`on_error: fail`) still bisected a
/// batch that ran into the time limit, call after call at the limit, only to fail the job at
/// the end. It now fails at the first trap, without bisecting timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_on_error_fail_a_batch_at_the_time_limit_fails_at_once() {
    let started = Instant::now();
    // One batch of 8,192 rows: the isolation budget would be 15 calls at 200 ms (3 s).
    let (_ws, result) = hostile("spin", "x", 8_192, "fail").await;
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(err.contains("time limit") && err.contains("spin"), "{err}");
    assert!(elapsed < Duration::from_millis(1_500), "one call at the 200 ms limit, not 15: {elapsed:?}");
}

/// Issue 20 (5): the first Ctrl-C did not interrupt the isolation of a trapping batch: the
/// stop waited for every call of the bisection (here 15 at 1 s). Now the batch fails,
/// unacknowledged, and the process ends.
#[test]
fn the_first_ctrl_c_interrupts_isolating_a_trapping_batch() {
    let ws = Workspace::new();
    let file = ws.write(
        "spin.yaml",
        format!(
            r#"plugins:
  hostile: {{ path: {}, limits: {{ time: 1s }} }}
sources:
  rows: {{ type: generator, count: 8192, columns: {{ x: {{ sequence: {{}} }} }} }}
transforms:
  bad: {{ type: udf, inputs: [rows], plugin: hostile, function: spin, args: [x], as: y, on_error: skip }}
sinks:
  out: {{ type: blackhole, inputs: [bad] }}
settings: {{ batch_size: 8192 }}
"#,
            plugin("hostile")
        ),
    );
    let child = crate::support::weir()
        .args(["run", "--no-admin"])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Two calls at the limit have run; the bisection has 13 more to go.
    std::thread::sleep(Duration::from_millis(2_500));
    let signalled = Instant::now();
    crate::support::signal(child.id(), libc::SIGINT);
    let output = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stopped while isolating"), "{stderr}");
    assert!(took < Duration::from_secs(5), "the stop waited {took:?} (the rest of the bisection is 13 s)");
}

/// A component of the scalar-udf world whose functions trap (wit-component's dummy module),
/// with `extra` core modules beside it that each hold one linear memory of `mib` MiB: what no
/// Rust guest can express, made by hand as an attacker would.
fn component_with_extra_memories(extra: u32, mib: u64) -> Vec<u8> {
    use wasm_encoder::ComponentSection;
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(crate::support::repo().join("wit")).unwrap();
    let world = resolve.select_world(&[package], Some("scalar-udf")).unwrap();
    let mangling = wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync);
    let mut module = wit_component::dummy_module(&resolve, world, mangling);
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8, false)
        .unwrap();
    let mut component =
        wit_component::ComponentEncoder::default().module(&module).unwrap().validate(true).encode().unwrap();
    let modules = wasmparser::Parser::new(0)
        .parse_all(&component)
        .filter(|payload| matches!(payload, Ok(wasmparser::Payload::ModuleSection { .. })))
        .count() as u32;
    let mut bomb = wasm_encoder::Module::new();
    let mut memories = wasm_encoder::MemorySection::new();
    memories.memory(wasm_encoder::MemoryType {
        minimum: mib * 16,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    bomb.section(&memories);
    wasm_encoder::ModuleSection(&bomb).append_to_component(&mut component);
    let mut instances = wasm_encoder::InstanceSection::new();
    for _ in 0..extra {
        instances.instantiate(modules, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    }
    instances.append_to_component(&mut component);
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all()).validate_all(&component).unwrap();
    component
}

/// Issue 20 (6): the memory limit held per linear memory, not per instance: three memories gave
/// three times the limit. `limits.memory` now bounds the instance's memories (and tables)
/// together.
#[tokio::test]
async fn the_memory_limit_holds_for_all_of_an_instances_memories_together() {
    let ws = Workspace::new();
    let load = async |extra: u32| {
        let path = ws.write(&format!("memories-{extra}.wasm"), component_with_extra_memories(extra, 40));
        let yaml = format!(
            r#"plugins:
  many: {{ path: {}, limits: {{ memory: 64MiB }} }}
sources:
  rows: {{ type: generator, count: 1, columns: {{ x: {{ sequence: {{}} }} }} }}
sinks:
  out: {{ type: blackhole, inputs: [rows] }}
"#,
            path.display()
        );
        ws.run(&yaml).await.unwrap_err()
    };
    // One 40 MiB memory beside the module's own fits in 64 MiB: the plugin is instantiated and
    // fails only where every dummy function does (describe traps).
    let one = load(1).await;
    assert!(one.contains("trapped") || one.contains("unreachable"), "{one}");
    // Two of them (80 MiB) do not, although each is under the limit.
    let two = load(2).await;
    assert!(two.contains("exceeds memory limits") && !two.contains("unreachable"), "{two}");
}

/// Issue 20 (11, 12): loading ignored the declared limits (a plugin that needs more than 64 MiB
/// at start could not load even with `limits.memory: 512MiB`); any component was compiled
/// whatever its size, and its artifact cached even when the plugin was refused; the cache grew
/// without bound.
#[tokio::test]
async fn loading_uses_the_plugins_limits_refuses_oversized_files_and_caches_only_what_loaded() {
    let ws = Workspace::new();
    let pipeline = |path: &std::path::Path, limits: &str| {
        format!(
            r#"plugins:
  big: {{ path: {}, limits: {{ {limits} }} }}
sources:
  rows: {{ type: generator, count: 1, columns: {{ x: {{ sequence: {{}} }} }} }}
sinks:
  out: {{ type: blackhole, inputs: [rows] }}
"#,
            path.display()
        )
    };
    // 100 MiB at start: refused under the default 64 MiB, instantiated under 512 MiB (where the
    // dummy's describe traps, as every function of it does).
    let needy = ws.write("needy.wasm", component_with_extra_memories(1, 100));
    let err = ws.run(&pipeline(&needy, "time: 1s")).await.unwrap_err();
    assert!(err.contains("exceeds memory limits"), "{err}");
    let err = ws.run(&pipeline(&needy, "memory: 512MiB")).await.unwrap_err();
    assert!(!err.contains("exceeds memory limits") && err.contains("describe failed"), "{err}");

    // Oversized: refused before compiling, with the limit named.
    let mut padded = component_with_extra_memories(0, 1);
    padded.resize(3 << 20, 0);
    let padded = ws.write("padded.wasm", padded);
    let err = ws.run(&pipeline(&padded, "component: 2MiB")).await.unwrap_err();
    assert!(err.contains("limits.component") && err.contains("MiB"), "{err}");

    // The cache keeps only components that loaded, within its bound, and can be pruned.
    let cache = tempfile::tempdir().unwrap();
    let weir = |args: &[&str], max: &str| {
        let output = crate::support::weir()
            .args(args)
            .env("WEIR_CACHE_DIR", cache.path())
            .env("WEIR_CACHE_MAX_SIZE", max)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let artifacts = || {
        std::fs::read_dir(cache.path())
            .map(|dir| dir.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm")).count())
            .unwrap_or(0)
    };
    let refused = ws.write("refused.wasm", component_with_extra_memories(0, 1));
    assert_eq!(weir(&["plugin", "inspect", refused.to_str().unwrap()], "1GiB").0, Some(2));
    assert_eq!(artifacts(), 0, "a plugin that did not load is not cached");
    assert_eq!(weir(&["plugin", "inspect", &plugin("currency")], "1GiB").0, Some(0));
    assert_eq!(weir(&["plugin", "inspect", &plugin("strings")], "1GiB").0, Some(0));
    assert_eq!(artifacts(), 2);
    // A bound smaller than two artifacts keeps only the newest.
    assert_eq!(weir(&["plugin", "inspect", &plugin("words")], "1B").0, Some(0));
    assert_eq!(artifacts(), 1, "the cache is pruned to its bound after each new artifact");
    let (code, report) = weir(&["plugin", "cache", "prune", "--all"], "1GiB");
    assert_eq!(code, Some(0));
    assert!(report.contains("removed 1 compiled plugin(s)"), "{report}");
    assert_eq!(artifacts(), 0);
}
