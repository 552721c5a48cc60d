//! The checkpoint coordinator (Flink's `CheckpointCoordinator`): triggers a checkpoint at the
//! interval, collects what every participant reports when the barrier passes it, uploads state in
//! the background and commits the checkpoint's metadata once everything arrived.
//!
//! A checkpoint `n` goes like this:
//! 1. The coordinator raises the requested epoch to `n`. Every source subtask, between two batches,
//!    reports its position (what it emitted so far) and sends `Barrier(n)` downstream.
//! 2. Tasks align the barrier over their inputs ([`crate::gate`]). A stateful step snapshots its
//!    state in memory when its barrier is complete, reports the bytes and forwards the barrier;
//!    the coordinator uploads them while the step goes on processing.
//! 3. A sink flushes what it wrote before the barrier and reports.
//! 4. When every source, stateful step and sink subtask reported and every upload finished, the
//!    coordinator writes the metadata (the commit point) and deletes what is no longer retained.
//!
//! A checkpoint that does not complete within `timeout`, or whose upload fails, is aborted and
//! counted, its files deleted; processing goes on and the next one starts on schedule. One
//! checkpoint is in flight at a time. Once a source subtask finished (a bounded input ran out) no
//! barrier can pass it any more, so no further checkpoint is triggered.
//!
//! Restoring is the other direction ([`Restore`]): the metadata names each component's state and
//! positions; state is matched by component name, and keyed state is handed out by key group, so
//! a step may restore at another parallelism.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use weir_config::settings::CheckpointSettings;

use crate::checkpoint::{
    CHECKPOINT_FORMAT, CheckpointId, CheckpointMetadata, CheckpointStorage, ComponentState, KeyedState, StateHandle,
    StorageError, SubtaskState,
};
use crate::graph::{JobGraph, Role};

/// Checkpointing for one run of a job: where checkpoints go, how often, and what to restore.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// The job's checkpoint storage.
    pub storage: Arc<dyn CheckpointStorage>,
    /// `settings.checkpoint`.
    pub settings: CheckpointSettings,
    /// `settings.job_id` (or the pipeline file's name).
    pub job_id: String,
    /// The checkpoint to start from, if any.
    pub restore: Option<RestorePoint>,
    /// Start even if the checkpoint holds state of a component the pipeline no longer has
    /// (`--allow-non-restored-state`).
    pub allow_non_restored_state: bool,
}

/// A checkpoint to start from: its metadata and the storage holding its state (the job's own, or
/// another place given with `--restore`).
#[derive(Debug, Clone)]
pub struct RestorePoint {
    /// Where the checkpoint's state is.
    pub storage: Arc<dyn CheckpointStorage>,
    /// Its verified metadata.
    pub metadata: CheckpointMetadata,
}

/// What a participant reports when a barrier passes it.
#[derive(Debug)]
pub enum Report {
    /// A source subtask sent the barrier after everything up to this position.
    Position(Option<String>),
    /// A stateful subtask's state at the barrier ([`KeyedState::encode`]).
    State(Vec<u8>),
    /// A sink subtask made everything before the barrier durable.
    Flushed,
    /// A source subtask finished: its barrier will never come.
    Finished,
}

/// A report, from whom, for which checkpoint.
#[derive(Debug)]
struct Ack {
    epoch: CheckpointId,
    component: usize,
    subtask: usize,
    report: Report,
}

/// How one subtask reports to the coordinator.
#[derive(Debug, Clone)]
pub struct Reporter {
    component: usize,
    subtask: usize,
    acks: mpsc::UnboundedSender<Ack>,
}

impl Reporter {
    /// Reports for checkpoint `epoch`. A coordinator that is gone (the job is ending) is ignored.
    pub fn report(&self, epoch: CheckpointId, report: Report) {
        let _ = self.acks.send(Ack { epoch, component: self.component, subtask: self.subtask, report });
    }
}

