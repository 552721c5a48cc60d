//! Plugin aggregate functions (the `aggregate-udf` world) as DataFusion aggregates, so a window
//! can say `p99: "percentile(price, 0.99)"`.
//!
//! The host owns the state: each group's accumulator is a byte string the plugin defined
//! (`create` is the empty string), kept in the window's accumulators per key and window. A batch
//! crosses the boundary once per window it touches: its argument columns, the group of every
//! row, and the states of the groups it touches; the plugin returns their new states. `merge`
//! combines two states (partial aggregates), `finish` turns states into values. Because the
//! states are plain bytes in the host, they can be checkpointed and handed to a new version of
//! the plugin (which the plugin's declared `state-version` guards). A trap fails the job (the
//! state of the groups in that call cannot be trusted any more), except on a version on
//! probation after a hot swap: the call, whose input states are untouched, runs again on the
//! previous version.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray};
use arrow::datatypes::{DataType as ArrowType, Field, FieldRef};
use datafusion_common::{DataFusionError, Result};
use datafusion_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion_expr::{Accumulator, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility};

use weir_plugin::bindings::DataType;
use weir_plugin::call::FunctionBinding;
use weir_plugin::convert::{from_column, to_arrow_type, to_column};
use weir_plugin::registry::FunctionShape;
use weir_plugin::{Limits, PluginError, PluginHandle};

/// One plugin aggregate as a DataFusion aggregate function.
#[derive(Debug)]
pub struct WasmAggregate {
    name: String,
    handle: Arc<PluginHandle>,
    limits: Limits,
    signature: Signature,
    args: Vec<ArrowType>,
    returns: DataType,
    return_type: ArrowType,
    /// The declared state encoding version (every later version must declare the same).
    pub state_version: u32,
    used: Arc<AtomicBool>,
    bindings: Arc<Mutex<Vec<FunctionBinding>>>,
}

impl WasmAggregate {
    /// Aggregate number `function` of an aggregate plugin's current version, registered with
    /// the handle as a use that becomes live when an expression calls it.
    pub fn new(handle: Arc<PluginHandle>, limits: Limits, function: u32) -> Self {
        let current = handle.current();
        let signature = &current.plugin.functions.aggregate()[function as usize];
        let args: Vec<ArrowType> = signature.args.iter().map(to_arrow_type).collect();
        let return_type = to_arrow_type(&signature.returns);
        let shape = FunctionShape::Aggregate {
            args: args.clone(),
            returns: return_type.clone(),
            state_version: signature.state_version,
        };
        let used = handle.register_use("SQL aggregates".into(), signature.name.clone(), shape, limits, false);
        Self {
            name: signature.name.clone(),
            signature: Signature::user_defined(Volatility::Immutable),
            args,
            returns: signature.returns,
            return_type,
            state_version: signature.state_version,
            handle,
            limits,
            used,
            bindings: Arc::default(),
        }
    }

    fn caller(&self) -> WasmCaller {
        WasmCaller {
            handle: Arc::clone(&self.handle),
            limits: self.limits,
            name: self.name.clone(),
            returns: self.returns,
            bindings: Arc::clone(&self.bindings),
        }
    }
}

impl PartialEq for WasmAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.handle, &other.handle)
    }
}

impl Eq for WasmAggregate {}

impl Hash for WasmAggregate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.handle.name().hash(state);
    }
}

/// Whether an aggregate call runs plugin code.
pub fn is_wasm(udf: &datafusion_expr::AggregateUDF) -> bool {
    as_wasm(udf).is_some()
}

impl AggregateUDFImpl for WasmAggregate {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, given: &[ArrowType]) -> Result<Vec<ArrowType>> {
        super::wasm_function::coerce_to_declared("aggregate", &self.name, &self.args, &self.return_type, given)
    }

    fn return_type(&self, _arg_types: &[ArrowType]) -> Result<ArrowType> {
        // The planner asks while planning a call: the pipeline keeps state of this aggregate.
        self.used.store(true, Ordering::Relaxed);
        Ok(self.return_type.clone())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(OneGroup(WasmGroups::new(self.caller()))))
    }

    fn state_fields(&self, _args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format!("{}[state]", self.name), ArrowType::Binary, true))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(self.groups()))
    }
}

