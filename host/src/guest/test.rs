//! `weir plugin test`: runs the plugin's sample pipeline in the sandbox and compares what it
//! wrote with the expected output.
//!
//! Rows are compared as a multiset of JSON objects (parallel steps may reorder rows), with a
//! NULL field and an absent field the same (the JSON writer leaves NULLs out; expected files may
//! spell them out).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{GuestError, Manifest};
use crate::engine::runner;
use crate::pipeline;

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

/// The newest modification time of the plugin's own files (build outputs and test output
/// excluded).
fn newest_source(dir: &Path, skip: &[PathBuf]) -> Option<SystemTime> {
    let mut newest = None;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if skip.contains(&path) || matches!(name.to_str(), Some("build" | "target" | "node_modules" | ".git")) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if let Ok(modified) = meta.modified() {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
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
/// pipeline and compares.
///
/// # Errors
/// Build failures, a failing pipeline, and [`GuestError::TestFailed`] listing the differences.
pub fn run(dir: &Path) -> Result<Passed, GuestError> {
    let manifest = Manifest::load(dir)?;
    let component = super::output_path(dir, &manifest);
    let output = dir.join(&manifest.test.output);
    let built_at = std::fs::metadata(&component).and_then(|meta| meta.modified()).ok();
    // A newer `weir` carries a newer SDK: that makes the component stale too.
    let weir_built = std::env::current_exe().and_then(std::fs::metadata).and_then(|meta| meta.modified()).ok();
    let newest = newest_source(dir, std::slice::from_ref(&output)).max(weir_built);
    let stale = match (built_at, newest) {
        (Some(built), Some(source)) => source > built,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if stale {
        super::build(dir)?;
    }

    let pipeline_path = dir.join(&manifest.test.pipeline);
    let pipeline = pipeline::load(&pipeline_path).map_err(|err| GuestError::TestFailed(err.to_string()))?;
    if output.exists() {
        std::fs::remove_file(&output)
            .map_err(|err| GuestError::Io { path: output.clone(), reason: err.to_string() })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| GuestError::TestFailed(format!("cannot start the runtime: {err}")))?;
    let metrics = runner::metrics_for(&pipeline);
    runtime
        .block_on(runner::run(&pipeline, &metrics, CancellationToken::new()))
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
    if missing.is_empty() && unmatched.is_empty() {
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
    Err(GuestError::TestFailed(report))
}
