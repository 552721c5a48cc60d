//! Aggregate expressions (`count(*)`, `max(price)`, `count(DISTINCT bidder)`,
//! `sum(price) FILTER (WHERE price > 10)`, `percentile(price, 0.99)` from a plugin) compiled once
//! at load time into DataFusion aggregate functions, and the per-group accumulators that windows
//! and keyed aggregates keep.
//!
//! Each `aggregates:` entry is one aggregate call keyed by its output column. The call is planned
//! by DataFusion's SQL planner and lowered with [`AggregateExprBuilder`]; state lives in a
//! [`GroupsAccumulator`] (vectorized over group indices, DataFusion's fast path), or for
//! functions without one (distinct counts, `first`/`last`) in per-group accumulators behind
//! DataFusion's adapter. Arguments and filters are evaluated once per input batch
//! ([`AggregateSet::arguments`]) and handed to every window the rows fall in.
//!
//! A plugin aggregate's states are bytes the host keeps ([`WasmGroups`]), bounded by the
//! plugin's `limits.state_per_group` and `limits.state`. An update that would take a group past
//! them is refused for that group in every aggregate of the step (so the group's aggregates stay
//! consistent), and its rows are returned to the step, which hands them to its `on_error`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{Field, SchemaRef};
use datafusion_expr::expr::{AggregateFunction, NullTreatment};
use datafusion_expr::{EmitTo, Expr, GroupsAccumulator};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::GroupsAccumulatorAdapter;
use datafusion_physical_expr::aggregate::{AggregateExprBuilder, AggregateFunctionExpr};
use datafusion_physical_expr::{PhysicalExpr, PhysicalSortExpr};

use super::expr::{ExprError, FunctionCatalog, lower, plan_logical};
use super::wasm_aggregate::WasmGroups;
use weir_engine::component::RuntimeError;

/// One compiled aggregate: output column, function, argument and filter expressions.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    /// The SQL as written, for errors.
    pub sql: String,
    /// Output column.
    pub field: Field,
    function: Arc<AggregateFunctionExpr>,
    /// Arguments, then ORDER BY expressions (what the accumulator's `update_batch` takes).
    inputs: Vec<Arc<dyn PhysicalExpr>>,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

impl AggregateCall {
    /// Compiles one aggregate call, named `name`, over rows of `schema`.
    ///
    /// # Errors
    /// Syntax, unknown columns or functions, a call that is not one aggregate function.
    pub fn compile(name: &str, sql: &str, schema: &SchemaRef, functions: &FunctionCatalog) -> Result<Self, ExprError> {
        let (mut logical, df_schema) = plan_logical(sql, schema, functions)?;
        // The planner names `count(*)` with an alias around `count(1)`.
        while let Expr::Alias(alias) = logical {
            logical = *alias.expr;
        }
        let Expr::AggregateFunction(AggregateFunction { func, params }) = logical else {
            return Err(ExprError {
                message: format!(
                    "`{sql}` is not an aggregate call; each aggregate is one call such as count(*), max(price), \
                     count(DISTINCT bidder) or a plugin's aggregate"
                ),
            });
        };
        let args = params.args.iter().map(|arg| lower(arg, &df_schema)).collect::<Result<Vec<_>, _>>()?;
        let order_by = params
            .order_by
            .iter()
            .map(|sort| {
                let expr = lower(&sort.expr, &df_schema)?;
                let options = arrow::compute::SortOptions { descending: !sort.asc, nulls_first: sort.nulls_first };
                Ok(PhysicalSortExpr { expr, options })
            })
            .collect::<Result<Vec<_>, ExprError>>()?;
        let filter = params.filter.as_ref().map(|filter| lower(filter, &df_schema)).transpose()?;
        let mut inputs = args.clone();
        inputs.extend(order_by.iter().map(|sort| Arc::clone(&sort.expr)));
        let function = AggregateExprBuilder::new(func, args)
            .schema(Arc::clone(schema))
            .alias(name)
            .with_distinct(params.distinct)
            .with_ignore_nulls(params.null_treatment == Some(NullTreatment::IgnoreNulls))
            .order_by(order_by)
            .build()?;
        let returned = function.field();
        let field = Field::new(name, returned.data_type().clone(), true);
        Ok(Self { sql: sql.to_string(), field, function: Arc::new(function), inputs, filter })
    }

    /// The plugin aggregate's host-held states, if this call is a plugin's.
    /// How many columns this call's partial state has, with their types (what a checkpoint
    /// stores per group).
    pub fn state_width(&self) -> usize {
        self.accumulator().ok().and_then(|mut empty| empty.state(EmitTo::All).ok()).map_or(0, |state| state.len())
    }

