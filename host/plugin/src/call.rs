//! Calling plugin functions on Arrow arrays, surviving traps.
//!
//! [`ScalarCaller`] and [`TableCaller`] own one instance each (one per operator subtask). When a
//! call traps, the instance is replaced and the batch is bisected until the rows that trap on
//! their own are found, so the good rows of the batch still get their results and the error
//! policy sees exactly the failing rows.
//!
//! Callers hold a [`PluginHandle`], not a plugin: each batch reads the current version once
//! ([`FunctionBinding`]) and runs on it from start to end, so a hot swap takes effect between
//! batches. A version on probation that traps or cannot be instantiated hands the batch to the
//! version it replaced (see `registry`), and sampled batches are offered to a running canary.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, new_null_array};
use arrow::compute::concat;
use arrow::datatypes::DataType as ArrowType;

use super::bindings::{CallError, DataType};
use super::convert::{from_column, to_arrow_type, to_column};
use super::registry::{PluginHandle, Version, function_shape};
use super::{Instance, Limits, Plugin, PluginError};

/// Rows `start..start + len` of every argument, as WIT columns.
fn slice_columns(args: &[ArrayRef], start: usize, len: usize) -> Result<Vec<super::bindings::Column>, String> {
    args.iter()
        .map(|array| to_column(&array.slice(start, len)).ok_or_else(|| format!("cannot pass {}", array.data_type())))
        .collect()
}

/// Plugins whose instantiation takes longer than this get a spare instance made in the
/// background (a Python component, ~0.6 ms: a dozen dynamically linked core modules).
pub const SLOW_INSTANTIATION: std::time::Duration = std::time::Duration::from_micros(100);

type SpareReply = std::sync::mpsc::Receiver<Result<Instance, PluginError>>;

/// Asks the background instantiator thread (one for the process, started on first use) for a
/// new instance.
fn request_spare(plugin: &Arc<Plugin>, limits: Limits) -> Option<SpareReply> {
    type Request = (Arc<Plugin>, Limits, std::sync::mpsc::SyncSender<Result<Instance, PluginError>>);
    static INSTANTIATOR: std::sync::LazyLock<Option<std::sync::mpsc::Sender<Request>>> =
        std::sync::LazyLock::new(|| {
            let (sender, requests) = std::sync::mpsc::channel::<Request>();
            std::thread::Builder::new()
                .name("weir-instantiator".into())
                .spawn(move || {
                    for (plugin, limits, reply) in requests {
                        let _ = reply.send(Instance::new(plugin, limits));
                    }
                })
                .ok()
                .map(|_| sender)
        });
    let (reply, receiver) = std::sync::mpsc::sync_channel(1);
    INSTANTIATOR.as_ref()?.send((Arc::clone(plugin), limits, reply)).ok()?;
    Some(receiver)
}

/// A caller's live instance, created (or recycled) when needed. For plugins that instantiate
/// slowly, a spare is requested from a background thread whenever the live one is taken, so
/// replacing a trapped instance (and bisecting its batch) does not wait for instantiation.
#[derive(Default)]
pub struct InstanceSlot {
    live: Option<Instance>,
    spare: Option<SpareReply>,
}

impl InstanceSlot {
    /// The live instance: the current one, else the spare, else a new one.
    ///
    /// # Errors
    /// Instantiation failures.
    pub fn get(&mut self, plugin: &Arc<Plugin>, limits: Limits) -> Result<&mut Instance, PluginError> {
        if self.live.as_ref().is_none_or(Instance::needs_recycling) {
            let spare = self.spare.take().and_then(|reply| reply.recv().ok()).and_then(Result::ok);
            let instance = match spare {
                Some(instance) => instance,
                None => Instance::new(Arc::clone(plugin), limits)?,
            };
            self.live = Some(instance);
            if plugin.instantiate_time > SLOW_INSTANTIATION {
                self.spare = request_spare(plugin, limits);
            }
        }
        Ok(self.live.as_mut().expect("just set"))
    }

    /// Drops the live instance (after a trap); the next `get` takes the spare or makes one.
    pub fn discard(&mut self) {
        self.live = None;
    }
}

