//! Runs a planned pipeline: creates the channels, spawns one task per subtask, and waits.
//!
//! Shutdown is cooperative. Cancelling the stop token makes sources return; each source then
//! sends `End`, which flows through the graph behind the in-flight batches, so every operator
//! drains and every sink flushes and closes before [`run`] returns. If a task fails, the stop
//! token is cancelled and the first root-cause error is returned (errors that are only
//! consequences, such as a closed downstream channel, are reported only if nothing else failed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Message;
use super::component::{
    AsyncOperator, AsyncOutput, Durability, Emitter, Operator, OperatorInstance, Partitioning, RuntimeError, Sink,
    SinkContext, SourceContext, StatefulOperator,
};
use super::coordinator::{Checkpointing, Coordinator, Report, Reporter, Restore, RestoreError, RestorePoint, age};
use super::delivery::Delivery;
use super::gate::{GateEvent, InputGate};
use super::graph::{JobGraph, PlannedComponent, Port, Runnable};
use super::metrics::{ComponentMetrics, PipelineMetrics};
use super::output::{Edge, Output, Route};
use super::restart::Restarts;
use crate::errors::{ErrorPolicy, RecordErrorHandler};

/// A task failed; names the component and subtask.
#[derive(Debug, thiserror::Error)]
#[error("component `{component}` (subtask {subtask}): {source}")]
pub struct RunError {
    /// The component.
    pub component: String,
    /// Which subtask.
    pub subtask: usize,
    /// What went wrong.
    #[source]
    pub source: TaskFailure,
}

/// Why a job did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A task failed.
    #[error(transparent)]
    Task(#[from] RunError),
    /// The checkpoint to start from does not fit the job.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A stop did not finish within the shutdown timeout; the remaining tasks were aborted
    /// without acknowledging what they had not written.
    #[error(
        "the job did not stop within the shutdown timeout ({}); aborted {} without acknowledging \
         what they had not written (brokers deliver it again){}",
        humantime::format_duration(*.timeout),
        .unfinished.join(", "),
        .cause.as_ref().map(|err| format!("; the stop began because {err}")).unwrap_or_default()
    )]
    ShutdownTimedOut {
        /// `settings.shutdown_timeout`.
        timeout: std::time::Duration,
        /// `component (subtask n)` of every task still running.
        unfinished: Vec<String>,
        /// The task failure that started the stop, if one did.
        cause: Option<RunError>,
    },
}

/// How a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskFailure {
    /// The component reported an error.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The task panicked (a bug in weir).
    #[error("panicked: {0}")]
    Panic(String),
}

/// Counters for every component of `job`, to pass to [`run`] and read while it runs.
pub fn metrics_for(job: &JobGraph) -> PipelineMetrics {
    PipelineMetrics {
        components: job
            .components
            .iter()
            .map(|c| (c.name.clone(), c.role, Arc::new(ComponentMetrics::default())))
            .collect(),
        checkpoints: Arc::default(),
    }
}

/// Runs the job until every source ends (or `stop` is cancelled) and every sink closed: wires
/// the channels, spawns one task per subtask, and supervises them.
///
/// # Errors
/// The first component failure, or a stop that took longer than `settings.shutdown_timeout`.
pub async fn run(job: &JobGraph, metrics: &PipelineMetrics, stop: CancellationToken) -> Result<(), JobError> {
    run_with(job, metrics, stop, None).await
}

