//! The traits every source, operator and sink implements, and the errors they report.
//!
//! A component goes through three stages: a *spec* (its typed YAML config, read by its registered
//! kind's `parse`), a *plan* (validated against its input schema at load time: output
//! schema, parallelism, a factory) and *instances* (one per subtask, created when the job starts).
//! Sources and sinks are async (they wait on I/O, backpressure and their destination); operators
//! are synchronous per batch, asynchronous (lookups) or stateful, and are driven by the engine's
//! task loop.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use tokio_util::sync::CancellationToken;

use super::checkpoint::KeyedState;
use super::coordinator::SourceCheckpoints;
use super::delivery::Delivery;
use super::metrics::ComponentMetrics;
use super::output::{DownstreamClosed, Output};
use crate::errors::{ErrorPolicy, RecordErrorHandler};
use weir_config::SpecIssue;

/// A boxed, sendable future (sources are trait objects).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a component fails with while running. Each variant says whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An I/O operation failed (files, stdin, stdout).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path or resource.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be decoded and the error policy is `fail`.
    #[error("bad record at {position}: {reason}")]
    BadRecord {
        /// File, line and byte offset (or stream position) of the record.
        position: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An Arrow kernel or encoder failed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// Writing Parquet failed.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An expression failed while evaluating a batch.
    #[error("expression `{expression}` failed: {reason}")]
    Expression {
        /// The SQL text.
        expression: String,
        /// DataFusion's reason.
        reason: String,
    },
    /// A downstream task went away.
    #[error(transparent)]
    Downstream(#[from] DownstreamClosed),
    /// An external system (broker, database, HTTP endpoint) could not be reached or refused the
    /// work after retries.
    #[error("{system} at {address}: {reason}")]
    External {
        /// Which kind of system (`kafka`, `postgres`, ...).
        system: &'static str,
        /// Where: host:port, URL or DSN without secrets.
        address: String,
        /// The client's error.
        reason: String,
    },
    /// A plugin failed in a way that is not about particular rows (the plugin runtime's typed
    /// error, converted where it is defined).
    #[error(transparent)]
    Plugin(Box<dyn std::error::Error + Send + Sync>),
    /// Taking or restoring a checkpoint of this component failed (state that does not decode,
    /// a component that cannot be checkpointed).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A fault injected on purpose (`WEIR_FAULTS`, [`crate::faults`]).
    #[error("injected fault: {0}")]
    Injected(String),
}

impl RuntimeError {
    /// Whether trying the same thing again could succeed (transient I/O), as opposed to bad
    /// data or a bad pipeline.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    /// An external-system failure.
    pub fn external(system: &'static str, address: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::External { system, address: address.into(), reason: reason.to_string() }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

/// Shared facts a component needs while planning.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// Directory of the pipeline file; relative paths in components resolve against it.
    pub base_dir: PathBuf,
    /// Rows per batch that sources aim for.
    pub batch_size: usize,
    /// Default parallelism of stateless transforms.
    pub default_parallelism: usize,
    /// The component being planned (`transforms.tag`), for what it registers.
    pub component: String,
    /// Its `on_error` policy (a shared option, read by the pipeline layer).
    pub on_error: ErrorPolicy,
    /// Its `parallelism` option, when it has one (a shared option; checked to be at least 1).
    pub parallelism: Option<usize>,
    /// Job-wide services of the layers above the engine (the plugin registry, the function
    /// catalog, the dimension tables), looked up by type.
    pub resources: Resources,
}

impl PlanContext {
    /// The job's shared `T`, or an empty one when the job has none (a pipeline without plugins
    /// or tables).
    pub fn resource<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        self.resources.get::<T>().unwrap_or_default()
    }

    /// Resolves a path from the pipeline file against the pipeline's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        if path.is_absolute() { path } else { self.base_dir.join(path) }
    }
}

