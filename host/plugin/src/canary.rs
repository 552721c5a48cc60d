//! Canary (shadow) runs: a candidate version runs on a sample of the batches the current
//! version processes, beside it, and its output is compared, never emitted.
//!
//! The serving path pays one atomic increment per batch and, for a sampled batch, a clone of
//! the argument arrays (reference counts) into a bounded queue: the candidate runs on its own
//! thread, with its own instances, so a slow or trapping candidate cannot slow the job. When the
//! queue is full the sample is skipped (and counted). The report says how many rows were
//! compared, how many differ (with a few examples: the arguments as JSON, both results), the
//! candidate's traps, and the cost per row of each version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::kernels::cmp::distinct;
use arrow::datatypes::{Field, Schema};
use arrow::util::display::array_value_to_string;

use super::call::{RowFailure, ScalarCaller, ScalarResult, TableCaller, TableResult};
use super::registry::{PluginHandle, Version};
use super::{Limits, Plugin};

/// Differences kept as examples.
pub const EXAMPLES: usize = 5;

/// Samples waiting for the candidate before new ones are skipped.
const QUEUE: usize = 4;

/// What the current version produced for one sampled batch.
enum Produced {
    Scalar(ScalarResult),
    Table(TableResult),
}

struct Sample {
    function: String,
    args: Vec<ArrayRef>,
    rows: usize,
    produced: Produced,
    elapsed: Duration,
}

/// One row on which the versions disagree.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Difference {
    /// The function.
    pub function: String,
    /// The arguments, as a JSON object (`arg1`, `arg2`, ...).
    pub args: String,
    /// What the current version returned (or its error).
    pub current: String,
    /// What the candidate returned (or its error).
    pub candidate: String,
}

/// The comparison so far.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CanaryReport {
    /// The candidate (`<declared version>+<hash prefix>`).
    pub candidate: String,
    /// Fraction of batches sampled.
    pub sample: f64,
    /// Batches both versions ran.
    pub batches_compared: u64,
    /// Sampled batches skipped because the candidate was still busy.
    pub batches_skipped: u64,
    /// Rows compared.
    pub rows_compared: u64,
    /// Rows whose results (or failure) differ.
    pub rows_differing: u64,
    /// Candidate calls that failed as a whole (trap outside a row, contract breach).
    pub candidate_failures: u64,
    /// Nanoseconds per row of the current version, over the compared batches.
    pub current_ns_per_row: f64,
    /// Nanoseconds per row of the candidate, over the compared batches.
    pub candidate_ns_per_row: f64,
    /// The first differing rows.
    pub examples: Vec<Difference>,
    /// The last failure of the candidate, if any.
    pub last_failure: Option<String>,
    #[serde(skip)]
    current_nanos: u128,
    #[serde(skip)]
    candidate_nanos: u128,
}

/// A candidate version running in the shadow of the current one.
pub struct Canary {
    version: Arc<Version>,
    every: u64,
    batches: AtomicU64,
    queue: SyncSender<Sample>,
    report: Arc<Mutex<CanaryReport>>,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary").field("candidate", &self.version.label()).field("every", &self.every).finish()
    }
}

impl Canary {
    /// Starts the candidate's worker thread; `sample` is the fraction of batches to compare
    /// (every `round(1 / sample)`-th batch).
    pub fn start(candidate: Arc<Plugin>, limits: Limits, sample: f64) -> Self {
        let sample = sample.clamp(0.0001, 1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let every = (1.0 / sample).round().max(1.0) as u64;
        let handle = PluginHandle::fixed(Arc::clone(&candidate), limits);
        let version = handle.current();
        let report =
            Arc::new(Mutex::new(CanaryReport { candidate: version.label(), sample, ..CanaryReport::default() }));
        let (queue, samples) = std::sync::mpsc::sync_channel(QUEUE);
        let worker_report = Arc::clone(&report);
        let spawned = std::thread::Builder::new()
            .name("weir-canary".into())
            .spawn(move || run_worker(&handle, limits, &samples, &worker_report));
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the canary thread; no batches will be compared");
        }
        Self { version, every, batches: AtomicU64::new(0), queue, report }
    }

    /// The candidate version.
    pub fn version(&self) -> &Arc<Version> {
        &self.version
    }

    /// The comparison so far.
    pub fn report(&self) -> CanaryReport {
        self.report.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn sampled(&self) -> bool {
        self.batches.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.every)
    }

    fn offer(&self, sample: Sample) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(sample) {
            self.report.lock().unwrap_or_else(PoisonError::into_inner).batches_skipped += 1;
        }
    }

    /// Offers a scalar batch the current version just processed.
    pub fn offer_scalar(
        &self,
        function: &str,
        args: &[ArrayRef],
        rows: usize,
        result: &ScalarResult,
        elapsed: Duration,
    ) {
        if self.sampled() {
            let produced =
                Produced::Scalar(ScalarResult { values: Arc::clone(&result.values), failed: result.failed.clone() });
            self.offer(Sample { function: function.to_owned(), args: args.to_vec(), rows, produced, elapsed });
        }
    }

    /// Offers a table-function batch the current version just processed.
    pub fn offer_table(&self, function: &str, args: &[ArrayRef], rows: usize, result: &TableResult, elapsed: Duration) {
        if self.sampled() {
            let produced = Produced::Table(TableResult {
                parents: result.parents.clone(),
                columns: result.columns.clone(),
                failed: result.failed.clone(),
            });
            self.offer(Sample { function: function.to_owned(), args: args.to_vec(), rows, produced, elapsed });
        }
    }
}