/// [`run`], taking checkpoints (and starting from one) when `checkpointing` is given, and
/// starting the job again from its latest complete checkpoint when a task fails, as
/// `settings.restart` allows ([`Restarts`]).
///
/// # Errors
/// As [`run`] once the restart strategy gives up, and a checkpoint to restore that does not fit
/// the job ([`RestoreError`]).
pub async fn run_with(
    job: &JobGraph,
    metrics: &PipelineMetrics,
    stop: CancellationToken,
    mut checkpointing: Option<Checkpointing>,
) -> Result<(), JobError> {
    let mut restarts = Restarts::new(job.settings.restart_strategy());
    loop {
        let started = std::time::Instant::now();
        // A failing task cancels its run's token to stop the others; the caller's stop ends all.
        let attempt = stop.child_token();
        let err = match run_once(job, metrics, attempt, checkpointing.clone()).await {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let JobError::Task(failure) = &err else { return Err(err) };
        // A checkpoint that does not fit the job (or a step that cannot be checkpointed) fails
        // the same way every time: not worth a restart.
        if stop.is_cancelled() || matches!(failure.source, TaskFailure::Runtime(RuntimeError::Checkpoint(_))) {
            return Err(err);
        }
        let Some(delay) = restarts.on_failure(started, std::time::Instant::now()) else {
            if restarts.count() > 0 {
                tracing::error!(restarts = restarts.count(), "the restart strategy gives up");
            }
            return Err(err);
        };
        metrics.checkpoints.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            restart = restarts.count(),
            delay = %humantime::format_duration(delay),
            error = %failure,
            "a task failed; restarting the job from its last complete checkpoint"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Err(err),
        }
        if let Some(checkpointing) = &mut checkpointing {
            // The newest complete checkpoint; the one the run started from if none completed since.
            match checkpointing.storage.latest().await {
                Ok(Some(metadata)) => {
                    checkpointing.restore =
                        Some(RestorePoint { storage: Arc::clone(&checkpointing.storage), metadata });
                }
                Ok(None) => {}
                Err(storage) => {
                    tracing::error!(error = %storage, "checkpoint storage unreachable; cannot restart");
                    return Err(err);
                }
            }
        }
    }
}

/// One run of the job, until it ends, is stopped or a task fails.
async fn run_once(
    job: &JobGraph,
    metrics: &PipelineMetrics,
    stop: CancellationToken,
    checkpointing: Option<Checkpointing>,
) -> Result<(), JobError> {
    let mut checkpoints = match checkpointing {
        None => None,
        Some(checkpointing) => {
            let restore = match &checkpointing.restore {
                Some(point) => {
                    let metadata = &point.metadata;
                    let restore =
                        Restore::load(job, point.storage.as_ref(), metadata, checkpointing.allow_non_restored_state)
                            .await?;
                    tracing::info!(
                        checkpoint = metadata.id,
                        age = %humantime::format_duration(Duration::from_secs(age(metadata.completed_at_ms).as_secs())),
                        storage = %point.storage.location(),
                        "restoring from checkpoint"
                    );
                    restore
                }
                None => Restore::default(),
            };
            Some(Checkpoints {
                coordinator: Coordinator::new(job, checkpointing, Arc::clone(&metrics.checkpoints)),
                restore,
            })
        }
    };
    let mut wiring = Wiring::new(job);
    let mut tasks = Tasks::default();
    for (c, component) in job.components.iter().enumerate() {
        let name: Arc<str> = Arc::from(component.name.as_str());
        let component_metrics = Arc::clone(&metrics.components[c].2);
        for (subtask, inputs) in std::mem::take(&mut wiring.receivers[c]).into_iter().enumerate() {
            let task = Subtask {
                name: Arc::clone(&name),
                subtask,
                output: Output::new(
                    Arc::clone(&name),
                    wiring.take_edges(c, Port::Main, subtask),
                    Arc::clone(&component_metrics),
                ),
                dead_letters: wiring.take_edges(c, Port::DeadLetter, subtask),
                late: wiring.take_edges(c, Port::Late, subtask),
                metrics: Arc::clone(&component_metrics),
                inputs,
                index: c,
            };
            task.spawn(job, component, &stop, &mut tasks, checkpoints.as_mut());
        }
    }
    let coordinator = checkpoints.map(|checkpoints| tokio::spawn(checkpoints.coordinator.run(stop.clone())));
    let result = supervise(tasks, &stop, job.settings.shutdown_timeout).await;
    if let Some(coordinator) = coordinator {
        // Every participant is gone, so the coordinator returns once a commit in flight is done.
        let _ = coordinator.await;
    }
    result
}

/// The coordinator while tasks are being spawned, and what they restore.
struct Checkpoints {
    coordinator: Coordinator,
    restore: Restore,
}

