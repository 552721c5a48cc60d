//! The `weir` binary: exit codes, validate output, stdin to stdout, and Ctrl-C draining.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Workspace, json_lines, weir};

#[test]
fn validate_reports_ok_or_the_error_with_exit_code_2() {
    let ws = Workspace::new();
    let good = ws.write("good.yaml", "sources:\n  g: { type: generator, count: 1, columns: { id: { sequence: {} } } }\nsinks:\n  out: { type: stdout, inputs: [g] }\n");
    let output = weir().arg("validate").arg(&good).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok"));
    let bad = ws.write("bad.yaml", "sources:\n  g: { type: generator, count: 1, colums: {} }\n");
    let output = weir().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml:2:") && stderr.contains("sources.g") && stderr.contains("colums"), "{stderr}");
}

#[test]
fn stdin_to_stdout_with_json_logs() {
    let ws = Workspace::new();
    let file = ws.write(
        "pipe.yaml",
        r#"
sources:
  lines: { type: stdin, schema: { level: string, msg: string }, on_error: skip }
transforms:
  errors: { type: filter, inputs: [lines], where: "level = 'error'" }
sinks:
  out: { type: stdout, inputs: [errors] }
"#,
    );
    let summary = ws.path("summary.json");
    let mut child = weir()
        .args(["--log-format", "json", "run", "--quiet", "--summary-json"])
        .arg(&summary)
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"level\":\"info\",\"msg\":\"a\"}\n{\"level\":\"error\",\"msg\":\"b\"}\nnot json\n{\"level\":\"error\",\"msg\":\"c\"}")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut messages: Vec<String> = json_lines(&String::from_utf8(output.stdout).unwrap())
        .iter()
        .map(|row| row["msg"].as_str().unwrap().to_owned())
        .collect();
    messages.sort();
    assert_eq!(messages, ["b", "c"], "the last line has no line break and still counts");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let warning = stderr.lines().find(|line| line.contains("skipping bad record")).expect("a warning for the bad line");
    let warning: serde_json::Value = serde_json::from_str(warning).expect("JSON log lines");
    assert_eq!(warning["fields"]["position"], "stdin:3 (byte 55)");
    assert!(stderr.contains("done in"), "final summary: {stderr}");

    let summary: serde_json::Value = serde_json::from_str(&ws.read("summary.json")).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!((summary["events_in"].as_u64(), summary["events_out"].as_u64()), (Some(3), Some(2)));
    let lines = &summary["components"][0];
    assert_eq!((lines["name"].as_str(), lines["role"].as_str()), (Some("lines"), Some("source")));
    assert_eq!((lines["errors"].as_u64(), lines["discarded_events"].as_u64()), (Some(1), Some(1)));
    assert!(summary["wall_seconds"].as_f64().unwrap() > 0.0 && summary["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
}

#[test]
fn summary_json_of_a_failed_job_says_why() {
    let ws = Workspace::new();
    let file = ws.write(
        "pipe.yaml",
        "sources:\n  lines: { type: stdin, schema: { n: int64 } }\nsinks:\n  out: { type: stdout, inputs: [lines] }\n",
    );
    let summary = ws.path("summary.json");
    let mut child = weir()
        .args(["run", "--quiet", "--summary-json"])
        .arg(&summary)
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{\"n\": 1}\n{\"n\": \"two\"}\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(&ws.read("summary.json")).unwrap();
    assert_eq!(summary["ok"], false);
    let error = summary["error"].as_str().expect("the reason");
    assert!(error.contains("stdin:2"), "{error}");
}

#[test]
fn ctrl_c_drains_in_flight_batches_and_completes_files() {
    stop_signal_drains_in_flight_batches_and_completes_files(libc::SIGINT);
}

/// Issue 19 (4): SIGTERM (`docker stop`, systemd, Kubernetes) killed the process at once.
#[test]
fn sigterm_takes_the_same_graceful_path_as_ctrl_c() {
    stop_signal_drains_in_flight_batches_and_completes_files(libc::SIGTERM);
}

fn stop_signal_drains_in_flight_batches_and_completes_files(signal: i32) {
    let ws = Workspace::new();
    let file = ws.write(
        "forever.yaml",
        r#"
sources:
  g: { type: generator, rate: 20000, columns: { id: { sequence: {} } } }
transforms:
  all: { type: filter, inputs: [g], where: "id >= 0" }
sinks:
  out: { type: file, inputs: [all], path: out/ids.jsonl }
"#,
    );
    let child = weir().args(["run", "--quiet"]).arg(&file).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ws.path("out/.ids.jsonl.inprogress").exists(), "the file is in progress while running");
    crate::support::signal(child.id(), signal);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit 0 after signal {signal}: {:?} {stderr}", output.status);
    let mut ids: Vec<i64> = json_lines(&ws.read("out/ids.jsonl")).iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert!(ids.len() > 1000, "rows were written: {}", ids.len());
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>(), "a gap-free prefix: nothing in flight was lost");
    let written: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("sink out: "))
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(written, ids.len() as u64, "the summary counts what the file holds");
    assert!(!ws.path("out/.ids.jsonl.inprogress").exists());
}

/// Issue 19 (17): `weir validate p.yaml | head -1` panicked on the broken pipe.
#[test]
fn validate_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let ws = Workspace::new();
    let file = ws.write(
        "good.yaml",
        "sources:\n  g: { type: generator, count: 1, columns: { id: { sequence: {} } } }\nsinks:\n  out: { type: stdout, inputs: [g] }\n",
    );
    let mut child = weir().arg("validate").arg(&file).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader is gone before weir prints anything
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "ended by SIGPIPE like other tools: {:?}", output.status);
}

/// Issue 19 (21): on an 80-column terminal the progress line wrapped, and each redraw then
/// added a line until the screen was full. Runs weir with stderr on a pseudo-terminal 80
/// columns wide.
#[test]
fn the_progress_line_fits_an_80_column_terminal() {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let ws = Workspace::new();
    let sinks: String =
        (0..6).map(|i| format!("  a_rather_long_sink_name_number_{i}: {{ type: blackhole, inputs: [g] }}\n")).collect();
    let file = ws.write(
        "wide.yaml",
        format!(
            "sources:\n  g: {{ type: generator, rate: 1000, columns: {{ id: {{ sequence: {{}} }} }} }}\nsinks:\n{sinks}"
        ),
    );
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors we own; the winsize is valid.
    let opened = unsafe {
        libc::openpty(&raw mut master, &raw mut slave, std::ptr::null_mut(), std::ptr::null(), &raw const size)
    };
    assert_eq!(opened, 0);
    // SAFETY: `slave` is an open descriptor handed over to the child's stderr.
    let stderr = unsafe { Stdio::from_raw_fd(slave) };
    let child = weir().args(["run", "--no-admin"]).arg(&file).stderr(stderr).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    crate::support::signal(child.id(), libc::SIGINT);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    // SAFETY: `master` is an open descriptor we own from here on.
    let mut terminal = unsafe { std::fs::File::from_raw_fd(master) };
    let mut bytes = vec![0; 1 << 16];
    let read = terminal.read(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes[..read]).replace("\x1b[2K", "");
    let redraws: Vec<&str> = text.split('\r').filter(|part| part.contains("in ") && part.contains("/s")).collect();
    assert!(redraws.len() >= 2, "the progress line was drawn: {text:?}");
    for redraw in redraws {
        let first_line = redraw.lines().next().unwrap_or_default();
        assert!(first_line.chars().count() < 80, "{} columns: {first_line:?}", first_line.chars().count());
    }
}