/// Job-wide services keyed by their type. The engine's contracts cannot name the plugin registry
/// or the function catalog (they live in crates above it); the pipeline front end puts them here
/// and the components that use them take them out by type.
#[derive(Clone, Default)]
pub struct Resources(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl Resources {
    /// Adds (or replaces) the job's `T`.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        self.0.insert(TypeId::of::<T>(), value);
    }

    /// The job's `T`, if it has one.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.get(&TypeId::of::<T>()).cloned().and_then(|value| value.downcast::<T>().ok())
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resources({} entries)", self.0.len())
    }
}

// ---------------------------------------------------------------- sources

/// A source's typed config.
pub trait SourceSpec: Send + Sync + std::fmt::Debug {
    /// Validates the config, fixes the output schema.
    ///
    /// # Errors
    /// A [`SpecIssue`] pointing at the offending option.
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue>;
}

/// A validated source.
#[derive(Debug, Clone)]
pub struct PlannedSource {
    /// Output schema.
    pub schema: SchemaRef,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Creates one instance per subtask.
    pub factory: Arc<dyn SourceFactory>,
}

/// Creates source instances.
pub trait SourceFactory: Send + Sync + std::fmt::Debug {
    /// One instance (the subtask it runs as is in its [`SourceContext`]).
    fn create(&self) -> Box<dyn Source>;
}

/// A planned source is its own factory: every subtask runs a clone of it, and reads which subtask
/// it is from [`SourceContext::subtask`].
impl<T: Source + Clone + Sync + std::fmt::Debug + 'static> SourceFactory for T {
    fn create(&self) -> Box<dyn Source> {
        Box::new(self.clone())
    }
}

/// Everything a running source subtask uses.
#[derive(Debug)]
pub struct SourceContext {
    /// Component name.
    pub component: Arc<str>,
    /// Which subtask this is, from 0.
    pub subtask: usize,
    /// How many subtasks the source runs as.
    pub parallelism: usize,
    /// Where batches go.
    pub output: Output,
    /// Bad-record handling (fail / skip / dead-letter).
    pub errors: RecordErrorHandler,
    /// Cancelled when the job stops (Ctrl-C): the source returns promptly, without error.
    pub stop: CancellationToken,
    /// This component's counters.
    pub metrics: Arc<ComponentMetrics>,
    /// Whether [`SourceContext::end`] already ended the output.
    pub ended: bool,
    /// The barriers this subtask is asked for and the position it restores, when the job
    /// takes checkpoints.
    pub checkpoints: Option<SourceCheckpoints>,
}

impl SourceContext {
    /// Ends this source's output (dead letters flushed, `End` sent downstream) before `run`
    /// returns. Sources that acknowledge what sinks confirmed call it when they stop reading, then
    /// wait for the outstanding deliveries (which the sinks settle when `End` makes them close)
    /// and acknowledge them before disconnecting. Otherwise the engine ends the output after `run`.
    ///
    /// # Errors
    /// [`RuntimeError::Downstream`] if a downstream task has gone.
    pub async fn end(&mut self) -> Result<(), RuntimeError> {
        if !self.ended {
            self.ended = true;
            self.errors.finish().await?;
            self.output.broadcast(super::Message::End).await?;
        }
        Ok(())
    }

    /// The position this subtask starts from, when the job restored a checkpoint.
    pub fn restored_position(&self) -> Option<&str> {
        self.checkpoints.as_ref().and_then(SourceCheckpoints::restored)
    }

    /// Between two batches: if a checkpoint is asked for, reports `position()` (everything this
    /// subtask emitted so far) and sends the barrier downstream. Sources that can be checkpointed
    /// call it after every batch, and when [`SourceContext::barrier_requested`] wakes them.
    ///
    /// # Errors
    /// [`RuntimeError::Downstream`] if a downstream task has gone.
    pub async fn offer_barrier(&mut self, position: impl FnOnce() -> Option<String>) -> Result<(), RuntimeError> {
        let Some(epoch) = self.checkpoints.as_mut().and_then(SourceCheckpoints::due) else { return Ok(()) };
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.report_position(epoch, position());
        }
        self.errors.barrier(epoch).await?;
        self.output.broadcast(super::Message::Barrier(epoch)).await?;
        Ok(())
    }

    /// Waits until a checkpoint is asked for (never, without checkpoints): a source that waits
    /// for input selects on it, so an idle source does not hold a checkpoint up.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn barrier_requested(&mut self) {
        match &mut self.checkpoints {
            Some(checkpoints) => checkpoints.requested().await,
            None => std::future::pending().await,
        }
    }

    /// Waits until `deadline` (rate limiting). Returns `false`, early, if the job is stopping.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_until(&self, deadline: std::time::Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => true,
            () = self.stop.cancelled() => false,
        }
    }
}