/// The job's channels: the input channels of every subtask, and the outgoing edges of every
/// subtask per output port, until the subtask's task takes them.
struct Wiring {
    /// `receivers[c][j]`: the input channels of subtask j of component c.
    receivers: Vec<Vec<Vec<mpsc::Receiver<Message>>>>,
    /// `edges[(u, port)][i]`: the outgoing edges of subtask i of component u on `port`.
    edges: HashMap<(usize, Port), Vec<Vec<Edge>>>,
}

impl Wiring {
    /// One bounded channel per edge and pair of subtasks, routed by each consumer's partitioning.
    fn new(job: &JobGraph) -> Self {
        let capacity = job.settings.channel_capacity;
        let components = &job.components;
        let mut receivers: Vec<Vec<Vec<mpsc::Receiver<Message>>>> =
            components.iter().map(|c| (0..c.parallelism).map(|_| Vec::new()).collect()).collect();
        let mut edges: HashMap<(usize, Port), Vec<Vec<Edge>>> = HashMap::new();
        for (c, component) in components.iter().enumerate() {
            for input in &component.inputs {
                let upstream = components[input.component].parallelism;
                let per_upstream =
                    edges.entry((input.component, input.port)).or_insert_with(|| vec![Vec::new(); upstream]);
                for (i, outgoing) in per_upstream.iter_mut().enumerate() {
                    let mut senders = Vec::with_capacity(component.parallelism);
                    for receivers_of_subtask in receivers[c].iter_mut() {
                        let (sender, receiver) = mpsc::channel(capacity);
                        senders.push(sender);
                        receivers_of_subtask.push(receiver);
                    }
                    let route = match &component.runnable {
                        Runnable::Transform { partitioning: Partitioning::Hash(key), .. }
                            if component.parallelism > 1 =>
                        {
                            Route::Hash(Arc::from(key.as_slice()))
                        }
                        _ if upstream == component.parallelism => Route::Forward(i),
                        _ => Route::RoundRobin(i % component.parallelism),
                    };
                    outgoing.push(Edge::new(senders, route));
                }
            }
        }
        Self { receivers, edges }
    }

    /// Takes the outgoing edges of `subtask` of component `c` on `port` (none if it has none).
    fn take_edges(&mut self, c: usize, port: Port, subtask: usize) -> Vec<Edge> {
        self.edges.get_mut(&(c, port)).map(|per_subtask| std::mem::take(&mut per_subtask[subtask])).unwrap_or_default()
    }
}

/// What one subtask's task is given: its channels, outputs and counters.
struct Subtask {
    name: Arc<str>,
    subtask: usize,
    inputs: Vec<mpsc::Receiver<Message>>,
    output: Output,
    dead_letters: Vec<Edge>,
    late: Vec<Edge>,
    metrics: Arc<ComponentMetrics>,
    /// The component's index in the job graph.
    index: usize,
}