enum Caller {
    Scalar(ScalarCaller),
    Table(TableCaller),
}

fn run_worker(handle: &Arc<PluginHandle>, limits: Limits, samples: &Receiver<Sample>, report: &Mutex<CanaryReport>) {
    let mut callers: HashMap<String, Caller> = HashMap::new();
    for sample in samples {
        let caller = callers.entry(sample.function.clone()).or_insert_with(|| match sample.produced {
            Produced::Scalar(_) => Caller::Scalar(ScalarCaller::new(Arc::clone(handle), limits, &sample.function)),
            Produced::Table(_) => Caller::Table(TableCaller::new(Arc::clone(handle), limits, &sample.function)),
        });
        let started = Instant::now();
        let outcome = match caller {
            Caller::Scalar(caller) => caller.call(&sample.args, sample.rows).map(Produced::Scalar),
            Caller::Table(caller) => caller.call(&sample.args, sample.rows).map(Produced::Table),
        };
        let elapsed = started.elapsed();
        let mut report = report.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Err(err) => {
                report.candidate_failures += 1;
                report.last_failure = Some(err.to_string());
            }
            Ok(candidate) => {
                let differing = compare(&sample, &candidate, &mut report.examples);
                report.batches_compared += 1;
                report.rows_compared += sample.rows as u64;
                report.rows_differing += differing;
                report.current_nanos += sample.elapsed.as_nanos();
                report.candidate_nanos += elapsed.as_nanos();
                #[allow(clippy::cast_precision_loss)]
                let rows = report.rows_compared.max(1) as f64;
                #[allow(clippy::cast_precision_loss)]
                {
                    report.current_ns_per_row = report.current_nanos as f64 / rows;
                    report.candidate_ns_per_row = report.candidate_nanos as f64 / rows;
                }
            }
        }
    }
}

fn args_json(args: &[ArrayRef], row: usize) -> String {
    let fields: Vec<Field> = args
        .iter()
        .enumerate()
        .map(|(i, a)| Field::new(format!("arg{}", i + 1), a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), args.to_vec())
        .map(|batch| String::from_utf8_lossy(&weir_engine::errors::row_as_json(&batch, row)).trim().to_owned())
        .unwrap_or_default()
}

/// Per input row: the error, or the value(s) as text.
fn rendered(produced: &Produced, rows: usize) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new(); rows];
    let failed: &[RowFailure] = match produced {
        Produced::Scalar(result) => {
            for (row, text) in out.iter_mut().enumerate() {
                *text = value_text(&result.values, row);
            }
            &result.failed
        }
        Produced::Table(result) => {
            let mut per_row: Vec<Vec<String>> = vec![Vec::new(); rows];
            for (i, &parent) in result.parents.iter().enumerate() {
                let values: Vec<String> = result.columns.iter().map(|c| value_text(c, i)).collect();
                if let Some(slot) = per_row.get_mut(parent as usize) {
                    slot.push(format!("({})", values.join(", ")));
                }
            }
            for (text, produced) in out.iter_mut().zip(per_row) {
                *text = format!("[{}]", produced.join(", "));
            }
            &result.failed
        }
    };
    for failure in failed {
        if let Some(text) = out.get_mut(failure.row) {
            *text = format!("error: {}", failure.reason);
        }
    }
    out
}

fn value_text(array: &ArrayRef, row: usize) -> String {
    if array.is_null(row) { "NULL".into() } else { array_value_to_string(array, row).unwrap_or_default() }
}

/// Counts differing rows and keeps the first examples.
fn compare(sample: &Sample, candidate: &Produced, examples: &mut Vec<Difference>) -> u64 {
    // Scalar results of the same type compare with Arrow's kernel; the rest as text.
    let differs: Vec<bool> = match (&sample.produced, candidate) {
        (Produced::Scalar(current), Produced::Scalar(new))
            if current.failed.is_empty()
                && new.failed.is_empty()
                && current.values.data_type() == new.values.data_type() =>
        {
            match distinct(&current.values, &new.values) {
                Ok(mask) => (0..sample.rows).map(|row| mask.value(row)).collect(),
                Err(_) => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let (current, new) = if differs.is_empty() || differs.iter().any(|d| *d) {
        (rendered(&sample.produced, sample.rows), rendered(candidate, sample.rows))
    } else {
        return 0;
    };
    let mut count = 0;
    for row in 0..sample.rows {
        let differ = differs.get(row).copied().unwrap_or_else(|| current[row] != new[row]);
        if differ {
            count += 1;
            if examples.len() < EXAMPLES {
                examples.push(Difference {
                    function: sample.function.clone(),
                    args: args_json(&sample.args, row),
                    current: current[row].clone(),
                    candidate: new[row].clone(),
                });
            }
        }
    }
    count
}