impl std::fmt::Debug for InstanceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSlot").field("live", &self.live.is_some()).finish()
    }
}

/// A row a function failed on, with why.
#[derive(Debug, Clone)]
pub struct RowFailure {
    /// Index within the batch.
    pub row: usize,
    /// The reason (a row error returned by the function, or the trap).
    pub reason: String,
    /// How it failed: the function reported an error for the row, or trapped on it alone. Typed,
    /// so that no message text (a row error saying "trapped") can pass for the other.
    pub kind: FailureKind,
}

/// How a row failed in a plugin function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The function returned an error for this row (or for the whole call).
    RowError,
    /// The function trapped on this row alone (found by bisecting the batch).
    Trap,
}

/// How many calls that ran into the time limit a batch of `rows` may spend isolating its slow
/// rows: enough to find one slow row by halving (one timed-out half per level), not the 2n-1
/// calls of a batch that is slow everywhere (16 rows at 1 s once took 33 s; 8,192 rows at 10 ms,
/// 270 s). Once spent, a slice that times out fails as a whole: slowness is rarely one row's
/// fault.
fn timeout_budget(rows: usize) -> usize {
    (usize::BITS - rows.leading_zeros()) as usize + 1
}

/// Every row of the slice `start..start + len`, failed for one reason.
fn failed_slice(start: usize, len: usize, reason: &str, kind: FailureKind) -> impl Iterator<Item = RowFailure> + '_ {
    (start..start + len).map(move |row| RowFailure { row, reason: reason.to_owned(), kind })
}

/// How a trapping batch is isolated: which traps are bisected, and when isolating stops.
#[derive(Debug)]
struct Isolation {
    timeouts_left: usize,
    /// The caller fails the step at the first trapping row (`on_error: fail`, SQL
    /// expressions): time-limit traps are not bisected at all, and bisecting stops at the first
    /// row that traps alone.
    fail_fast: bool,
}

impl Isolation {
    fn new(rows: usize, fail_fast: bool) -> Self {
        Self { timeouts_left: if fail_fast { 0 } else { timeout_budget(rows) }, fail_fast }
    }

    /// Whether a trapping slice is bisected: always for traps a row causes (a panic), for
    /// time-limit traps while the batch's budget lasts (and then it is spent by one).
    fn bisects(&mut self, trap: &PluginError) -> bool {
        match trap {
            PluginError::Trap { timed_out: true, .. } if self.timeouts_left == 0 => false,
            PluginError::Trap { timed_out: true, .. } => {
                self.timeouts_left -= 1;
                true
            }
            _ => true,
        }
    }
}