/// A source subtask's side of checkpointing: the barriers it is asked for and the position it
/// starts from.
#[derive(Debug)]
pub struct SourceCheckpoints {
    requests: watch::Receiver<CheckpointId>,
    /// The last checkpoint this subtask sent a barrier for.
    answered: CheckpointId,
    reporter: Reporter,
    restored: Option<String>,
}

impl SourceCheckpoints {
    /// The position restored from a checkpoint, if the job started from one.
    pub fn restored(&self) -> Option<&str> {
        self.restored.as_deref()
    }

    /// The checkpoint asked for and not yet answered, if any; it counts as answered from now.
    pub fn due(&mut self) -> Option<CheckpointId> {
        let requested = *self.requests.borrow();
        (requested > self.answered).then(|| {
            self.answered = requested;
            requested
        })
    }

    /// Waits until a checkpoint is asked for that was not answered yet (forever if the
    /// coordinator is gone).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn requested(&mut self) {
        loop {
            if *self.requests.borrow_and_update() > self.answered {
                return;
            }
            if self.requests.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Tells the coordinator that `epoch`'s barrier left at `position`.
    pub fn report_position(&self, epoch: CheckpointId, position: Option<String>) {
        self.reporter.report(epoch, Report::Position(position));
    }

    /// Tells the coordinator the source finished.
    pub fn finished(&self) {
        self.reporter.report(0, Report::Finished);
    }
}

/// One checkpoint's outcome, for `/checkpoints` and the run summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRecord {
    /// The checkpoint.
    pub id: CheckpointId,
    /// When it was triggered (ms since the Unix epoch).
    pub triggered_at_ms: i64,
    /// From trigger to commit (or to the failure), in milliseconds.
    pub duration_ms: u64,
    /// From trigger until the last participant reported (barrier travel and alignment), in ms.
    pub alignment_ms: u64,
    /// Bytes of state written.
    pub size_bytes: u64,
    /// Bytes of state per component.
    pub size_per_component: BTreeMap<String, u64>,
    /// `completed` or `failed`.
    pub status: &'static str,
    /// Whether it was a savepoint (asked for, kept until deleted by hand).
    pub savepoint: bool,
    /// Where it is (`<storage>/<job_id>/chk-<id>`, what `weir run --restore` takes).
    pub path: String,
    /// Why it failed.
    pub failure: Option<String>,
}

/// Checkpoint counters and history of a running job.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// `checkpoints_completed_total`.
    pub completed: AtomicU64,
    /// `checkpoints_failed_total`.
    pub failed: AtomicU64,
    /// `job_restarts_total`: times the job was started again after a task failed.
    pub restarts: AtomicU64,
    history: Mutex<VecDeque<CheckpointRecord>>,
    restored: Mutex<Option<(CheckpointId, i64)>>,
    /// Who waits for a savepoint.
    savepoint_requests: Mutex<Vec<oneshot::Sender<Result<CheckpointRecord, String>>>>,
    savepoint_wanted: tokio::sync::Notify,
}

/// How many checkpoints the history keeps.
const HISTORY: usize = 50;

impl CheckpointStats {
    /// The most recent checkpoints, oldest first.
    pub fn history(&self) -> Vec<CheckpointRecord> {
        self.history.lock().expect("not poisoned").iter().cloned().collect()
    }

    /// The checkpoint the job restored from: its id and when it completed (ms since the epoch).
    pub fn restored(&self) -> Option<(CheckpointId, i64)> {
        *self.restored.lock().expect("not poisoned")
    }

    /// Asks the running job for a savepoint: a checkpoint taken now, marked as a savepoint, which
    /// `retain` never deletes. The answer comes when it completed or failed (never, while the job
    /// takes no checkpoints: callers bound the wait).
    pub fn request_savepoint(&self) -> oneshot::Receiver<Result<CheckpointRecord, String>> {
        let (reply, answer) = oneshot::channel();
        self.savepoint_requests.lock().expect("not poisoned").push(reply);
        self.savepoint_wanted.notify_one();
        answer
    }