impl WasmAggregate {
    /// Fresh host-held states for any number of groups (what the window and aggregate steps
    /// fold into, so that a state limit refuses single groups' rows).
    pub fn groups(&self) -> WasmGroups {
        WasmGroups::new(self.caller())
    }
}

/// The plugin aggregate behind an aggregate call, if it is one.
pub fn as_wasm(udf: &datafusion_expr::AggregateUDF) -> Option<&WasmAggregate> {
    let any: &dyn std::any::Any = udf.inner().as_ref();
    any.downcast_ref::<WasmAggregate>()
}

/// Calls into the plugin with a binding from the function's pool (one per concurrent caller),
/// on the version current when the call starts: states kept by the host carry over a swap
/// (the registry only accepts versions with the same `state-version`).
#[derive(Debug, Clone)]
struct WasmCaller {
    handle: Arc<PluginHandle>,
    limits: Limits,
    name: String,
    returns: DataType,
    bindings: Arc<Mutex<Vec<FunctionBinding>>>,
}

impl WasmCaller {
    fn with_instance<R>(
        &self,
        rows: usize,
        mut call: impl FnMut(
            &mut weir_plugin::Instance,
            u32,
        )
            -> std::result::Result<std::result::Result<R, weir_plugin::bindings::CallError>, PluginError>,
    ) -> Result<R> {
        let taken = self.bindings.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut binding =
            taken.unwrap_or_else(|| FunctionBinding::new(Arc::clone(&self.handle), self.name.clone(), self.limits));
        let outcome = match weir_engine::blocking(|| binding.call_once(rows, &mut call)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(
                weir_plugin::bindings::CallError::InvalidInput(reason)
                | weir_plugin::bindings::CallError::Failed(reason),
            )) => Err(DataFusionError::Execution(format!("plugin aggregate `{}`: {reason}", self.name))),
            Err(err) => Err(DataFusionError::External(Box::new(err))),
        };
        self.bindings.lock().unwrap_or_else(PoisonError::into_inner).push(binding);
        outcome
    }
}

/// Host-held states of every group, counted against the plugin's `limits.state_per_group` and
/// `limits.state` (the plugin-wide total lives in the handle's stats, shared by every step).
#[derive(Debug)]
pub struct WasmGroups {
    caller: WasmCaller,
    states: Vec<Vec<u8>>,
    bytes: usize,
}

/// A batch folded into the states of the groups it touches, not yet kept: the plugin ran, and
/// [`WasmGroups::keep`] decides which new states replace the old ones.
#[derive(Debug)]
pub struct Folded {
    touched: Vec<usize>,
    old: Vec<Vec<u8>>,
    new: Vec<Vec<u8>>,
    /// Per touched group, why its new state is refused (a state limit), if it is.
    refused: Vec<Option<String>>,
}

impl Folded {
    /// The groups whose new state is over a limit, with the reason.
    pub fn refused(&self) -> impl Iterator<Item = (usize, &str)> {
        self.touched.iter().zip(&self.refused).filter_map(|(group, reason)| Some((*group, reason.as_deref()?)))
    }
}

/// A state limit refused a group's new state, on a path that cannot hand single rows to the
/// step's error policy (the plain `GroupsAccumulator` interface).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateLimitExceeded(String);

impl WasmGroups {
    fn new(caller: WasmCaller) -> Self {
        Self { caller, states: Vec::new(), bytes: 0 }
    }

    /// Brings the byte count (and the plugin-wide total) up to date with the states.
    fn recount(&mut self) {
        let bytes: usize = self.states.iter().map(Vec::len).sum();
        self.account(bytes);
    }