    /// What a checkpoint of this call's state depends on: its SQL, and a plugin aggregate's
    /// declared `state-version`.
    pub fn state_shape(&self) -> String {
        match super::wasm_aggregate::as_wasm(self.function.fun()) {
            Some(plugin) => format!("{} (state-version {})", self.sql, plugin.state_version),
            None => self.sql.clone(),
        }
    }

    fn plugin_groups(&self) -> Option<WasmGroups> {
        super::wasm_aggregate::as_wasm(self.function.fun()).map(super::wasm_aggregate::WasmAggregate::groups)
    }

    /// A fresh accumulator for any number of groups.
    ///
    /// # Errors
    /// Functions DataFusion cannot accumulate (reported at planning by [`AggregateSet::compile`]).
    pub fn accumulator(&self) -> Result<Box<dyn GroupsAccumulator>, ExprError> {
        if self.function.groups_accumulator_supported() {
            return Ok(self.function.create_groups_accumulator()?);
        }
        let function = Arc::clone(&self.function);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || function.create_accumulator())))
    }
}

impl AggregateCall {
    /// A fresh row-level accumulator for one group, whose value can be read without emptying
    /// it (running aggregates).
    ///
    /// # Errors
    /// Functions DataFusion cannot accumulate.
    pub fn row_accumulator(&self) -> Result<RowAccumulator, ExprError> {
        Ok(match self.plugin_groups() {
            Some(groups) => RowAccumulator::Plugin(groups),
            None => RowAccumulator::Native(self.function.create_accumulator()?),
        })
    }
}

/// One group's accumulator for one aggregate (running aggregates).
#[derive(Debug)]
pub enum RowAccumulator {
    /// DataFusion's.
    Native(Box<dyn datafusion_expr::Accumulator>),
    /// A plugin's state, group 0 of host-held states.
    Plugin(WasmGroups),
}

impl RowAccumulator {
    /// The partial state (one row per state column), keeping the accumulator as it was: what a
    /// checkpoint stores. DataFusion may leave an accumulator unusable after `state`, so the
    /// state is merged into a fresh one that takes its place.
    ///
    /// # Errors
    /// Accumulator failures.
    pub fn state(&mut self, call: &AggregateCall) -> datafusion_common::Result<Vec<ArrayRef>> {
        match self {
            Self::Native(accumulator) => {
                let state = accumulator
                    .state()?
                    .iter()
                    .map(datafusion_common::ScalarValue::to_array)
                    .collect::<datafusion_common::Result<Vec<_>>>()?;
                let mut fresh = call.function.create_accumulator()?;
                fresh.merge_batch(&state)?;
                *accumulator = fresh;
                Ok(state)
            }
            Self::Plugin(groups) => {
                let state = groups.state(EmitTo::All)?;
                groups.merge_batch(&state, &[0], 1)?;
                Ok(state)
            }
        }
    }

    /// Merges a partial state (as [`RowAccumulator::state`] returned it) into this one.
    ///
    /// # Errors
    /// State columns that do not fit (another aggregate's).
    pub fn merge(&mut self, state: &[ArrayRef]) -> datafusion_common::Result<()> {
        match self {
            Self::Native(accumulator) => accumulator.merge_batch(state),
            Self::Plugin(groups) => groups.merge_batch(state, &vec![0; state.first().map_or(0, |s| s.len())], 1),
        }
    }

    /// The current value, keeping the state.
    ///
    /// # Errors
    /// Accumulator failures.
    pub fn evaluate(&mut self) -> datafusion_common::Result<datafusion_common::ScalarValue> {
        match self {
            Self::Native(accumulator) => accumulator.evaluate(),
            Self::Plugin(groups) => groups.evaluate_one(),
        }
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        match self {
            Self::Native(accumulator) => accumulator.size(),
            Self::Plugin(groups) => GroupsAccumulator::size(groups),
        }
    }
}

/// Folds a batch into every plugin aggregate among `plugins` (aggregate index, states) and keeps
/// the new states of the groups none of them refused. Returns the refused groups, each with the
/// first reason.
///
/// # Errors
/// A failed plugin call (every plugin's states are left as they were).
pub fn fold_plugins(
    set: &AggregateSet,
    plugins: Vec<(usize, &mut WasmGroups)>,
    arguments: &Arguments,
    groups: &[usize],
    group_count: usize,
) -> Result<HashMap<usize, String>, RuntimeError> {
    let mut folds = Vec::with_capacity(plugins.len());
    let mut refused: HashMap<usize, String> = HashMap::new();
    for (index, states) in plugins {
        match states.fold(&arguments.values[index], groups, arguments.filters[index].as_ref(), group_count) {
            Ok(folded) => {
                for (group, reason) in folded.refused() {
                    refused.entry(group).or_insert_with(|| reason.to_string());
                }
                folds.push((states, folded));
            }
            Err(err) => {
                for (states, folded) in folds {
                    states.keep(folded, |_| true);
                }
                return Err(failed(set, index, err));
            }
        }
    }
    for (states, folded) in folds {
        states.keep(folded, |group| refused.contains_key(&group));
    }
    Ok(refused)
}

