//! Calling plugin functions on Arrow arrays, surviving traps.
//!
//! [`ScalarCaller`] and [`TableCaller`] own one instance each (one per operator subtask). When a
//! call traps, the instance is replaced and the batch is bisected until the rows that trap on
//! their own are found, so the good rows of the batch still get their results and the error
//! policy sees exactly the failing rows.

use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::compute::concat;
use arrow::datatypes::DataType as ArrowType;

use super::bindings::{CallError, DataType};
use super::convert::{from_column, to_arrow_type, to_column};
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
pub struct FailedRow {
    /// Index within the batch.
    pub row: usize,
    /// The reason (a row error returned by the function, or the trap).
    pub reason: String,
}

/// The outcome of a batch call: results for all rows (NULL where failed) and the failures.
#[derive(Debug)]
pub struct ScalarResult {
    /// One value per input row.
    pub values: ArrayRef,
    /// Rows that failed, in row order.
    pub failed: Vec<FailedRow>,
}

/// Calls one scalar function of a plugin.
pub struct ScalarCaller {
    plugin: Arc<Plugin>,
    limits: Limits,
    function: u32,
    returns: DataType,
    instance: InstanceSlot,
}

impl std::fmt::Debug for ScalarCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalarCaller")
            .field("plugin", &self.plugin.info.name)
            .field("function", &self.function)
            .finish()
    }
}

impl ScalarCaller {
    /// A caller for function number `function`.
    pub fn new(plugin: Arc<Plugin>, limits: Limits, function: u32) -> Self {
        let returns = plugin.scalar[function as usize].returns;
        Self { plugin, limits, function, returns, instance: InstanceSlot::default() }
    }

    /// Arrow type of the result.
    pub fn return_type(&self) -> ArrowType {
        to_arrow_type(&self.returns)
    }

    /// Calls the function on `rows` rows of `args`.
    ///
    /// # Errors
    /// Only failures that are not about rows: the instance cannot be created, the plugin broke
    /// the contract, or rejected the input as a whole.
    pub fn call(&mut self, args: &[ArrayRef], rows: usize) -> Result<ScalarResult, PluginError> {
        let mut pieces = Vec::new();
        let mut failed = Vec::new();
        self.bisect(args, 0, rows, &mut pieces, &mut failed)?;
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
        args: &[ArrayRef],
        start: usize,
        len: usize,
        pieces: &mut Vec<ArrayRef>,
        failed: &mut Vec<FailedRow>,
    ) -> Result<(), PluginError> {
        let columns = slice_columns(args, start, len).map_err(|reason| self.contract(reason))?;
        let instance = self.instance.get(&self.plugin, self.limits)?;
        let outcome = instance.call_scalar(self.function, len as u32, &columns);
        match outcome {
            Ok(Ok(output)) => {
                let values = from_column(output.values, &self.returns, len).map_err(|reason| self.contract(reason))?;
                for error in output.errors {
                    if error.row as usize >= len {
                        return Err(self.contract(format!("reported an error for row {} of {len}", error.row)));
                    }
                    failed.push(FailedRow { row: start + error.row as usize, reason: error.message });
                }
                pieces.push(values);
                Ok(())
            }
            Ok(Err(CallError::Failed(reason))) => {
                failed.extend((start..start + len).map(|row| FailedRow { row, reason: reason.clone() }));
                pieces.push(new_null_array(&self.return_type(), len));
                Ok(())
            }
            Ok(Err(CallError::InvalidInput(reason))) => Err(self.contract(format!("rejected its input: {reason}"))),
            Err(trap @ PluginError::Trap { .. }) => {
                self.instance.discard();
                if len == 1 {
                    failed.push(FailedRow { row: start, reason: trap.to_string() });
                    pieces.push(new_null_array(&self.return_type(), 1));
                    return Ok(());
                }
                let half = len / 2;
                self.bisect(args, start, half, pieces, failed)?;
                self.bisect(args, start + half, len - half, pieces, failed)
            }
            Err(other) => Err(other),
        }
    }

    fn contract(&self, reason: String) -> PluginError {
        PluginError::Contract {
            plugin: self.plugin.info.name.clone(),
            function: self.plugin.scalar[self.function as usize].name.clone(),
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
    pub failed: Vec<FailedRow>,
}

/// Calls one table function of a plugin.
pub struct TableCaller {
    plugin: Arc<Plugin>,
    limits: Limits,
    function: u32,
    instance: InstanceSlot,
}

impl TableCaller {
    /// A caller for function number `function`.
    pub fn new(plugin: Arc<Plugin>, limits: Limits, function: u32) -> Self {
        Self { plugin, limits, function, instance: InstanceSlot::default() }
    }

    /// Calls the function on `rows` rows of `args`.
    ///
    /// # Errors
    /// As for [`ScalarCaller::call`].
    pub fn call(&mut self, args: &[ArrayRef], rows: usize) -> Result<TableResult, PluginError> {
        let fields = self.plugin.table[self.function as usize].output.clone();
        let mut parents = Vec::new();
        let mut pieces: Vec<Vec<ArrayRef>> = Vec::new();
        let mut failed = Vec::new();
        let mut pending = vec![(0, rows)];
        while let Some((start, len)) = pending.pop() {
            if len == 0 {
                continue;
            }
            let columns = slice_columns(args, start, len).map_err(|reason| self.contract(reason))?;
            let instance = self.instance.get(&self.plugin, self.limits)?;
            let outcome = instance.call_table(self.function, len as u32, &columns);
            match outcome {
                Ok(Ok(output)) => {
                    let produced = output.parents.len();
                    if output.parents.iter().any(|&p| p as usize >= len)
                        || output.parents.windows(2).any(|w| w[0] > w[1])
                    {
                        return Err(self.contract("parent rows out of range or out of order".into()));
                    }
                    if output.columns.len() != fields.len() {
                        return Err(self.contract(format!(
                            "returned {} columns, declared {}",
                            output.columns.len(),
                            fields.len()
                        )));
                    }
                    let arrays = output
                        .columns
                        .into_iter()
                        .zip(&fields)
                        .map(|(column, field)| from_column(column, &field.data_type, produced))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|reason| self.contract(reason))?;
                    parents.push(output.parents.iter().map(|&p| p + start as u32).collect::<Vec<_>>());
                    pieces.push(arrays);
                    failed.extend(
                        output.errors.into_iter().map(|e| FailedRow { row: start + e.row as usize, reason: e.message }),
                    );
                }
                Ok(Err(CallError::Failed(reason))) => {
                    failed.extend((start..start + len).map(|row| FailedRow { row, reason: reason.clone() }));
                }
                Ok(Err(CallError::InvalidInput(reason))) => {
                    return Err(self.contract(format!("rejected its input: {reason}")));
                }
                Err(trap @ PluginError::Trap { .. }) => {
                    self.instance.discard();
                    if len == 1 {
                        failed.push(FailedRow { row: start, reason: trap.to_string() });
                    } else {
                        // Right half first on the stack so the left half runs first: order kept.
                        pending.push((start + len / 2, len - len / 2));
                        pending.push((start, len / 2));
                    }
                }
                Err(other) => return Err(other),
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
            plugin: self.plugin.info.name.clone(),
            function: self.plugin.table[self.function as usize].name.clone(),
            reason,
        }
    }
}