    fn account(&mut self, bytes: usize) {
        let held = &self.caller.handle.stats.state_bytes;
        if bytes >= self.bytes {
            held.fetch_add((bytes - self.bytes) as u64, Ordering::Relaxed);
        } else {
            held.fetch_sub((self.bytes - bytes) as u64, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }

    fn taken(&mut self, emit_to: EmitTo) -> Vec<Vec<u8>> {
        let taken = emit_to.take_needed(&mut self.states);
        self.recount();
        taken
    }

    fn described(&self) -> String {
        format!("plugin aggregate `{}` (plugin `{}`)", self.caller.name, self.caller.handle.name())
    }

    /// Runs the plugin over a batch: the touched groups' new states, and which of them a state
    /// limit refuses (a state over `limits.state_per_group`, or growth past `limits.state`
    /// across the plugin). Shrinking states are never refused. Nothing changes until
    /// [`WasmGroups::keep`].
    ///
    /// # Errors
    /// A failed or trapped plugin call (the states are left as they were).
    pub fn fold(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<Folded> {
        self.states.resize(total_num_groups, Vec::new());
        let rows = group_indices.len();
        let (values, group_indices): (Vec<ArrayRef>, Vec<usize>) = match kept_rows(opt_filter, rows) {
            None => (values.to_vec(), group_indices.to_vec()),
            Some(keep) => {
                let mask = BooleanArray::from(keep.clone());
                let values =
                    values.iter().map(|v| arrow::compute::filter(v, &mask)).collect::<std::result::Result<_, _>>()?;
                let groups = group_indices.iter().zip(&keep).filter(|(_, k)| **k).map(|(g, _)| *g).collect();
                (values, groups)
            }
        };
        let empty = Folded { touched: Vec::new(), old: Vec::new(), new: Vec::new(), refused: Vec::new() };
        if group_indices.is_empty() {
            return Ok(empty);
        }
        // The touched groups, numbered in order of first appearance for the call.
        let mut local = vec![u32::MAX; total_num_groups];
        let mut touched: Vec<usize> = Vec::new();
        let rows_to_local: Vec<u32> = group_indices
            .iter()
            .map(|&group| {
                if local[group] == u32::MAX {
                    local[group] = touched.len() as u32;
                    touched.push(group);
                }
                local[group]
            })
            .collect();
        let columns = values
            .iter()
            .map(|array| {
                to_column(array).ok_or_else(|| {
                    DataFusionError::Execution(format!("cannot pass {} to a plugin aggregate", array.data_type()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let old: Vec<Vec<u8>> = touched.iter().map(|&g| std::mem::take(&mut self.states[g])).collect();
        let called = self
            .caller
            .with_instance(rows_to_local.len(), |instance, function| {
                instance.call_accumulate(function, &old, &rows_to_local, &columns)
            })
            .and_then(|new| {
                if new.len() == touched.len() {
                    Ok(new)
                } else {
                    Err(DataFusionError::Execution(format!(
                        "{} returned {} states for {} groups",
                        self.described(),
                        new.len(),
                        touched.len()
                    )))
                }
            });
        let new = match called {
            Ok(new) => new,
            Err(err) => {
                for (&group, state) in touched.iter().zip(old) {
                    self.states[group] = state;
                }
                return Err(err);
            }
        };
        let limits = self.caller.limits;
        let mut refused: Vec<Option<String>> = old
            .iter()
            .zip(&new)
            .map(|(old, new)| {
                (new.len() > old.len() && new.len() as u64 > limits.state_per_group).then(|| {
                    format!(
                        "{}: the group's state would grow to {}, over limits.state_per_group ({}); the row is \
                         refused and the group keeps its state",
                        self.described(),
                        bytesize::ByteSize(new.len() as u64),
                        bytesize::ByteSize(limits.state_per_group)
                    )
                })
            })
            .collect();
        let growth: i64 = old
            .iter()
            .zip(&new)
            .zip(&refused)
            .filter(|(_, refused)| refused.is_none())
            .map(|((old, new), _)| new.len() as i64 - old.len() as i64)
            .sum();
        let held = self.caller.handle.stats.state_bytes.load(Ordering::Relaxed);
        if growth > 0 && held.saturating_add(growth as u64) > limits.state {
            let reason = format!(
                "{}: the plugin's aggregate state (all groups of all steps) would grow to {}, over limits.state \
                 ({}); the row is refused and the group keeps its state",
                self.described(),
                bytesize::ByteSize(held.saturating_add(growth as u64)),
                bytesize::ByteSize(limits.state)
            );
            for ((old, new), refused) in old.iter().zip(&new).zip(&mut refused) {
                if refused.is_none() && new.len() > old.len() {
                    *refused = Some(reason.clone());
                }
            }
        }
        Ok(Folded { touched, old, new, refused })
    }

    /// The value of group 0, keeping its state (running aggregates).
    ///
    /// # Errors
    /// A failed plugin call, or a value of another type than declared.
    pub fn evaluate_one(&mut self) -> Result<datafusion_common::ScalarValue> {
        self.states.resize(1, Vec::new());
        let states = [self.states[0].clone()];
        let column = self.caller.with_instance(1, |instance, function| instance.call_finish(function, &states))?;
        let array = from_column(column, &self.caller.returns, 1).map_err(DataFusionError::Execution)?;
        datafusion_common::ScalarValue::try_from_array(&array, 0)
    }

    /// Keeps the new states of a fold, except for the groups `refused` names (which keep their
    /// earlier state).
    pub fn keep(&mut self, folded: Folded, refused: impl Fn(usize) -> bool) {
        for ((group, old), new) in folded.touched.into_iter().zip(folded.old).zip(folded.new) {
            self.states[group] = if refused(group) { old } else { new };
        }
        self.recount();
    }
}

fn kept_rows(filter: Option<&BooleanArray>, rows: usize) -> Option<Vec<bool>> {
    filter.map(|filter| (0..rows).map(|r| filter.is_valid(r) && filter.value(r)).collect())
}

impl Drop for WasmGroups {
    fn drop(&mut self) {
        self.account(0);
    }
}

impl GroupsAccumulator for WasmGroups {
    /// Folds and keeps; a state limit fails the call with nothing kept (the window and
    /// aggregate steps use [`WasmGroups::fold`] instead, which refuses single groups' rows).
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let folded = self.fold(values, group_indices, opt_filter, total_num_groups)?;
        let refusal = folded.refused().next().map(|(_, reason)| reason.to_string());
        match refusal {
            None => self.keep(folded, |_| false),
            Some(reason) => {
                self.keep(folded, |_| true);
                return Err(DataFusionError::External(Box::new(StateLimitExceeded(reason))));
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let states = self.taken(emit_to);
        let count = states.len();
        let column = self.caller.with_instance(count, |instance, function| instance.call_finish(function, &states))?;
        from_column(column, &self.caller.returns, count).map_err(DataFusionError::Execution)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let states = self.taken(emit_to);
        Ok(vec![Arc::new(BinaryArray::from_iter_values(states))])
    }

    /// Merged states over `limits.state_per_group` fail the call: merges combine states that
    /// were each accepted, so there is no single row to refuse.
    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.states.resize(total_num_groups, Vec::new());
        let partial = values[0].as_binary::<i32>();
        let per_group = self.caller.limits.state_per_group;
        for (row, &group) in group_indices.iter().enumerate() {
            if partial.is_null(row) || partial.value(row).is_empty() {
                continue;
            }
            let right = partial.value(row);
            if self.states[group].is_empty() {
                self.states[group] = right.to_vec();
            } else {
                let left = std::mem::take(&mut self.states[group]);
                let merged =
                    self.caller.with_instance(1, |instance, function| instance.call_merge(function, &left, right))?;
                if merged.len() > left.len().max(right.len()) && merged.len() as u64 > per_group {
                    self.states[group] = left;
                    self.recount();
                    return Err(DataFusionError::External(Box::new(StateLimitExceeded(format!(
                        "{}: merging two states of a group gives {}, over limits.state_per_group ({})",
                        self.described(),
                        bytesize::ByteSize(merged.len() as u64),
                        bytesize::ByteSize(per_group)
                    )))));
                }
                self.states[group] = merged;
            }
        }
        self.recount();
        Ok(())
    }

    /// Every row its own group: one state per row.
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut single = WasmGroups::new(self.caller.clone());
        let groups: Vec<usize> = (0..rows).collect();
        single.update_batch(values, &groups, opt_filter, rows)?;
        single.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.bytes + self.states.capacity() * std::mem::size_of::<Vec<u8>>()
    }
}

/// The same states for one group (DataFusion's row-at-a-time accumulator API).
#[derive(Debug)]
struct OneGroup(WasmGroups);

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let rows = values.first().map_or(0, |v| v.len());
        self.0.update_batch(values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> Result<datafusion_common::ScalarValue> {
        self.0.evaluate_one()
    }

    fn size(&self) -> usize {
        self.0.size()
    }

    fn state(&mut self) -> Result<Vec<datafusion_common::ScalarValue>> {
        self.0.states.resize(1, Vec::new());
        Ok(vec![datafusion_common::ScalarValue::Binary(Some(self.0.states[0].clone()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states.first().map_or(0, |s| s.len());
        self.0.merge_batch(states, &vec![0; rows], 1)
    }
}