    /// Answers everyone waiting for a savepoint.
    fn answer_savepoints(&self, outcome: &Result<CheckpointRecord, String>) {
        for reply in self.savepoint_requests.lock().expect("not poisoned").drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }

    fn record(&self, record: CheckpointRecord) {
        let counter = if record.failure.is_none() { &self.completed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut history = self.history.lock().expect("not poisoned");
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(record);
    }
}

/// Why a checkpoint cannot be restored into this job. Each names the component and the difference.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Reading the checkpoint failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The checkpoint holds state of a component the pipeline no longer has.
    #[error(
        "checkpoint {id} holds state of `{component}`, which the pipeline no longer has; \
         pass --allow-non-restored-state to start without it"
    )]
    NotRestored {
        /// The checkpoint.
        id: CheckpointId,
        /// The removed component.
        component: String,
    },
    /// A component of the same name is now of another kind.
    #[error("checkpoint {id}: `{component}` was a `{was}` and is now a `{now}`; its state cannot be restored")]
    KindChanged {
        /// The checkpoint.
        id: CheckpointId,
        /// The component.
        component: String,
        /// Its kind in the checkpoint.
        was: String,
        /// Its kind now.
        now: String,
    },
    /// A source's parallelism changed; its positions are per subtask.
    #[error(
        "checkpoint {id}: source `{component}` ran as {was} subtask(s) and now as {now}; \
         a source's positions are per subtask, so it must keep its parallelism"
    )]
    SourceParallelism {
        /// The checkpoint.
        id: CheckpointId,
        /// The source.
        component: String,
        /// Its parallelism in the checkpoint.
        was: usize,
        /// Its parallelism now.
        now: usize,
    },
    /// State that does not decode.
    #[error("checkpoint {id}: the state of `{component}` does not decode: {reason}")]
    BadState {
        /// The checkpoint.
        id: CheckpointId,
        /// The component.
        component: String,
        /// Why.
        reason: String,
    },
}

/// What each subtask starts from.
#[derive(Debug, Default)]
pub struct Restore {
    /// The checkpoint, if the job restored one.
    pub id: Option<CheckpointId>,
    positions: HashMap<(usize, usize), String>,
    states: HashMap<(usize, usize), KeyedState>,
}

impl Restore {
    /// Reads checkpoint `metadata` for `job`: every source position and every stateful subtask's
    /// state, redistributed to the job's parallelism by key group.
    ///
    /// # Errors
    /// A [`RestoreError`] naming the component and what does not fit.
    pub async fn load(
        job: &JobGraph,
        storage: &dyn CheckpointStorage,
        metadata: &CheckpointMetadata,
        allow_non_restored_state: bool,
    ) -> Result<Self, RestoreError> {
        let id = metadata.id;
        let mut restore = Self { id: Some(id), ..Self::default() };
        for saved in &metadata.components {
            let Some(c) = job.components.iter().position(|component| component.name == saved.name) else {
                if allow_non_restored_state {
                    tracing::warn!(component = %saved.name, checkpoint = id, "state of a removed component not restored");
                    continue;
                }
                return Err(RestoreError::NotRestored { id, component: saved.name.clone() });
            };
            let component = &job.components[c];
            if component.kind != saved.kind {
                return Err(RestoreError::KindChanged {
                    id,
                    component: saved.name.clone(),
                    was: saved.kind.clone(),
                    now: component.kind.clone(),
                });
            }
            let has_positions = saved.subtasks.iter().any(|subtask| subtask.position.is_some());
            if component.role == Role::Source && has_positions && component.parallelism != saved.parallelism {
                return Err(RestoreError::SourceParallelism {
                    id,
                    component: saved.name.clone(),
                    was: saved.parallelism,
                    now: component.parallelism,
                });
            }
            let mut written = Vec::new();
            for subtask in &saved.subtasks {
                if let Some(position) = &subtask.position {
                    restore.positions.insert((c, subtask.subtask), position.clone());
                }
                if let Some(handle) = &subtask.state {
                    let bytes = storage.read_state(id, handle).await?;
                    let state = KeyedState::decode(&bytes).map_err(|err| RestoreError::BadState {
                        id,
                        component: saved.name.clone(),
                        reason: err.to_string(),
                    })?;
                    written.push(state);
                }
            }
            if written.is_empty() {
                continue;
            }
            for subtask in 0..component.parallelism {
                let state = KeyedState::for_subtask(written.iter().cloned(), subtask, component.parallelism).map_err(
                    |err| RestoreError::BadState { id, component: saved.name.clone(), reason: err.to_string() },
                )?;
                restore.states.insert((c, subtask), state);
            }
        }
        Ok(restore)
    }