/// Set once when the process is asked to stop (the first Ctrl-C or SIGTERM of `weir run`):
/// isolating a trapping batch is then abandoned, and the batch fails unacknowledged instead of
/// holding the stop up for as long as its bisection would take.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks every batch being isolated in this process to stop (process-wide: only the CLI's
/// signal handling calls it).
pub fn abandon_isolation() {
    STOPPING.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The row errors a call returned for a slice of `len` rows starting at `start`, checked and
/// bounded: an index outside the slice breaks the contract (it once panicked the host), and a
/// row keeps its first error only, with a count of the others, so one input row cannot turn into
/// a million dead letters.
fn checked_row_errors(
    errors: Vec<super::bindings::RowError>,
    start: usize,
    len: usize,
) -> Result<Vec<RowFailure>, String> {
    let mut by_row: std::collections::BTreeMap<u32, (String, usize)> = std::collections::BTreeMap::new();
    for error in errors {
        if error.row as usize >= len {
            return Err(format!("reported an error for row {} of a call with {len} rows", error.row));
        }
        by_row.entry(error.row).and_modify(|(_, more)| *more += 1).or_insert((error.message, 0));
    }
    Ok(by_row
        .into_iter()
        .map(|(row, (message, more))| RowFailure {
            row: start + row as usize,
            reason: match more {
                0 => message,
                more => format!("{message} (and {more} more errors for this row)"),
            },
            kind: FailureKind::RowError,
        })
        .collect())
}

/// The outcome of a batch call: results for all rows (NULL where failed) and the failures.
#[derive(Debug)]
pub struct ScalarResult {
    /// One value per input row.
    pub values: ArrayRef,
    /// Rows that failed, in row order.
    pub failed: Vec<RowFailure>,
}

/// Why an attempt on one version ended without a result.
enum Attempt {
    /// A failure the caller reports.
    Failed(PluginError),
    /// Run the batch again on this version (the one a version on probation replaced).
    Retry(Arc<Version>),
    /// Isolating stopped at the first trapping row (fail fast): the rows found so far are the
    /// result, the values are all NULL.
    Stopped,
}

impl From<PluginError> for Attempt {
    fn from(err: PluginError) -> Self {
        Self::Failed(err)
    }
}

/// Runs `attempt` on the version current now; while a version on probation fails, again on
/// the version it replaced. Returns the result, the version that produced it, and the time the
/// successful attempt took (counted in the version's statistics).
fn on_current_version<T>(
    handle: &PluginHandle,
    rows: usize,
    mut attempt: impl FnMut(&Arc<Version>) -> Result<T, Attempt>,
) -> Result<(T, std::time::Duration), PluginError> {
    let mut version = handle.current();
    loop {
        let started = Instant::now();
        match attempt(&version) {
            Ok(result) => {
                let elapsed = started.elapsed();
                version.stats.record_call(rows, elapsed);
                return Ok((result, elapsed));
            }
            Err(Attempt::Retry(fallback)) => version = fallback,
            Err(Attempt::Failed(err)) => return Err(err),
            Err(Attempt::Stopped) => unreachable!("callers turn a stop into their result"),
        }
    }
}

/// One function of a plugin handle, bound to the version a batch runs on, with an instance of
/// that version. Rebinding (after a swap or rollback) drops the old instance.
pub struct FunctionBinding {
    handle: Arc<PluginHandle>,
    name: String,
    limits: Limits,
    bound: Option<(Arc<Version>, u32)>,
    slot: InstanceSlot,
    /// What the guest's output is attributed to: the plugin's name in the pipeline, the step.
    origin: (Arc<str>, Arc<str>),
}

impl std::fmt::Debug for FunctionBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionBinding").field("plugin", &self.handle.name()).field("function", &self.name).finish()
    }
}

impl FunctionBinding {
    /// Function `name` of `handle`'s versions, instantiated under `limits`.
    pub fn new(handle: Arc<PluginHandle>, name: String, limits: Limits) -> Self {
        let origin = (Arc::from(handle.name()), Arc::from(""));
        Self { handle, name, limits, bound: None, slot: InstanceSlot::default(), origin }
    }

    /// The step that calls the function, for the guest's log lines.
    pub fn set_step(&mut self, step: &str) {
        self.origin.1 = Arc::from(step);
    }

    /// The plugin handle.
    pub fn handle(&self) -> &Arc<PluginHandle> {
        &self.handle
    }

    /// The function name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An instance of `version` and the function's index in it.
    fn instance(&mut self, version: &Arc<Version>) -> Result<(&mut Instance, u32), Attempt> {
        if self.bound.as_ref().is_none_or(|(bound, _)| bound.generation != version.generation) {
            let (index, _) = function_shape(&version.plugin, &self.name).ok_or_else(|| PluginError::Contract {
                plugin: self.handle.name().to_owned(),
                function: self.name.clone(),
                reason: format!("version {} has no such function", version.label()),
            })?;
            self.bound = Some((Arc::clone(version), index));
            self.slot = InstanceSlot::default();
        }
        let index = self.bound.as_ref().map_or(0, |(_, index)| *index);
        match self.slot.get(&version.plugin, self.limits) {
            Ok(instance) => {
                instance.set_origin(&self.origin.0, &self.origin.1);
                Ok((instance, index))
            }
            Err(err) => match self.handle.report_instantiation_failure(version, &err) {
                Some(fallback) => Err(Attempt::Retry(fallback)),
                None => Err(Attempt::Failed(err)),
            },
        }
    }

    /// After a trap on `version`: the instance is dropped; returns the version to retry the
    /// whole batch on, if `version` is on probation.
    fn trapped(&mut self, version: &Arc<Version>, trap: &PluginError) -> Option<Arc<Version>> {
        self.slot.discard();
        self.handle.report_trap(version, trap)
    }

