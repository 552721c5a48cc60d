//! What happens to a record that cannot be decoded: the source's error policy.
//!
//! - `fail`: the job stops with an error naming the position and the reason.
//! - `skip`: the record is counted (`component_discarded_events_total`) and a rate-limited
//!   warning is logged.
//! - `dead-letter`: the original bytes, the reason, the component and the position become a row
//!   of [`dead_letter_schema`] sent to the sink named by `dead_letter:`.
//!
//! Nothing is dropped silently: every bad record ends up in exactly one of those three places.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use arrow::array::{BinaryBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

use crate::component::RuntimeError;
use crate::delivery::Delivery;
use crate::metrics::ComponentMetrics;
use crate::output::{DownstreamClosed, Output};

/// A source's policy for bad records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Stop the job with an error (the default: surprises should be loud).
    #[default]
    Fail,
    /// Count and skip.
    Skip,
    /// Send to the dead-letter sink.
    DeadLetter,
    /// Keep retrying until it works (lookup joins: nothing is lost while a database is away).
    Retry,
}

/// The schema of dead-letter rows.
pub fn dead_letter_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("component", DataType::Utf8, false),
            Field::new("position", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new("raw", DataType::Binary, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// One record that could not be decoded.
#[derive(Debug, Clone)]
pub struct BadRecord<'a> {
    /// Where it was: `file.jsonl:7 (byte 312)`, `stdin:3`.
    pub position: String,
    /// The original bytes, without the line terminator.
    pub raw: &'a [u8],
    /// Why it was rejected.
    pub reason: String,
}

const WARN_INTERVAL: Duration = Duration::from_secs(5);

/// Applies the error policy of one source subtask.
#[derive(Debug)]
pub struct RecordErrorHandler {
    component: Arc<str>,
    policy: ErrorPolicy,
    metrics: Arc<ComponentMetrics>,
    dead_letter: Option<Output>,
    pending: DeadLetterRows,
    last_warning: Option<Instant>,
    suppressed_warnings: u64,
    handled: u64,
}

#[derive(Debug, Default)]
struct DeadLetterRows {
    position: StringBuilder,
    error: StringBuilder,
    raw: BinaryBuilder,
    len: usize,
}

impl RecordErrorHandler {
    /// A handler; `dead_letter` must be connected when the policy is `dead-letter` (the
    /// pipeline validator guarantees it).
    pub fn new(
        component: Arc<str>,
        policy: ErrorPolicy,
        metrics: Arc<ComponentMetrics>,
        dead_letter: Option<Output>,
    ) -> Self {
        Self {
            component,
            policy,
            metrics,
            dead_letter,
            pending: DeadLetterRows::default(),
            last_warning: None,
            suppressed_warnings: 0,
            handled: 0,
        }
    }

    /// The component whose records these are.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Records handed to this handler so far, whatever the policy did with them (a sink uses the
    /// difference around a write to count only the rows that reached the destination).
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// The policy this handler applies.
    pub fn policy(&self) -> ErrorPolicy {
        self.policy
    }

    /// Handles one bad record according to the policy.
    ///
    /// # Errors
    /// [`RuntimeError::BadRecord`] under `fail`.
    pub fn handle(&mut self, record: BadRecord<'_>) -> Result<(), RuntimeError> {
        self.handled += 1;
        match self.policy {
            // Components that retry never hand a record here unless retrying cannot help.
            ErrorPolicy::Fail | ErrorPolicy::Retry => {
                self.metrics.record_error();
                Err(RuntimeError::BadRecord { position: record.position, reason: record.reason })
            }
            ErrorPolicy::Skip => {
                self.metrics.record_discarded();
                self.warn(&record);
                Ok(())
            }
            ErrorPolicy::DeadLetter => {
                self.metrics.record_dead_lettered();
                self.pending.position.append_value(&record.position);
                self.pending.error.append_value(&record.reason);
                self.pending.raw.append_value(record.raw);
                self.pending.len += 1;
                Ok(())
            }
        }
    }

    fn warn(&mut self, record: &BadRecord<'_>) {
        let now = Instant::now();
        if self.last_warning.is_some_and(|last| now.duration_since(last) < WARN_INTERVAL) {
            self.suppressed_warnings += 1;
            return;
        }
        tracing::warn!(
            component = %self.component,
            position = %record.position,
            reason = %record.reason,
            suppressed = self.suppressed_warnings,
            "skipping bad record"
        );
        self.last_warning = Some(now);
        self.suppressed_warnings = 0;
    }

    /// Sends pending dead-letter rows. Call after each output batch and before ending.
    ///
    /// # Errors
    /// [`DownstreamClosed`] if the dead-letter sink has gone.
    pub async fn flush(&mut self) -> Result<(), DownstreamClosed> {
        self.flush_with(&Delivery::untracked()).await
    }

    /// Sends pending dead-letter rows as part of `delivery` (the batch they were rejected from):
    /// the source acknowledges that batch only once the dead letters are durable too.
    ///
    /// # Errors
    /// [`DownstreamClosed`] if the dead-letter sink has gone.
    pub async fn flush_with(&mut self, delivery: &Delivery) -> Result<(), DownstreamClosed> {
        if self.pending.len == 0 {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let component = StringBuilder::with_capacity(rows.len, rows.len * self.component.len());
        let batch = build_dead_letters(&self.component, component, rows);
        match &mut self.dead_letter {
            Some(output) => output.deliver(batch, delivery.fork()).await,
            None => Ok(()),
        }
    }

    /// Rows waiting in the dead-letter buffer.
    pub fn pending(&self) -> usize {
        self.pending.len
    }
}

impl RecordErrorHandler {
    /// Flushes pending dead letters and passes a checkpoint barrier to the dead-letter sink, so
    /// that a checkpoint covers the dead letters of the rows before it.
    ///
    /// # Errors
    /// [`DownstreamClosed`] if the dead-letter sink has gone.
    pub async fn barrier(&mut self, epoch: u64) -> Result<(), DownstreamClosed> {
        self.flush().await?;
        match &mut self.dead_letter {
            Some(output) => output.broadcast(crate::Message::Barrier(epoch)).await,
            None => Ok(()),
        }
    }

    /// Sends pending dead letters, then `End`, to the dead-letter sink.
    ///
    /// # Errors
    /// [`DownstreamClosed`] if the dead-letter sink has gone.
    pub async fn finish(&mut self) -> Result<(), DownstreamClosed> {
        self.flush().await?;
        match &mut self.dead_letter {
            Some(output) => output.broadcast(crate::Message::End).await,
            None => Ok(()),
        }
    }
}

fn build_dead_letters(name: &str, mut component: StringBuilder, mut rows: DeadLetterRows) -> RecordBatch {
    for _ in 0..rows.len {
        component.append_value(name);
    }
    RecordBatch::try_new(
        dead_letter_schema(),
        vec![
            Arc::new(component.finish()),
            Arc::new(rows.position.finish()),
            Arc::new(rows.error.finish()),
            Arc::new(rows.raw.finish()),
        ],
    )
    .expect("dead-letter columns match the dead-letter schema")
}

/// One row of a batch as a JSON object (for dead letters of rows that failed in a step).
pub fn row_as_json(batch: &RecordBatch, row: usize) -> Vec<u8> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    if writer.write(&batch.slice(row, 1)).and_then(|()| writer.finish()).is_err() {
        return Vec::new();
    }
    let mut bytes = writer.into_inner();
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}