/// A running source subtask. It returns when its input is exhausted or `stop` is cancelled;
/// the engine then flushes dead letters and sends `End` downstream.
#[async_trait::async_trait]
pub trait Source: Send {
    /// Produces batches into `ctx.output` until done.
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError>;

    /// Whether the source takes part in checkpoints: it calls [`SourceContext::offer_barrier`]
    /// between batches with a position it resumes from ([`SourceContext::restored_position`]).
    /// A job that takes checkpoints refuses a source that does not.
    fn checkpointable(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------- transforms

/// A transform's typed config.
pub trait TransformSpec: Send + Sync + std::fmt::Debug {
    /// Validates the config against the input schema (expressions type-check here).
    ///
    /// # Errors
    /// A [`SpecIssue`] pointing at the offending option.
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue>;
}

/// A validated transform.
#[derive(Debug, Clone)]
pub struct PlannedTransform {
    /// Output schema.
    pub schema: SchemaRef,
    /// Creates one operator per subtask.
    pub factory: Arc<dyn OperatorFactory>,
    /// How input rows are spread over the subtasks.
    pub partitioning: Partitioning,
}

/// How a transform's input rows are spread over its subtasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    /// Any subtask may take any row (stateless steps).
    Any,
    /// Rows with equal values in these input columns go to the same subtask (keyed state).
    Hash(Vec<usize>),
    /// One subtask sees every row (a global window or aggregate without `group_by`).
    Single,
}

/// Creates operator instances.
pub trait OperatorFactory: Send + Sync + std::fmt::Debug {
    /// A fresh operator for one subtask.
    fn create(&self) -> OperatorInstance;
}

/// A running operator: synchronous per batch, or asynchronous (it waits on external systems).
pub enum OperatorInstance {
    /// CPU work per batch ([`Operator`]).
    Sync(Box<dyn Operator>),
    /// I/O per batch, several batches in flight ([`AsyncOperator`]).
    Async(Box<dyn AsyncOperator>),
    /// State across batches, driven by watermarks and timers ([`StatefulOperator`]).
    Stateful(Box<dyn StatefulOperator>),
}

impl OperatorInstance {
    /// Wraps a synchronous operator.
    pub fn sync(operator: impl Operator + 'static) -> Self {
        Self::Sync(Box::new(operator))
    }
}

/// A synchronous, batch-at-a-time operator.
pub trait Operator: Send {
    /// Processes one input batch, appending results to `out`; rows that fail go to `errors`
    /// (the step's `on_error` policy).
    ///
    /// # Errors
    /// Evaluation failures and failed rows under `fail`; the task stops and the job fails.
    fn process(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
        errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError>;

    /// Whether `process` runs plugin code: the engine then runs it off the async workers, so a
    /// slow plugin never stalls other tasks.
    fn runs_plugins(&self) -> bool {
        false
    }

    /// Called when every input ended; emit anything held back.
    ///
    /// # Errors
    /// As for [`Operator::process`].
    fn finish(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// A row an asynchronous operator could not process; it goes to the step's `on_error` policy.
#[derive(Debug, Clone)]
pub struct FailedRow {
    /// Which row of the input batch.
    pub row: usize,
    /// Where it was in the stream, for the dead letter (`input row 12 of ...`).
    pub position: String,
    /// Why it failed.
    pub reason: String,
}

/// What an asynchronous operator made of one input batch.
#[derive(Debug, Default)]
pub struct AsyncOutput {
    /// Output batches, in order.
    pub batches: Vec<RecordBatch>,
    /// The input batch, when rows failed (dead letters carry the row itself).
    pub input: Option<RecordBatch>,
    /// Rows of `input` that failed.
    pub failed: Vec<FailedRow>,
}

/// An operator that waits on an external system per batch (lookup joins). The engine keeps up
/// to [`AsyncOperator::capacity`] batches in flight and emits their results in input order
/// (Flink's ordered async I/O), so a slow lookup overlaps with the next batches instead of
/// stalling the stream. Watermarks, barriers and `End` wait until every batch before them is out.
pub trait AsyncOperator: Send {
    /// How many batches may be in flight at once.
    fn capacity(&self) -> usize;

    /// Starts work on one batch. The future owns what it needs, so several run concurrently;
    /// `stop` is cancelled when the job is stopping (work that waits for an external system to
    /// come back should then give up).
    fn start(
        &mut self,
        batch: RecordBatch,
        stop: &CancellationToken,
    ) -> BoxFuture<'static, Result<AsyncOutput, RuntimeError>>;
}

/// Where a [`StatefulOperator`] puts what it emits. Each result batch carries the deliveries it
/// completes: a window holds the deliveries of the batches whose rows it keeps and hands them on
/// with the results it fires, so a source acknowledges input only once the results made from it
/// are durable.
#[derive(Debug, Default)]
pub struct Emitter {
    /// Result batches with their deliveries, in order.
    pub batches: Vec<(RecordBatch, Delivery)>,
    /// Rows too late for their window, for the `<name>.late` side output (or counted).
    pub late: Vec<(RecordBatch, Delivery)>,
    /// Rows the state refused (a plugin aggregate's state limit), for the step's `on_error`.
    pub refused: Vec<RefusedRow>,
}

/// A row a stateful step could not fold into its state.
#[derive(Debug, Clone)]
pub struct RefusedRow {
    /// Where it was (`input row 7, window [10000, 20000)`).
    pub position: String,
    /// The row as JSON.
    pub raw: Vec<u8>,
    /// Why.
    pub reason: String,
}

impl Emitter {
    /// Queues a result batch.
    pub fn emit(&mut self, batch: RecordBatch, delivery: Delivery) {
        self.batches.push((batch, delivery));
    }
}

/// An operator that keeps state across batches (windows, keyed aggregates): it owns the
/// deliveries of the batches it takes, reacts to watermarks, and may run on a processing-time
/// timer.
pub trait StatefulOperator: Send {
    /// Takes one input batch. Rows that cannot be processed (no event time) go to `errors`.
    ///
    /// # Errors
    /// Evaluation failures and failed rows under `on_error: fail`.
    fn process(
        &mut self,
        batch: RecordBatch,
        delivery: Delivery,
        out: &mut Emitter,
        errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError>;

    /// Event time reached `watermark`: emit what is complete and free what can no longer change.
    /// The engine forwards the watermark after the emitted batches.
    ///
    /// # Errors
    /// As for [`StatefulOperator::process`].
    fn on_watermark(&mut self, watermark: super::EventTime, out: &mut Emitter) -> Result<(), RuntimeError>;

    /// How often [`StatefulOperator::on_timer`] runs (processing-time windows, early firing).
    fn timer_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// A processing-time tick.
    ///
    /// # Errors
    /// As for [`StatefulOperator::process`].
    fn on_timer(&mut self, _out: &mut Emitter) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Every input ended: emit everything still open (bounded inputs end event time).
    ///
    /// # Errors
    /// As for [`StatefulOperator::process`].
    fn finish(&mut self, out: &mut Emitter) -> Result<(), RuntimeError>;

    /// Bytes of state held now (reported per operator in the metrics).
    fn state_bytes(&self) -> usize;

    /// Open groups now: (window, key) pairs, or keys for a running aggregate.
    fn state_groups(&self) -> usize;

    /// Whether the operator runs plugin code (Wasm aggregates): the engine then runs it off the
    /// async workers.
    fn runs_plugins(&self) -> bool {
        false
    }

    /// Whether [`StatefulOperator::snapshot`] and [`StatefulOperator::restore`] work; a job that
    /// takes checkpoints refuses a step that cannot.
    fn checkpointable(&self) -> bool {
        false
    }

    /// Its state at a checkpoint barrier, by key group ([`KeyedState`]), copied so that
    /// processing goes on while it is uploaded.
    ///
    /// # Errors
    /// State that cannot be encoded.
    fn snapshot(&mut self) -> Result<KeyedState, RuntimeError> {
        Err(RuntimeError::Checkpoint("this step cannot be checkpointed".into()))
    }

    /// Starts from checkpointed state: the key groups this subtask owns now, whichever subtasks
    /// wrote them. Called once, before the first batch.
    ///
    /// # Errors
    /// State that does not decode or does not fit the step (a changed key or aggregate list).
    fn restore(&mut self, _state: KeyedState) -> Result<(), RuntimeError> {
        Err(RuntimeError::Checkpoint("this step cannot be checkpointed".into()))
    }
}

// ---------------------------------------------------------------- sinks

/// A sink's typed config.
pub trait SinkSpec: Send + Sync + std::fmt::Debug {
    /// Validates the config against the input schema.
    ///
    /// # Errors
    /// A [`SpecIssue`] pointing at the offending option.
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue>;
}

/// Creates sink instances.
#[async_trait::async_trait]
pub trait SinkFactory: Send + Sync + std::fmt::Debug {
    /// Opens the sink: files are created and connections made here, when the job starts, not at
    /// validation. Connecting gives up after a bounded time with an error naming the address.
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError>;

    /// Input columns whose rows must reach the sink in order per value (an upsert's key: the
    /// last row written per key wins). The planner then keeps each key's rows in one subtask of
    /// the stateless steps before the sink, as Flink partitions by the key before an upsert sink.
    fn ordered_by(&self) -> Option<Vec<usize>> {
        None
    }
}

/// Everything a running sink uses besides its batches.
#[derive(Debug)]
pub struct SinkContext {
    /// Component name.
    pub component: Arc<str>,
    /// Rows the destination rejects (fail / skip / dead-letter with the destination's error).
    pub errors: RecordErrorHandler,
    /// This component's counters.
    pub metrics: Arc<ComponentMetrics>,
}

/// When a sink's writes become durable, which is when the sources may acknowledge them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `write` returns once the destination confirmed the batch (a database commit, a broker ack).
    OnWrite,
    /// Writes are buffered; they are durable after `flush` (files). The engine flushes at least
    /// five times a second while batches wait for it.
    OnFlush,
    /// The sink decides: writes become durable some time later (files uploaded when they roll),
    /// and [`Sink::durable_writes`] says how many are. The engine calls `flush` at least five
    /// times a second while writes wait, so the sink can roll what is due.
    Deferred,
}

/// A sink, driven batch by batch. Writes are async: network sinks wait on their destination
/// (and retry transient failures with backoff) without blocking the runtime.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// When writes become durable: by default once `write` returns (a database commit, a
    /// broker's acknowledgement); buffering sinks say otherwise.
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    /// With [`Durability::Deferred`]: every write before this count (the first write is 0) is
    /// durable.
    fn durable_writes(&self) -> u64 {
        0
    }

    /// Writes one batch. Rows the destination rejects go to `ctx.errors`.
    ///
    /// # Errors
    /// I/O or encoding failures, a destination that stays unreachable after retries, or a
    /// rejected row under `on_error: fail`.
    async fn write(&mut self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError>;

    /// Makes everything written so far durable or visible (called at barriers, periodically
    /// while writes wait for it, and before close).
    ///
    /// # Errors
    /// I/O failures.
    async fn flush(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Flushes and completes the output (files are complete when this returns).
    ///
    /// # Errors
    /// I/O failures.
    async fn close(&mut self) -> Result<(), RuntimeError>;
}