    /// The restored state of a stateful subtask (empty state if the step is new).
    pub fn take_state(&mut self, component: usize, subtask: usize) -> Option<KeyedState> {
        self.states.remove(&(component, subtask))
    }

    /// The restored position of a source subtask.
    pub fn take_position(&mut self, component: usize, subtask: usize) -> Option<String> {
        self.positions.remove(&(component, subtask))
    }
}

/// The running coordinator; the runner hands each participant its side through
/// [`Coordinator::source`], [`Coordinator::reporter`] and [`Coordinator::expect`].
pub struct Coordinator {
    checkpointing: Checkpointing,
    /// `(name, kind, parallelism)` per component of the job.
    components: Vec<(String, String, usize)>,
    expected: BTreeSet<(usize, usize)>,
    requests: watch::Sender<CheckpointId>,
    acks_in: mpsc::UnboundedSender<Ack>,
    acks: mpsc::UnboundedReceiver<Ack>,
    stats: Arc<CheckpointStats>,
    finished: bool,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").field("job", &self.checkpointing.job_id).finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator for `job`, reporting into `stats`.
    pub fn new(job: &JobGraph, checkpointing: Checkpointing, stats: Arc<CheckpointStats>) -> Self {
        let (acks_in, acks) = mpsc::unbounded_channel();
        if let Some(restored) = &checkpointing.restore {
            let metadata = &restored.metadata;
            *stats.restored.lock().expect("not poisoned") = Some((metadata.id, metadata.completed_at_ms));
        }
        Self {
            components: job.components.iter().map(|c| (c.name.clone(), c.kind.clone(), c.parallelism)).collect(),
            checkpointing,
            expected: BTreeSet::new(),
            requests: watch::channel(0).0,
            acks_in,
            acks,
            stats,
            finished: false,
        }
    }

    /// A participant that must report before a checkpoint completes.
    pub fn expect(&mut self, component: usize, subtask: usize) -> Reporter {
        self.expected.insert((component, subtask));
        Reporter { component, subtask, acks: self.acks_in.clone() }
    }

    /// A source subtask's side, starting from `restored`.
    pub fn source(&mut self, component: usize, subtask: usize, restored: Option<String>) -> SourceCheckpoints {
        let reporter = self.expect(component, subtask);
        SourceCheckpoints { requests: self.requests.subscribe(), answered: 0, reporter, restored }
    }