    /// Fails a batch whose isolation is abandoned because the process is stopping.
    fn check_stopping(&self, rows_left: usize) -> Result<(), Attempt> {
        if stopping() {
            return Err(Attempt::Failed(PluginError::Abandoned {
                plugin: self.handle.name().to_owned(),
                function: self.name.clone(),
                rows: rows_left,
            }));
        }
        Ok(())
    }

    /// Runs one call (not bisected) on the current version, falling back while a new version
    /// is on probation. For aggregates, whose calls cannot be split by rows.
    ///
    /// # Errors
    /// Traps outside probation, instantiation failures, what `call` returns.
    pub fn call_once<R>(
        &mut self,
        rows: usize,
        mut call: impl FnMut(&mut Instance, u32) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let handle = Arc::clone(&self.handle);
        let attempt = |version: &Arc<Version>| {
            let (instance, function) = self.instance(version)?;
            match call(instance, function) {
                Ok(value) => Ok(value),
                Err(trap @ PluginError::Trap { .. }) => match self.trapped(version, &trap) {
                    Some(fallback) => Err(Attempt::Retry(fallback)),
                    None => Err(Attempt::Failed(trap)),
                },
                Err(other) => Err(Attempt::Failed(other)),
            }
        };
        on_current_version(&handle, rows, attempt).map(|(value, _)| value)
    }
}

/// Calls one scalar function of a plugin.
pub struct ScalarCaller {
    binding: FunctionBinding,
    returns: DataType,
    fail_fast: bool,
}

impl std::fmt::Debug for ScalarCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalarCaller").field("binding", &self.binding).finish()
    }
}

impl ScalarCaller {
    /// A caller for the scalar function `function` of `handle`'s versions (which all declare
    /// the same return type: the registry refuses versions that do not).
    ///
    /// # Panics
    /// If the current version has no such scalar function (checked when planning).
    pub fn new(handle: Arc<PluginHandle>, limits: Limits, function: &str) -> Self {
        let current = handle.current();
        let returns = current
            .plugin
            .functions
            .scalar()
            .iter()
            .find(|f| f.name == function)
            .map(|f| f.returns)
            .expect("the function exists (checked when planning)");
        Self { binding: FunctionBinding::new(handle, function.to_owned(), limits), returns, fail_fast: false }
    }

    /// For a caller that fails at the first trapping row (`on_error: fail`, SQL): time-limit
    /// traps are not bisected, and bisecting stops at the first row that traps alone.
    pub fn set_fail_fast(&mut self, fail_fast: bool) {
        self.fail_fast = fail_fast;
    }

    /// The step that calls the function, for the guest's log lines.
    pub fn set_step(&mut self, step: &str) {
        self.binding.set_step(step);
    }

    /// A caller over one fixed plugin (benchmarks, tools).
    pub fn fixed(plugin: Arc<Plugin>, limits: Limits, function: u32) -> Self {
        let name = plugin.functions.scalar()[function as usize].name.clone();
        Self::new(PluginHandle::fixed(plugin, limits), limits, &name)
    }

    /// Arrow type of the result.
    pub fn return_type(&self) -> ArrowType {
        to_arrow_type(&self.returns)
    }

    /// Calls the function on `rows` rows of `args`, on the version current when the call
    /// starts.
    ///
    /// # Errors
    /// Only failures that are not about rows: the instance cannot be created, the plugin broke
    /// the contract, or rejected the input as a whole.
    pub fn call(&mut self, args: &[ArrayRef], rows: usize) -> Result<ScalarResult, PluginError> {
        let handle = Arc::clone(&self.binding.handle);
        let (result, elapsed) = on_current_version(&handle, rows, |version| self.call_on(version, args, rows))?;
        if let Some(canary) = handle.canary() {
            canary.offer_scalar(&self.binding.name, args, rows, &result, elapsed);
        }
        Ok(result)
    }