/// The rows (indices into `groups`) of refused groups, with the reason.
pub fn refused_rows(groups: &[usize], refused: &HashMap<usize, String>) -> Vec<(usize, String)> {
    if refused.is_empty() {
        return Vec::new();
    }
    groups.iter().enumerate().filter_map(|(row, group)| Some((row, refused.get(group)?.clone()))).collect()
}

/// `filter` narrowed to the rows whose group is not refused.
///
/// # Errors
/// Arrow failures.
pub fn without_refused(
    filter: Option<&BooleanArray>,
    groups: &[usize],
    refused: &HashMap<usize, String>,
) -> Result<Option<BooleanArray>, arrow::error::ArrowError> {
    if refused.is_empty() {
        return Ok(filter.cloned());
    }
    let kept: BooleanArray = groups.iter().map(|group| Some(!refused.contains_key(group))).collect();
    Ok(Some(match filter {
        None => kept,
        Some(filter) => arrow::compute::and(filter, &kept)?,
    }))
}

/// The arguments of every aggregate, evaluated over one batch (or a subset of its rows).
#[derive(Debug, Clone)]
pub struct Arguments {
    /// Per aggregate: argument arrays (then ORDER BY arrays).
    pub values: Vec<Vec<ArrayRef>>,
    /// Per aggregate: its FILTER mask.
    pub filters: Vec<Option<BooleanArray>>,
}

