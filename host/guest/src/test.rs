//! `weir plugin test`: runs the plugin's sample pipeline in the sandbox and compares what it
//! wrote with the expected output.
//!
//! Rows are compared as a multiset of JSON objects (parallel steps may reorder rows), with a
//! NULL field and an absent field the same (the JSON writer leaves NULLs out; expected files may
//! spell them out). When the plugin has `test/expected-rejected.jsonl`, the rows its pipeline
//! dead-lettered are compared with it too: each expected `{"row": {...}, "error": "..."}` must
//! match one rejected row exactly and a part of its error message.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{GuestError, Manifest};
use weir_engine::registry::Registry;
use weir_engine::runner;

/// What a passing test saw.
#[derive(Debug)]
pub struct Passed {
    /// The component tested.
    pub component: PathBuf,
    /// Whether it was (re)built first.
    pub built: bool,
    /// Rows compared.
    pub rows: usize,
}

/// The newest modification time of the files that make the component.
fn newest_source(dir: &Path) -> Option<SystemTime> {
    super::build_inputs(dir)
        .iter()
        .filter_map(|path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok())
        .max()
}

/// Drops NULL fields of an object row.
fn without_nulls(row: Value) -> Value {
    match row {
        Value::Object(fields) => Value::Object(fields.into_iter().filter(|(_, value)| !value.is_null()).collect()),
        other => other,
    }
}

fn read_rows(path: &Path) -> Result<Vec<Value>, GuestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| GuestError::Io { path: path.to_path_buf(), reason: err.to_string() })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map(without_nulls).map_err(|err| GuestError::Io {
                path: path.to_path_buf(),
                reason: format!("line {}: not JSON: {err}", number + 1),
            })
        })
        .collect()
}

/// Builds the plugin when its component is missing or older than its sources, runs the test
/// pipeline (its component kinds from `registry`) and compares.
///
/// # Errors
/// Build failures, a failing pipeline, and [`GuestError::TestFailed`] listing the differences.
pub fn run(dir: &Path, registry: &Registry) -> Result<Passed, GuestError> {
    let manifest = Manifest::load(dir)?;
    let component = super::output_path(dir, &manifest);
    let output = dir.join(&manifest.test.output);
    let built_at = std::fs::metadata(&component).and_then(|meta| meta.modified()).ok();
    // A newer `weir` carries a newer SDK: that makes the component stale too.
    let weir_built = std::env::current_exe().and_then(std::fs::metadata).and_then(|meta| meta.modified()).ok();
    let newest = newest_source(dir).max(weir_built);
    let stale = match (built_at, newest) {
        (Some(built), Some(source)) => source > built,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if stale {
        super::build(dir)?;
    }

    let pipeline_path = dir.join(&manifest.test.pipeline);
    let pipeline =
        weir_pipeline::load(&pipeline_path, registry).map_err(|err| GuestError::TestFailed(err.to_string()))?;
    let rejected = dir.join(&manifest.test.rejected);
    for earlier in [&output, &rejected] {
        if earlier.exists() {
            std::fs::remove_file(earlier)
                .map_err(|err| GuestError::Io { path: earlier.clone(), reason: err.to_string() })?;
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| GuestError::TestFailed(format!("cannot start the runtime: {err}")))?;
    let metrics = runner::metrics_for(&pipeline.graph);
    runtime
        .block_on(runner::run(&pipeline.graph, &metrics, CancellationToken::new()))
        .map_err(|err| GuestError::TestFailed(format!("the test pipeline failed: {err}")))?;

    let actual = read_rows(&output)?;
    let expected = read_rows(&dir.join(&manifest.test.expected))?;
    let mut unmatched: Vec<Value> = actual.clone();
    let mut missing = Vec::new();
    for row in &expected {
        match unmatched.iter().position(|candidate| candidate == row) {
            Some(at) => {
                unmatched.swap_remove(at);
            }
            None => missing.push(row),
        }
    }
    let rejections = compare_rejected(dir, &manifest, &rejected)?;
    if missing.is_empty() && unmatched.is_empty() && rejections.is_empty() {
        return Ok(Passed { component, built: stale, rows: actual.len() });
    }
    let mut report = format!(
        "{}: {} rows written, {} expected ({})",
        manifest.name,
        actual.len(),
        expected.len(),
        manifest.test.expected.display()
    );
    for row in missing.iter().take(10) {
        report.push_str(&format!("\n  missing:    {row}"));
    }
    for row in unmatched.iter().take(10) {
        report.push_str(&format!("\n  unexpected: {row}"));
    }
    for line in rejections.iter().take(20) {
        report.push_str(&format!("\n  {line}"));
    }
    Err(GuestError::TestFailed(report))
}

/// One dead-lettered row as `{"row": <the row>, "error": <message>}` (the dead letter's `raw`
/// holds the row's JSON, hex-encoded by the JSON writer).
fn rejected_row(letter: &Value) -> Value {
    let decoded = letter["raw"]
        .as_str()
        .and_then(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
                .collect::<Option<Vec<u8>>>()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .map_or(Value::Null, without_nulls);
    serde_json::json!({ "row": decoded, "error": letter["error"] })
}

/// The differences between the rows the pipeline rejected and `expected-rejected.jsonl` (none
/// when the plugin has no such file).
fn compare_rejected(dir: &Path, manifest: &Manifest, rejected: &Path) -> Result<Vec<String>, GuestError> {
    let expected_path = dir.join(&manifest.test.expected_rejected);
    if !expected_path.exists() {
        return Ok(Vec::new());
    }
    let expected = read_rows(&expected_path)?;
    let mut actual: Vec<Value> =
        if rejected.exists() { read_rows(rejected)?.iter().map(rejected_row).collect() } else { Vec::new() };
    let mut differences = Vec::new();
    for want in &expected {
        let part = want["error"].as_str().unwrap_or_default();
        let found = actual.iter().position(|got| {
            without_nulls(got["row"].clone()) == without_nulls(want["row"].clone())
                && got["error"].as_str().is_some_and(|error| error.contains(part))
        });
        match found {
            Some(at) => {
                actual.swap_remove(at);
            }
            None => differences.push(format!("not rejected as expected: {want}")),
        }
    }
    differences.extend(actual.iter().map(|got| format!("rejected unexpectedly: {got}")));
    Ok(differences)
}