    fn call_on(&mut self, version: &Arc<Version>, args: &[ArrayRef], rows: usize) -> Result<ScalarResult, Attempt> {
        let mut pieces = Vec::new();
        let mut failed = Vec::new();
        let mut isolation = Isolation::new(rows, self.fail_fast);
        match self.bisect(version, args, (0, rows), &mut isolation, &mut pieces, &mut failed) {
            Ok(()) => {}
            Err(Attempt::Stopped) => {
                return Ok(ScalarResult { values: new_null_array(&self.return_type(), rows), failed });
            }
            Err(other) => return Err(other),
        }
        let values = match pieces.len() {
            1 => pieces.pop().expect("one piece"),
            _ => {
                let refs: Vec<&dyn arrow::array::Array> = pieces.iter().map(AsRef::as_ref).collect();
                concat(&refs).map_err(|err| self.contract(err.to_string()))?
            }
        };
        Ok(ScalarResult { values, failed })
    }

    fn bisect(
        &mut self,
        version: &Arc<Version>,
        args: &[ArrayRef],
        (start, len): (usize, usize),
        isolation: &mut Isolation,
        pieces: &mut Vec<ArrayRef>,
        failed: &mut Vec<RowFailure>,
    ) -> Result<(), Attempt> {
        let columns = slice_columns(args, start, len).map_err(|reason| self.contract(reason))?;
        let (instance, function) = self.binding.instance(version)?;
        let outcome = instance.call_scalar(function, len as u32, &columns);
        match outcome {
            Ok(Ok(output)) => {
                let values = from_column(output.values, &self.returns, len).map_err(|reason| self.contract(reason))?;
                failed.extend(checked_row_errors(output.errors, start, len).map_err(|reason| self.contract(reason))?);
                pieces.push(values);
                Ok(())
            }
            Ok(Err(CallError::Failed(reason))) => {
                failed.extend(failed_slice(start, len, &reason, FailureKind::RowError));
                pieces.push(new_null_array(&self.return_type(), len));
                Ok(())
            }
            Ok(Err(CallError::InvalidInput(reason))) => {
                Err(self.contract(format!("rejected its input: {reason}")).into())
            }
            Err(trap @ PluginError::Trap { .. }) => {
                if let Some(fallback) = self.binding.trapped(version, &trap) {
                    return Err(Attempt::Retry(fallback));
                }
                if len == 1 || !isolation.bisects(&trap) {
                    failed.extend(failed_slice(start, len, &trap.to_string(), FailureKind::Trap));
                    if isolation.fail_fast {
                        return Err(Attempt::Stopped);
                    }
                    pieces.push(new_null_array(&self.return_type(), len));
                    return Ok(());
                }
                self.binding.check_stopping(len)?;
                let half = len / 2;
                self.bisect(version, args, (start, half), isolation, pieces, failed)?;
                self.bisect(version, args, (start + half, len - half), isolation, pieces, failed)
            }
            Err(other) => Err(other.into()),
        }
    }

    fn contract(&self, reason: String) -> PluginError {
        PluginError::Contract {
            plugin: self.binding.handle.name().to_owned(),
            function: self.binding.name.clone(),
            reason,
        }
    }
}

/// The outcome of a table-function call.
#[derive(Debug)]
pub struct TableResult {
    /// For each output row, its input row.
    pub parents: Vec<u32>,
    /// Output columns.
    pub columns: Vec<ArrayRef>,
    /// Input rows that failed.
    pub failed: Vec<RowFailure>,
}

/// Calls one table function of a plugin.
pub struct TableCaller {
    binding: FunctionBinding,
    fail_fast: bool,
}

impl TableCaller {
    /// A caller for the table function `function` of `handle`'s versions.
    pub fn new(handle: Arc<PluginHandle>, limits: Limits, function: &str) -> Self {
        Self { binding: FunctionBinding::new(handle, function.to_owned(), limits), fail_fast: false }
    }

    /// As [`ScalarCaller::set_fail_fast`].
    pub fn set_fail_fast(&mut self, fail_fast: bool) {
        self.fail_fast = fail_fast;
    }

    /// As [`ScalarCaller::set_step`].
    pub fn set_step(&mut self, step: &str) {
        self.binding.set_step(step);
    }

