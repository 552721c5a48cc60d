//! The dataflow engine: tasks connected by bounded channels carrying Arrow batches.
//!
//! Owns the message protocol ([`Message`]), the input side of a task ([`gate::InputGate`]:
//! fan-in, watermark minimum, barrier alignment, end detection), the output side
//! ([`output::Output`]: fan-out and partitioning across subtasks), acknowledgements from sinks back
//! to sources ([`delivery`]), the contracts that sources, operators, sinks ([`component`]) and
//! dimension tables ([`table`]) implement, checkpoints ([`checkpoint`]: what is stored;
//! [`coordinator`]: triggering, collecting, committing and restoring them), error policies and dead letters ([`errors`]),
//! per-component metrics ([`metrics`]), event time at the sources ([`event_time`]: timestamps,
//! watermarks, idleness), the registry of component kinds ([`registry`]), restart strategies ([`restart`]), faults injected for recovery tests ([`faults`]), the runnable job graph
//! ([`graph`]) and the runner that turns it into running tasks ([`runner`]).
//!
//! It depends only on `weir-config`: formats, plugins, operators, connectors and the pipeline
//! front end all sit above it.

pub mod checkpoint;
pub mod component;
pub mod coordinator;
pub mod delivery;
pub mod errors;
pub mod event_time;
pub mod faults;
pub mod gate;
pub mod graph;
pub mod key_group;
pub mod metrics;
pub mod output;
pub mod registry;
pub mod restart;
pub mod runner;
pub mod rusage;
pub mod table;

use arrow::array::RecordBatch;

use delivery::Delivery;

/// Event time in milliseconds since the Unix epoch.
pub type EventTime = i64;

/// What flows on every edge of the graph. Channels are bounded: a full channel makes the
/// sender wait, which is how backpressure reaches the sources.
#[derive(Debug, Clone)]
pub enum Message {
    /// Data; the schema is fixed for the edge when the pipeline starts. The delivery tells the
    /// source when every sink has made the batch durable ([`delivery`]).
    Batch(RecordBatch, Delivery),
    /// Event time has reached this value on this input: no later row will be older.
    Watermark(EventTime),
    /// This input has nothing to say for now (an idle source partition): until its next batch
    /// or watermark, it does not hold back the watermark of the task it feeds.
    Idle,
    /// Checkpoint barrier for an epoch; aligned at multi-input tasks.
    Barrier(u64),
    /// This input is exhausted.
    End,
}

/// Runs code that may block for a while (plugin calls) without stalling the async workers: on a
/// multi-threaded runtime, tokio moves the worker's other tasks to another thread first.
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