    /// Triggers checkpoints until every participant is gone or `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) {
        drop(std::mem::replace(&mut self.acks_in, mpsc::unbounded_channel().0));
        let settings = self.checkpointing.settings.clone();
        let mut next_id = match self.checkpointing.storage.ids().await {
            Ok(ids) => ids.last().copied().unwrap_or(0) + 1,
            Err(err) => {
                tracing::error!(error = %err, "checkpoint storage unreachable; checkpoints are off for this run");
                return;
            }
        };
        if let Some(restored) = &self.checkpointing.restore {
            next_id = next_id.max(restored.metadata.id + 1);
        }
        let mut last_start = Instant::now();
        let mut last_end = Instant::now() - settings.min_pause;
        loop {
            let due = (last_start + settings.interval).max(last_end + settings.min_pause);
            let mut savepoint = false;
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = self.stats.savepoint_wanted.notified() => savepoint = true,
                () = stop.cancelled() => return,
                ack = self.acks.recv() => match ack {
                    None => return,
                    Some(ack) => { self.early(ack); continue; }
                },
            }
            if self.finished {
                self.stats.answer_savepoints(&Err("a source finished: no barrier can pass it any more".into()));
                // Wait for the job to end, taking (and ignoring) what is still reported.
                tokio::select! {
                    () = stop.cancelled() => return,
                    ack = self.acks.recv() => if ack.is_none() { return },
                }
                continue;
            }
            last_start = Instant::now();
            let id = next_id;
            next_id += 1;
            let outcome = tokio::select! {
                outcome = self.checkpoint(id, savepoint) => outcome,
                () = stop.cancelled() => return,
            };
            last_end = Instant::now();
            if savepoint {
                let answer = match &outcome {
                    Ok(record) => Ok(record.clone()),
                    Err(record) => Err(record.failure.clone().unwrap_or_default()),
                };
                self.stats.answer_savepoints(&answer);
            }
            match outcome {
                Ok(record) => {
                    tracing::info!(
                        checkpoint = id,
                        savepoint,
                        path = %record.path,
                        duration_ms = record.duration_ms,
                        alignment_ms = record.alignment_ms,
                        bytes = record.size_bytes,
                        "checkpoint completed"
                    );
                    self.stats.record(record);
                    match self.checkpointing.storage.retain(self.checkpointing.settings.retain).await {
                        Ok(deleted) if !deleted.is_empty() => tracing::debug!(?deleted, "old checkpoints deleted"),
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "deleting old checkpoints failed"),
                    }
                }
                Err(record) => {
                    if !self.finished {
                        tracing::warn!(
                            checkpoint = id,
                            reason = record.failure.as_deref().unwrap_or(""),
                            "checkpoint aborted"
                        );
                    }
                    self.stats.record(*record);
                    let storage = Arc::clone(&self.checkpointing.storage);
                    tokio::spawn(async move {
                        if let Err(err) = storage.discard(id).await {
                            tracing::warn!(checkpoint = id, error = %err, "deleting an aborted checkpoint failed");
                        }
                    });
                }
            }
        }
    }

    /// A report outside of a checkpoint (a source finished, or a late answer to an aborted one).
    fn early(&mut self, ack: Ack) {
        if matches!(ack.report, Report::Finished) {
            self.source_finished(&ack);
        }
    }

    fn source_finished(&mut self, ack: &Ack) {
        if !self.finished {
            self.finished = true;
            tracing::info!(
                component = %self.components[ack.component].0,
                subtask = ack.subtask,
                "a source finished; no further checkpoints are taken"
            );
        }
    }

    /// Takes checkpoint `id`: asks the sources for barriers and collects the reports.
    async fn checkpoint(
        &mut self,
        id: CheckpointId,
        savepoint: bool,
    ) -> Result<CheckpointRecord, Box<CheckpointRecord>> {
        let started = Instant::now();
        let triggered_at_ms = now_ms();
        let mut record = CheckpointRecord {
            id,
            triggered_at_ms,
            duration_ms: 0,
            alignment_ms: 0,
            size_bytes: 0,
            size_per_component: BTreeMap::new(),
            status: "failed",
            savepoint,
            path: format!("{}/chk-{id}", self.checkpointing.storage.location()),
            failure: None,
        };
        let fail = |mut record: CheckpointRecord, reason: String| {
            record.duration_ms = started.elapsed().as_millis() as u64;
            record.failure = Some(reason);
            Err(Box::new(record))
        };
        self.requests.send_replace(id);
        let mut waiting = self.expected.clone();
        let mut positions: HashMap<(usize, usize), Option<String>> = HashMap::new();
        let mut handles: HashMap<(usize, usize), StateHandle> = HashMap::new();
        let mut uploads: JoinSet<((usize, usize), Result<StateHandle, StorageError>)> = JoinSet::new();
        let deadline = tokio::time::sleep(self.checkpointing.settings.timeout);
        let mut deadline = std::pin::pin!(deadline);
        while !waiting.is_empty() || !uploads.is_empty() {
            tokio::select! {
                () = &mut deadline => {
                    let missing: Vec<String> = waiting
                        .iter()
                        .map(|(c, s)| format!("{} (subtask {s})", self.components[*c].0))
                        .collect();
                    let reason = format!(
                        "not complete after {}; waiting for {}",
                        humantime::format_duration(self.checkpointing.settings.timeout),
                        if missing.is_empty() { "state uploads".to_owned() } else { missing.join(", ") }
                    );
                    return fail(record, reason);
                }
                ack = self.acks.recv() => {
                    let Some(ack) = ack else { return fail(record, "the job ended".into()) };
                    if matches!(ack.report, Report::Finished) {
                        self.source_finished(&ack);
                        return fail(record, "a source finished before its barrier".into());
                    }
                    if ack.epoch != id {
                        continue;
                    }
                    let key = (ack.component, ack.subtask);
                    waiting.remove(&key);
                    if waiting.is_empty() {
                        record.alignment_ms = started.elapsed().as_millis() as u64;
                    }
                    match ack.report {
                        Report::Position(position) => {
                            positions.insert(key, position);
                        }
                        Report::State(bytes) => {
                            let size = bytes.len() as u64;
                            record.size_bytes += size;
                            *record.size_per_component.entry(self.components[key.0].0.clone()).or_default() += size;
                            let storage = Arc::clone(&self.checkpointing.storage);
                            let name = format!("{}/{}", self.components[key.0].0, key.1);
                            uploads.spawn(async move { (key, storage.write_state(id, &name, bytes).await) });
                        }
                        Report::Flushed | Report::Finished => {}
                    }
                }
                Some(uploaded) = uploads.join_next(), if !uploads.is_empty() => {
                    match uploaded {
                        Ok((key, Ok(handle))) => { handles.insert(key, handle); }
                        Ok((_, Err(err))) => return fail(record, err.to_string()),
                        Err(err) => return fail(record, format!("state upload failed: {err}")),
                    }
                }
            }
        }
        let mut metadata = self.metadata(id, triggered_at_ms, positions, handles);
        metadata.savepoint = savepoint;
        if let Err(err) = self.checkpointing.storage.commit(&metadata).await {
            return fail(record, err.to_string());
        }
        record.duration_ms = started.elapsed().as_millis() as u64;
        record.status = "completed";
        Ok(record)
    }

    fn metadata(
        &self,
        id: CheckpointId,
        triggered_at_ms: i64,
        mut positions: HashMap<(usize, usize), Option<String>>,
        mut handles: HashMap<(usize, usize), StateHandle>,
    ) -> CheckpointMetadata {
        let mut components = Vec::new();
        for (c, (name, kind, parallelism)) in self.components.iter().enumerate() {
            let subtasks: Vec<SubtaskState> = (0..*parallelism)
                .filter(|s| self.expected.contains(&(c, *s)))
                .map(|subtask| SubtaskState {
                    subtask,
                    state: handles.remove(&(c, subtask)),
                    position: positions.remove(&(c, subtask)).flatten(),
                })
                .filter(|subtask| subtask.state.is_some() || subtask.position.is_some())
                .collect();
            if !subtasks.is_empty() {
                components.push(ComponentState {
                    name: name.clone(),
                    kind: kind.clone(),
                    parallelism: *parallelism,
                    subtasks,
                });
            }
        }
        CheckpointMetadata {
            format: CHECKPOINT_FORMAT,
            weir_version: env!("CARGO_PKG_VERSION").to_owned(),
            job_id: self.checkpointing.job_id.clone(),
            id,
            triggered_at_ms,
            completed_at_ms: now_ms(),
            savepoint: false,
            components,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// How long ago `ms` (since the Unix epoch) was.
pub fn age(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms().saturating_sub(ms)).unwrap_or(0))
}