    /// Calls the function on `rows` rows of `args`, on the version current when the call
    /// starts.
    ///
    /// # Errors
    /// As for [`ScalarCaller::call`].
    pub fn call(&mut self, args: &[ArrayRef], rows: usize) -> Result<TableResult, PluginError> {
        let handle = Arc::clone(&self.binding.handle);
        let (result, elapsed) = on_current_version(&handle, rows, |version| self.call_on(version, args, rows))?;
        if let Some(canary) = handle.canary() {
            canary.offer_table(&self.binding.name, args, rows, &result, elapsed);
        }
        Ok(result)
    }

    fn call_on(&mut self, version: &Arc<Version>, args: &[ArrayRef], rows: usize) -> Result<TableResult, Attempt> {
        // Every version has the same output columns (the registry checks), so this is a lookup.
        let fields = version
            .plugin
            .functions
            .table()
            .iter()
            .find(|f| f.name == self.binding.name)
            .map(|f| f.output.clone())
            .unwrap_or_default();
        let mut parents = Vec::new();
        let mut pieces: Vec<Vec<ArrayRef>> = Vec::new();
        let mut failed = Vec::new();
        let mut pending = vec![(0, rows)];
        let mut isolation = Isolation::new(rows, self.fail_fast);
        let mut first = true;
        while let Some((start, len)) = pending.pop() {
            if len == 0 {
                continue;
            }
            if !std::mem::take(&mut first) {
                self.binding.check_stopping(len)?;
            }
            let columns = slice_columns(args, start, len).map_err(|reason| self.contract(reason))?;
            let (instance, function) = self.binding.instance(version)?;
            let outcome = instance.call_table(function, len as u32, &columns);
            match outcome {
                Ok(Ok(output)) => {
                    let produced = output.parents.len();
                    if output.parents.iter().any(|&p| p as usize >= len)
                        || output.parents.windows(2).any(|w| w[0] > w[1])
                    {
                        return Err(self.contract("parent rows out of range or out of order".into()).into());
                    }
                    if output.columns.len() != fields.len() {
                        let reason = format!("returned {} columns, declared {}", output.columns.len(), fields.len());
                        return Err(self.contract(reason).into());
                    }
                    let arrays = output
                        .columns
                        .into_iter()
                        .zip(&fields)
                        .map(|(column, field)| from_column(column, &field.data_type, produced))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|reason| self.contract(reason))?;
                    let errors =
                        checked_row_errors(output.errors, start, len).map_err(|reason| self.contract(reason))?;
                    parents.push(output.parents.iter().map(|&p| p + start as u32).collect::<Vec<_>>());
                    pieces.push(arrays);
                    failed.extend(errors);
                }
                Ok(Err(CallError::Failed(reason))) => {
                    failed.extend(failed_slice(start, len, &reason, FailureKind::RowError));
                }
                Ok(Err(CallError::InvalidInput(reason))) => {
                    return Err(self.contract(format!("rejected its input: {reason}")).into());
                }
                Err(trap @ PluginError::Trap { .. }) => {
                    if let Some(fallback) = self.binding.trapped(version, &trap) {
                        return Err(Attempt::Retry(fallback));
                    }
                    if len == 1 || !isolation.bisects(&trap) {
                        failed.extend(failed_slice(start, len, &trap.to_string(), FailureKind::Trap));
                        if isolation.fail_fast {
                            // The caller fails the step on this row: no need for the rest.
                            break;
                        }
                    } else {
                        // Right half first on the stack so the left half runs first: order kept.
                        pending.push((start + len / 2, len - len / 2));
                        pending.push((start, len / 2));
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        let columns = (0..fields.len())
            .map(|i| {
                let refs: Vec<&dyn arrow::array::Array> = pieces.iter().map(|piece| piece[i].as_ref()).collect();
                if refs.is_empty() {
                    Ok(new_null_array(&to_arrow_type(&fields[i].data_type), 0))
                } else {
                    concat(&refs).map_err(|err| self.contract(err.to_string()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        failed.sort_by_key(|f| f.row);
        Ok(TableResult { parents: parents.concat(), columns, failed })
    }

    fn contract(&self, reason: String) -> PluginError {
        PluginError::Contract {
            plugin: self.binding.handle.name().to_owned(),
            function: self.binding.name.clone(),
            reason,
        }
    }
}