impl Subtask {
    /// Spawns the task that runs this subtask of `component`.
    fn spawn(
        self,
        job: &JobGraph,
        component: &PlannedComponent,
        stop: &CancellationToken,
        tasks: &mut Tasks,
        mut checkpoints: Option<&mut Checkpoints>,
    ) {
        let Subtask { name, subtask, inputs, output, dead_letters, late, metrics, index } = self;
        let cannot_checkpoint = |what: &str| {
            RuntimeError::Checkpoint(format!(
                "a `{}` {what} cannot be checkpointed yet; remove `settings.checkpoint` to run it without",
                component.kind
            ))
        };
        let failed = {
            let name = component.name.clone();
            move |source: RuntimeError| RunError {
                component: name.clone(),
                subtask,
                source: TaskFailure::Runtime(source),
            }
        };
        match &component.runnable {
            Runnable::Source { factory, on_error, watermarks } => {
                let errors = error_handler(&name, *on_error, &metrics, dead_letters);
                let source = factory.create();
                // With event time, the source's batches pass through a watermark assigner.
                let output = match watermarks {
                    None => output,
                    Some(strategy) => {
                        let (sender, receiver) = mpsc::channel(job.settings.channel_capacity);
                        let assigned = Output::new(Arc::clone(&name), output.into_edges(), Arc::default());
                        let strategy = strategy.clone();
                        let failed = failed.clone();
                        tasks.spawn(&component.name, subtask, async move {
                            super::event_time::assign(strategy, receiver, assigned).await.map_err(failed)
                        });
                        Output::new(
                            Arc::clone(&name),
                            vec![Edge::new(vec![sender], Route::Forward(0))],
                            Arc::clone(&metrics),
                        )
                    }
                };
                let mut ctx = SourceContext {
                    component: Arc::clone(&name),
                    subtask,
                    parallelism: component.parallelism,
                    output,
                    errors,
                    stop: stop.clone(),
                    metrics,
                    ended: false,
                    checkpoints: checkpoints.as_mut().map(|checkpoints| {
                        let restored = checkpoints.restore.take_position(index, subtask);
                        checkpoints.coordinator.source(index, subtask, restored)
                    }),
                };
                let refused =
                    (ctx.checkpoints.is_some() && !source.checkpointable()).then(|| cannot_checkpoint("source"));
                tasks.spawn(&component.name, subtask, async move {
                    if let Some(err) = refused {
                        return Err(failed(err));
                    }
                    source.run(&mut ctx).await.map_err(&failed)?;
                    if let Some(checkpoints) = &ctx.checkpoints {
                        checkpoints.finished();
                    }
                    ctx.end().await.map_err(failed)
                });
            }
            Runnable::Transform { factory, on_error, .. } => {
                let errors = error_handler(&name, *on_error, &metrics, dead_letters);
                let gate = InputGate::new(inputs);
                match factory.create() {
                    OperatorInstance::Sync(operator) => tasks.spawn(&component.name, subtask, async move {
                        run_operator(operator, gate, output, errors, &metrics).await.map_err(failed)
                    }),
                    OperatorInstance::Async(operator) => {
                        let stop = stop.clone();
                        tasks.spawn(&component.name, subtask, async move {
                            run_async_operator(operator, gate, output, errors, &metrics, stop).await.map_err(failed)
                        })
                    }
                    OperatorInstance::Stateful(mut operator) => {
                        let late = (!late.is_empty()).then(|| Output::new(Arc::clone(&name), late, Arc::default()));
                        let ending = Ending { stop: stop.clone(), drain: job.settings.drain_on_stop };
                        let (reporter, restored) = match checkpoints.as_mut() {
                            Some(checkpoints) => (
                                Some(checkpoints.coordinator.expect(index, subtask)),
                                checkpoints.restore.take_state(index, subtask),
                            ),
                            None => (None, None),
                        };
                        let refused =
                            (reporter.is_some() && !operator.checkpointable()).then(|| cannot_checkpoint("step"));
                        tasks.spawn(&component.name, subtask, async move {
                            if let Some(err) = refused {
                                return Err(failed(err));
                            }
                            if let Some(state) = restored {
                                crate::faults::check("restore", &name).map_err(&failed)?;
                                let (started, groups) = (std::time::Instant::now(), state.groups.len());
                                operator.restore(state).map_err(&failed)?;
                                tracing::info!(
                                    component = %name,
                                    subtask,
                                    key_groups = groups,
                                    state_bytes = operator.state_bytes(),
                                    ms = started.elapsed().as_millis() as u64,
                                    "state restored"
                                );
                            }
                            run_stateful_operator(operator, gate, output, late, errors, &metrics, ending, reporter)
                                .await
                                .map_err(failed)
                        })
                    }
                };
            }
            Runnable::Sink { factory, on_error } => {
                let errors = error_handler(&name, *on_error, &metrics, dead_letters);
                let mut ctx = SinkContext { component: Arc::clone(&name), errors, metrics };
                let factory = Arc::clone(factory);
                let reporter = checkpoints.as_mut().map(|checkpoints| checkpoints.coordinator.expect(index, subtask));
                tasks.spawn(&component.name, subtask, async move {
                    let sink = factory.create().await.map_err(&failed)?;
                    run_sink(sink, InputGate::new(inputs), &mut ctx, reporter).await.map_err(failed)
                });
            }
        }
    }
}