impl Arguments {
    /// The rows at `indices`, for one window.
    ///
    /// # Errors
    /// Arrow `take` failures.
    pub fn take(&self, indices: &arrow::array::UInt32Array) -> Result<Self, arrow::error::ArrowError> {
        let take = |array: &ArrayRef| arrow::compute::take(array, indices, None);
        Ok(Self {
            values: self.values.iter().map(|args| args.iter().map(take).collect()).collect::<Result<_, _>>()?,
            filters: self
                .filters
                .iter()
                .map(|filter| {
                    filter
                        .as_ref()
                        .map(|f| {
                            arrow::compute::take(f, indices, None)
                                .map(|a| arrow::array::AsArray::as_boolean(&a).clone())
                        })
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The aggregates of one step, in output order.
#[derive(Debug, Clone)]
pub struct AggregateSet {
    /// Compiled calls.
    pub calls: Vec<AggregateCall>,
}

impl AggregateSet {
    /// Compiles `name: sql` pairs.
    ///
    /// # Errors
    /// The first call that does not compile, with its output name.
    pub fn compile<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
        schema: &SchemaRef,
        functions: &FunctionCatalog,
    ) -> Result<Self, (String, ExprError)> {
        let mut calls = Vec::new();
        for (name, sql) in entries {
            let call = AggregateCall::compile(name, sql, schema, functions).map_err(|err| (name.to_string(), err))?;
            call.accumulator().map_err(|err| (name.to_string(), err))?;
            calls.push(call);
        }
        Ok(Self { calls })
    }

    /// What a checkpoint of these aggregates' states depends on: each output name, its SQL and
    /// a plugin's `state-version`.
    pub fn state_shape(&self) -> String {
        let calls: Vec<String> =
            self.calls.iter().map(|call| format!("{}: {}", call.field.name(), call.state_shape())).collect();
        format!("aggregates {{{}}}", calls.join(", "))
    }

    /// Whether any aggregate is a plugin's (its calls must run off the async workers).
    pub fn runs_plugins(&self) -> bool {
        self.calls.iter().any(|call| super::wasm_aggregate::is_wasm(call.function.fun()))
    }

    /// Output fields, in order.
    pub fn fields(&self) -> Vec<Field> {
        self.calls.iter().map(|call| call.field.clone()).collect()
    }

    /// Evaluates every argument and filter over `batch`.
    ///
    /// # Errors
    /// [`RuntimeError::Expression`] naming the aggregate.
    pub fn arguments(&self, batch: &RecordBatch) -> Result<Arguments, RuntimeError> {
        let rows = batch.num_rows();
        let mut values = Vec::with_capacity(self.calls.len());
        let mut filters = Vec::with_capacity(self.calls.len());
        for call in &self.calls {
            let failed = |err: datafusion_common::DataFusionError| RuntimeError::Expression {
                expression: call.sql.clone(),
                reason: err.to_string(),
            };
            let args = call
                .inputs
                .iter()
                .map(|input| input.evaluate(batch).and_then(|value| value.into_array(rows)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(failed)?;
            let filter = match &call.filter {
                None => None,
                Some(filter) => {
                    let mask = filter.evaluate(batch).and_then(|value| value.into_array(rows)).map_err(failed)?;
                    Some(arrow::array::AsArray::as_boolean(&mask).clone())
                }
            };
            values.push(args);
            filters.push(filter);
        }
        Ok(Arguments { values, filters })
    }

    /// Fresh accumulators, one per aggregate.
    pub fn accumulators(&self) -> Accumulators {
        Accumulators {
            states: self
                .calls
                .iter()
                .map(|call| match call.plugin_groups() {
                    Some(groups) => Slot::Plugin(groups),
                    None => Slot::Native(call.accumulator().expect("checked at planning")),
                })
                .collect(),
        }
    }
}

/// One aggregate's accumulator over all groups.
enum Slot {
    Native(Box<dyn GroupsAccumulator>),
    Plugin(WasmGroups),
}

impl Slot {
    fn groups(&mut self) -> &mut dyn GroupsAccumulator {
        match self {
            Self::Native(accumulator) => accumulator.as_mut(),
            Self::Plugin(groups) => groups,
        }
    }

    fn size(&self) -> usize {
        match self {
            Self::Native(accumulator) => accumulator.size(),
            Self::Plugin(groups) => GroupsAccumulator::size(groups),
        }
    }
}

/// The accumulators of one window (or one keyed aggregate), one per aggregate, indexed by group.
pub struct Accumulators {
    states: Vec<Slot>,
}

impl std::fmt::Debug for Accumulators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulators").field("aggregates", &self.states.len()).finish()
    }
}

/// An accumulator failure, naming the aggregate's SQL.
pub fn failed(set: &AggregateSet, index: usize, err: datafusion_common::DataFusionError) -> RuntimeError {
    RuntimeError::Expression { expression: set.calls[index].sql.clone(), reason: err.to_string() }
}

impl Accumulators {
    /// Folds rows into their groups: `groups[r]` is row r's group, `group_count` the number of
    /// groups so far. Plugin aggregates go first; the groups a state limit refuses keep their
    /// state in every aggregate, and their rows are returned (index into `groups`, reason).
    ///
    /// # Errors
    /// Accumulator failures (overflow, type errors), naming the aggregate.
    pub fn update(
        &mut self,
        set: &AggregateSet,
        arguments: &Arguments,
        groups: &[usize],
        group_count: usize,
    ) -> Result<Vec<(usize, String)>, RuntimeError> {
        let plugins = self
            .states
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Plugin(states) => Some((index, states)),
                Slot::Native(_) => None,
            })
            .collect();
        let refused = fold_plugins(set, plugins, arguments, groups, group_count)?;
        for (index, slot) in self.states.iter_mut().enumerate() {
            let Slot::Native(state) = slot else { continue };
            let filter = without_refused(arguments.filters[index].as_ref(), groups, &refused)?;
            state
                .update_batch(&arguments.values[index], groups, filter.as_ref(), group_count)
                .map_err(|err| failed(set, index, err))?;
        }
        Ok(refused_rows(groups, &refused))
    }

    /// Final values of every group, emptying the accumulators.
    ///
    /// # Errors
    /// Accumulator failures, naming the aggregate.
    pub fn evaluate(&mut self, set: &AggregateSet) -> Result<Vec<ArrayRef>, RuntimeError> {
        self.states
            .iter_mut()
            .enumerate()
            .map(|(index, state)| state.groups().evaluate(EmitTo::All).map_err(|err| failed(set, index, err)))
            .collect()
    }

    /// Final values of every group, keeping the state (for windows that may still change with
    /// late rows, and running aggregates): the partial state is taken out, merged into a copy
    /// that is evaluated, and merged back.
    ///
    /// # Errors
    /// Accumulator failures, naming the aggregate.
    pub fn evaluate_keeping(&mut self, set: &AggregateSet, group_count: usize) -> Result<Vec<ArrayRef>, RuntimeError> {
        let groups: Vec<usize> = (0..group_count).collect();
        let mut values = Vec::with_capacity(self.states.len());
        for (index, partial) in self.states(set, group_count)?.into_iter().enumerate() {
            let fail = |err| failed(set, index, err);
            let mut copy = set.calls[index].accumulator().expect("checked at planning");
            copy.merge_batch(&partial, &groups, group_count).map_err(fail)?;
            values.push(copy.evaluate(EmitTo::All).map_err(fail)?);
        }
        Ok(values)
    }

    /// Every aggregate's partial state of every group (DataFusion's `state` columns, one row per
    /// group), keeping the state in place: what a checkpoint stores.
    ///
    /// # Errors
    /// Accumulator failures, naming the aggregate.
    pub fn states(&mut self, set: &AggregateSet, group_count: usize) -> Result<Vec<Vec<ArrayRef>>, RuntimeError> {
        let groups: Vec<usize> = (0..group_count).collect();
        let mut states = Vec::with_capacity(self.states.len());
        for (index, state) in self.states.iter_mut().enumerate() {
            let fail = |err| failed(set, index, err);
            let state = state.groups();
            let partial = state.state(EmitTo::All).map_err(fail)?;
            state.merge_batch(&partial, &groups, group_count).map_err(fail)?;
            states.push(partial);
        }
        Ok(states)
    }

    /// Merges partial states (as [`Accumulators::states`] returned them, flattened: each
    /// aggregate's columns in turn) into groups: row r goes into group `groups[r]`.
    ///
    /// # Errors
    /// Columns that do not fit the aggregates (a checkpoint of another step), naming the
    /// aggregate.
    pub fn merge_states(
        &mut self,
        set: &AggregateSet,
        columns: &[ArrayRef],
        groups: &[usize],
        group_count: usize,
    ) -> Result<(), RuntimeError> {
        let mut at = 0;
        for (index, state) in self.states.iter_mut().enumerate() {
            let width = set.calls[index].state_width();
            let Some(partial) = columns.get(at..at + width) else {
                return Err(RuntimeError::Checkpoint(format!(
                    "the checkpoint has no state for `{}`",
                    set.calls[index].sql
                )));
            };
            at += width;
            state.groups().merge_batch(partial, groups, group_count).map_err(|err| failed(set, index, err))?;
        }
        Ok(())
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.states.iter().map(Slot::size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Int64Type, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("price", DataType::Int64, true),
        ]))
    }

    #[test]
    fn calls_compile_and_accumulate_per_group() {
        let schema = schema();
        let set = AggregateSet::compile(
            [
                ("n", "count(*)"),
                ("top", "max(price)"),
                ("distinct_prices", "count_distinct(price)"),
                ("big", "count(*) FILTER (WHERE price > 10)"),
                ("mean", "avg(price)"),
                ("first_price", "first(price)"),
            ],
            &schema,
            &FunctionCatalog::default(),
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2, 1])),
                Arc::new(Int64Array::from(vec![Some(5), Some(20), Some(7), Some(5)])),
            ],
        )
        .unwrap();
        let arguments = set.arguments(&batch).unwrap();
        let mut accumulators = set.accumulators();
        let refused = accumulators.update(&set, &arguments, &[0, 0, 1, 0], 2).unwrap();
        assert!(refused.is_empty());
        let kept = accumulators.evaluate_keeping(&set, 2).unwrap();
        let values = accumulators.evaluate(&set).unwrap();
        assert_eq!(kept.len(), values.len());
        for (kept, value) in kept.iter().zip(&values) {
            assert_eq!(kept.as_ref(), value.as_ref(), "evaluating without emptying gives the same values");
        }
        assert_eq!(values[0].as_primitive::<Int64Type>().values().to_vec(), vec![3, 1]);
        assert_eq!(values[1].as_primitive::<Int64Type>().values().to_vec(), vec![20, 7]);
        assert_eq!(values[2].as_primitive::<Int64Type>().values().to_vec(), vec![2, 1]);
        assert_eq!(values[3].as_primitive::<Int64Type>().values().to_vec(), vec![1, 0]);
        assert_eq!(values[4].as_primitive::<arrow::datatypes::Float64Type>().value(0), 10.0);
        assert_eq!(values[5].as_primitive::<Int64Type>().values().to_vec(), vec![5, 7]);
    }

    #[test]
    fn a_plain_expression_is_refused() {
        let err = AggregateCall::compile("x", "price + 1", &schema(), &FunctionCatalog::default()).unwrap_err();
        assert!(err.message.contains("not an aggregate"), "{err}");
        let err = AggregateCall::compile("x", "max(pricee)", &schema(), &FunctionCatalog::default()).unwrap_err();
        assert!(err.message.contains("pricee"), "{err}");
    }
}