/// Waits for every task. The first failure stops the job (a failure caused by a downstream task
/// that went away is only reported when nothing else failed); a stop that takes longer than
/// `timeout` aborts what is left.
async fn supervise(mut tasks: Tasks, stop: &CancellationToken, timeout: std::time::Duration) -> Result<(), JobError> {
    let mut root_cause: Option<RunError> = None;
    let mut consequence: Option<RunError> = None;
    let deadline = async {
        stop.cancelled().await;
        tokio::time::sleep(timeout).await;
    };
    let mut deadline = std::pin::pin!(deadline);
    loop {
        let joined = tokio::select! {
            joined = tasks.set.join_next_with_id() => joined,
            () = &mut deadline => {
                let unfinished = tasks.names.values().map(|(name, subtask)| format!("{name} (subtask {subtask})")).collect();
                tasks.set.abort_all();
                while tasks.set.join_next().await.is_some() {}
                tracing::error!(timeout = %humantime::format_duration(timeout), "stop timed out; aborted the job");
                return Err(JobError::ShutdownTimedOut { timeout, unfinished, cause: root_cause.or(consequence) });
            }
        };
        let Some(joined) = joined else { break };
        let result = match joined {
            Ok((id, result)) => {
                tasks.names.remove(&id);
                result
            }
            Err(err) => {
                let (component, subtask) = tasks.names.remove(&err.id()).unwrap_or_else(|| ("?".into(), 0));
                Err(RunError { component, subtask, source: TaskFailure::Panic(err.to_string()) })
            }
        };
        if let Err(err) = result {
            stop.cancel();
            let is_consequence = matches!(err.source, TaskFailure::Runtime(RuntimeError::Downstream(_)));
            let slot = if is_consequence { &mut consequence } else { &mut root_cause };
            if slot.is_none() {
                tracing::error!(component = %err.component, subtask = err.subtask, error = %err.source, "task failed");
                *slot = Some(err);
            }
        }
    }
    match root_cause.or(consequence) {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// The job's tasks, with the component and subtask each one runs (to name what did not stop).
#[derive(Default)]
struct Tasks {
    set: JoinSet<Result<(), RunError>>,
    names: HashMap<tokio::task::Id, (String, usize)>,
}

impl Tasks {
    fn spawn(
        &mut self,
        component: &str,
        subtask: usize,
        task: impl Future<Output = Result<(), RunError>> + Send + 'static,
    ) {
        let id = self.set.spawn(task).id();
        self.names.insert(id, (component.to_owned(), subtask));
    }
}

fn error_handler(
    name: &Arc<str>,
    policy: ErrorPolicy,
    metrics: &Arc<ComponentMetrics>,
    edges: Vec<Edge>,
) -> RecordErrorHandler {
    let dead_letter = (!edges.is_empty()).then(|| Output::new(Arc::clone(name), edges, Arc::default()));
    RecordErrorHandler::new(Arc::clone(name), policy, Arc::clone(metrics), dead_letter)
}

async fn run_operator(
    mut operator: Box<dyn Operator>,
    mut gate: InputGate,
    mut output: Output,
    mut errors: RecordErrorHandler,
    metrics: &ComponentMetrics,
) -> Result<(), RuntimeError> {
    let mut results = Vec::new();
    let off_workers = operator.runs_plugins();
    loop {
        match gate.next().await {
            GateEvent::Batch(_, batch, delivery) => {
                metrics.record_received(batch.num_rows());
                if off_workers {
                    // Plugin code may run up to its time limit: let tokio move other tasks away.
                    super::blocking(|| operator.process(batch, &mut results, &mut errors))?;
                } else {
                    operator.process(batch, &mut results, &mut errors)?;
                }
                errors.flush_with(&delivery).await?;
                // Results made from this batch carry its delivery.
                for batch in results.drain(..) {
                    output.deliver(batch, delivery.fork()).await?;
                }
                delivery.settle();
            }
            GateEvent::Watermark(time) => output.broadcast(Message::Watermark(time)).await?,
            GateEvent::Idle => output.broadcast(Message::Idle).await?,
            GateEvent::Barrier(epoch) => {
                errors.barrier(epoch).await?;
                output.broadcast(Message::Barrier(epoch)).await?;
            }
            GateEvent::End => {
                operator.finish(&mut results)?;
                for batch in results.drain(..) {
                    output.send(batch).await?;
                }
                errors.finish().await?;
                output.broadcast(Message::End).await?;
                return Ok(());
            }
        }
    }
}

/// Drives a [`StatefulOperator`]: batches, watermarks (results first, then the watermark),
/// processing-time ticks, and its state size in the metrics.
/// How a stateful operator treats the end of its input.
struct Ending {
    /// Cancelled when the job was stopped (rather than its inputs running out).
    stop: CancellationToken,
    /// Fire what is open even after a stop (`settings.drain_on_stop`, `weir run --drain`).
    drain: bool,
}

#[allow(clippy::too_many_arguments)]
async fn run_stateful_operator(
    mut operator: Box<dyn StatefulOperator>,
    mut gate: InputGate,
    mut output: Output,
    mut late: Option<Output>,
    mut errors: RecordErrorHandler,
    metrics: &ComponentMetrics,
    ending: Ending,
    checkpoints: Option<Reporter>,
) -> Result<(), RuntimeError> {
    let off_workers = operator.runs_plugins();
    let run = |work: &mut dyn FnMut() -> Result<(), RuntimeError>| {
        if off_workers { super::blocking(work) } else { work() }
    };
    let mut ticks = operator.timer_interval().map(|every| {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut emitted = Emitter::default();
    let mut state = (0usize, 0usize);
    loop {
        let event = match &mut ticks {
            Some(ticks) => tokio::select! {
                event = gate.next() => Some(event),
                _ = ticks.tick() => None,
            },
            None => Some(gate.next().await),
        };
        let control = match event {
            None => {
                run(&mut || operator.on_timer(&mut emitted))?;
                None
            }
            Some(GateEvent::Batch(_, batch, delivery)) => {
                metrics.record_received(batch.num_rows());
                crate::faults::check("process", errors.component())?;
                let mut input = Some((batch, delivery));
                run(&mut || {
                    let (batch, delivery) = input.take().expect("runs once");
                    operator.process(batch, delivery, &mut emitted, &mut errors)
                })?;
                errors.flush().await?;
                None
            }
            Some(GateEvent::Watermark(time)) => {
                run(&mut || operator.on_watermark(time, &mut emitted))?;
                Some(Message::Watermark(time))
            }
            Some(GateEvent::Idle) => Some(Message::Idle),
            Some(GateEvent::Barrier(epoch)) => {
                // Everything before the barrier is in the state: copy it, and let the
                // coordinator upload the bytes while this task goes on.
                if let Some(reporter) = &checkpoints {
                    crate::faults::check("snapshot", errors.component())?;
                    let mut snapshot = None;
                    run(&mut || {
                        snapshot = Some(operator.snapshot()?.encode());
                        Ok(())
                    })?;
                    reporter.report(epoch, Report::State(snapshot.expect("taken")));
                }
                Some(Message::Barrier(epoch))
            }
            Some(GateEvent::End) if gate.lost_input() => {
                // An upstream task failed: the input did not end, and what is open is partial.
                tracing::info!(
                    open_groups = operator.state_groups(),
                    "an upstream task failed: open windows are not fired"
                );
                Some(Message::End)
            }
            Some(GateEvent::End) if ending.stop.is_cancelled() && !ending.drain => {
                // A stopped job's input did not end: what is open is not complete, and firing it
                // would publish partial results as final (Flink's stop without --drain). Held
                // deliveries are dropped unsettled, so their sources deliver the rows again.
                tracing::info!(
                    open_groups = operator.state_groups(),
                    "stopped: open windows are not fired (weir run --drain fires them)"
                );
                Some(Message::End)
            }
            Some(GateEvent::End) => {
                run(&mut || operator.finish(&mut emitted))?;
                Some(Message::End)
            }
        };
        if !emitted.refused.is_empty() {
            for row in emitted.refused.drain(..) {
                errors.handle(crate::errors::BadRecord {
                    position: row.position,
                    raw: &row.raw,
                    reason: row.reason,
                })?;
            }
            errors.flush().await?;
        }
        for (batch, delivery) in emitted.late.drain(..) {
            match &mut late {
                Some(late) => late.deliver(batch, delivery).await?,
                None => {
                    metrics.record_late(batch.num_rows());
                    delivery.settle();
                }
            }
        }
        for (batch, delivery) in emitted.batches.drain(..) {
            output.deliver(batch, delivery).await?;
        }
        let (bytes, groups) = (operator.state_bytes(), operator.state_groups());
        metrics.add_state(bytes as i64 - state.0 as i64, groups as i64 - state.1 as i64);
        state = (bytes, groups);
        if let Some(control) = control {
            let end = matches!(control, Message::End);
            if end {
                errors.finish().await?;
                if let Some(late) = &mut late {
                    late.broadcast(Message::End).await?;
                }
            }
            if let Message::Barrier(epoch) = control {
                errors.barrier(epoch).await?;
                if let Some(late) = &mut late {
                    late.broadcast(Message::Barrier(epoch)).await?;
                }
            }
            output.broadcast(control).await?;
            if end {
                return Ok(());
            }
        }
    }
}

/// A batch in flight through an asynchronous operator: its result and its delivery.
type InFlight = futures::future::BoxFuture<'static, (Result<AsyncOutput, RuntimeError>, Delivery)>;

/// Drives an [`AsyncOperator`]: up to `capacity` batches in flight, results emitted in input
/// order; control messages wait for every batch before them.
async fn run_async_operator(
    mut operator: Box<dyn AsyncOperator>,
    mut gate: InputGate,
    mut output: Output,
    mut errors: RecordErrorHandler,
    metrics: &ComponentMetrics,
    stop: CancellationToken,
) -> Result<(), RuntimeError> {
    use futures::StreamExt as _;
    let capacity = operator.capacity().max(1);
    let mut in_flight: futures::stream::FuturesOrdered<InFlight> = futures::stream::FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some((result, delivery)) = in_flight.next(), if !in_flight.is_empty() => {
                emit_async(result?, delivery, &mut output, &mut errors).await?;
            }
            event = gate.next(), if in_flight.len() < capacity => {
                let control = match event {
                    GateEvent::Batch(_, batch, delivery) => {
                        metrics.record_received(batch.num_rows());
                        let work = operator.start(batch, &stop);
                        in_flight.push_back(Box::pin(async move { (work.await, delivery) }));
                        continue;
                    }
                    GateEvent::Watermark(time) => Message::Watermark(time),
                    GateEvent::Idle => Message::Idle,
                    GateEvent::Barrier(epoch) => Message::Barrier(epoch),
                    GateEvent::End => Message::End,
                };
                while let Some((result, delivery)) = in_flight.next().await {
                    emit_async(result?, delivery, &mut output, &mut errors).await?;
                }
                let end = matches!(control, Message::End);
                if end {
                    errors.finish().await?;
                }
                if let Message::Barrier(epoch) = control {
                    errors.barrier(epoch).await?;
                }
                output.broadcast(control).await?;
                if end {
                    return Ok(());
                }
            }
        }
    }
}

/// Sends what an asynchronous operator made of one batch: failed rows to the error policy, then
/// the results, as part of the batch's delivery.
async fn emit_async(
    result: AsyncOutput,
    delivery: Delivery,
    output: &mut Output,
    errors: &mut RecordErrorHandler,
) -> Result<(), RuntimeError> {
    if let Some(input) = &result.input {
        for failed in &result.failed {
            let raw = crate::errors::row_as_json(input, failed.row);
            errors.handle(crate::errors::BadRecord {
                position: failed.position.clone(),
                raw: &raw,
                reason: failed.reason.clone(),
            })?;
        }
    }
    errors.flush_with(&delivery).await?;
    for batch in result.batches {
        output.deliver(batch, delivery.fork()).await?;
    }
    delivery.settle();
    Ok(())
}

/// While batches wait for a flush to become durable, the sink is flushed at least this often, so
/// sources can acknowledge them; buffered sinks are also flushed this long after a write. Short,
/// because brokers bound what may wait unacknowledged (Mosquitto sends 20 messages at a time):
/// each flush (an fsync for files) releases the acknowledgements it waited for.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

async fn run_sink(
    mut sink: Box<dyn Sink>,
    mut gate: InputGate,
    ctx: &mut SinkContext,
    checkpoints: Option<Reporter>,
) -> Result<(), RuntimeError> {
    let durability = sink.durability();
    // Deliveries of batches written but not yet durable, with the number of their write.
    let mut waiting = Waiting::default();
    let mut flush_due: Option<tokio::time::Instant> = None;
    loop {
        let event = match flush_due {
            Some(due) => tokio::select! {
                event = gate.next() => event,
                () = tokio::time::sleep_until(due) => {
                    sink.flush().await?;
                    waiting.settle(durability, sink.as_ref(), true);
                    flush_due = (!waiting.is_empty()).then(|| tokio::time::Instant::now() + FLUSH_INTERVAL);
                    continue;
                }
            },
            None => gate.next().await,
        };
        match event {
            GateEvent::Batch(_, batch, delivery) => {
                ctx.metrics.record_received(batch.num_rows());
                let rejected_before = ctx.errors.handled();
                sink.write(&batch, ctx).await?;
                ctx.errors.flush_with(&delivery).await?;
                // Written means it reached the destination: rows the destination rejected went
                // to the error policy instead and are counted there.
                let rejected = usize::try_from(ctx.errors.handled() - rejected_before).unwrap_or(usize::MAX);
                ctx.metrics.record_sent(batch.num_rows().saturating_sub(rejected));
                let write = waiting.next_write;
                waiting.next_write += 1;
                if durability == Durability::OnWrite || !delivery.is_tracked() {
                    delivery.settle();
                } else {
                    waiting.deliveries.push_back((write, delivery));
                    waiting.settle(durability, sink.as_ref(), false);
                }
                // Buffered writes reach the destination within a second even when nobody waits
                // for them (someone may be reading the file while the job runs).
                if !waiting.is_empty() || durability == Durability::OnFlush {
                    flush_due.get_or_insert_with(|| tokio::time::Instant::now() + FLUSH_INTERVAL);
                }
            }
            GateEvent::Watermark(_) | GateEvent::Idle => {}
            GateEvent::Barrier(epoch) => {
                sink.flush().await?;
                waiting.settle(durability, sink.as_ref(), true);
                ctx.errors.barrier(epoch).await?;
                if let Some(reporter) = &checkpoints {
                    reporter.report(epoch, Report::Flushed);
                }
            }
            GateEvent::End => {
                crate::faults::check("close", &ctx.component)?;
                sink.close().await?;
                waiting.deliveries.drain(..).for_each(|(_, delivery)| delivery.settle());
                return ctx.errors.finish().await.map_err(Into::into);
            }
        }
    }
}

/// A sink's writes that wait to become durable.
#[derive(Default)]
struct Waiting {
    deliveries: std::collections::VecDeque<(u64, Delivery)>,
    next_write: u64,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Settles what is durable now: everything after a flush (`OnFlush`), or the writes the sink
    /// reports (`Deferred`).
    fn settle(&mut self, durability: Durability, sink: &dyn Sink, flushed: bool) {
        let durable = match durability {
            Durability::OnWrite => u64::MAX,
            Durability::OnFlush if flushed => u64::MAX,
            Durability::OnFlush => 0,
            Durability::Deferred => sink.durable_writes(),
        };
        while self.deliveries.front().is_some_and(|(write, _)| *write < durable) {
            let (_, delivery) = self.deliveries.pop_front().expect("checked");
            delivery.settle();
        }
    }
}
