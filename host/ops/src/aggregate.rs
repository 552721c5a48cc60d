//! `aggregate`: keyed aggregation without windows, emitting running values.
//!
//! ```yaml
//! totals: { type: aggregate, inputs: [bids], group_by: [auction], aggregates: { bids: "count(*)", volume: "sum(price)" } }
//! ```
//! After each input batch it emits one row per key the batch touched, with that key's values so
//! far (`group_by` columns, then the aggregates): an update stream, the input of an upsert sink
//! keyed by the `group_by` columns (PostgreSQL/MySQL `upsert`, Redis), which then holds the
//! running totals. State is one accumulator per key and aggregate, kept for the life of the job
//! (there is no window to close); its size is reported as `state_bytes`.
//!
//! Each key keeps DataFusion's row-level accumulators, so its current value can be read without
//! emptying it; a batch is split by key and each touched key is updated once with its rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion_common::ScalarValue;
use serde::Deserialize;

use super::aggregate_calls::{AggregateSet, RowAccumulator, failed, fold_plugins};
use super::groups::{GroupTable, KeyEncoder};
use super::snapshot;
use super::window::{compile_aggregates, key_columns};
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, SpannedMap};
use weir_engine::EventTime;
use weir_engine::checkpoint::KeyedState;
use weir_engine::component::{
    Emitter, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RefusedRow, RuntimeError,
    StatefulOperator, TransformSpec,
};
use weir_engine::delivery::Delivery;
use weir_engine::errors::RecordErrorHandler;

/// `aggregate` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    // Rows a plugin aggregate's state limit refuses follow the step's error policy.
    /// Key columns.
    #[serde(default)]
    pub group_by: Vec<Spanned<String>>,
    /// Output column to aggregate call.
    pub aggregates: Spanned<SpannedMap<String>>,
}

#[derive(Debug)]
struct AggregatePlan {
    keys: KeyEncoder,
    aggregates: AggregateSet,
    schema: SchemaRef,
}

impl TransformSpec for AggregateConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        let columns = key_columns(input, &self.group_by)?;
        let keys = KeyEncoder::new(input, columns.clone()).map_err(|err| SpecIssue::new(err.to_string()))?;
        let aggregates = compile_aggregates(&self.aggregates, input, ctx)?;
        let mut fields = keys.fields.clone();
        for field in aggregates.fields() {
            if fields.iter().any(|f| f.name() == field.name()) {
                return Err(SpecIssue::new(format!(
                    "`aggregates`: the output column `{}` clashes with a `group_by` column",
                    field.name()
                )));
            }
            fields.push(field);
        }
        let schema = Arc::new(Schema::new(fields));
        let plan = Arc::new(AggregatePlan { keys, aggregates, schema: Arc::clone(&schema) });
        let partitioning = if columns.is_empty() { Partitioning::Single } else { Partitioning::Hash(columns) };
        Ok(PlannedTransform { schema, factory: Arc::new(AggregateFactory(plan)), partitioning })
    }
}

#[derive(Debug)]
struct AggregateFactory(Arc<AggregatePlan>);

impl OperatorFactory for AggregateFactory {
    fn create(&self) -> OperatorInstance {
        let groups = self.0.keys.table();
        OperatorInstance::Stateful(Box::new(RunningAggregate {
            plan: Arc::clone(&self.0),
            groups,
            accumulators: Vec::new(),
            scratch: Vec::new(),
        }))
    }
}

struct RunningAggregate {
    plan: Arc<AggregatePlan>,
    groups: GroupTable,
    /// Per group, one accumulator per aggregate.
    accumulators: Vec<Vec<RowAccumulator>>,
    scratch: Vec<usize>,
}

impl RunningAggregate {
    /// Fresh accumulators for the groups that have none yet.
    fn add_accumulators(&mut self) -> Result<(), RuntimeError> {
        while self.accumulators.len() < self.groups.len() {
            let fresh = self
                .plan
                .aggregates
                .calls
                .iter()
                .map(|call| {
                    call.row_accumulator()
                        .map_err(|err| RuntimeError::Expression { expression: call.sql.clone(), reason: err.message })
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.accumulators.push(fresh);
        }
        Ok(())
    }

    fn state_shape(&self) -> String {
        format!("aggregate, {}, {}", self.plan.keys.state_shape(), self.plan.aggregates.state_shape())
    }
}

impl StatefulOperator for RunningAggregate {
    fn process(
        &mut self,
        batch: RecordBatch,
        delivery: Delivery,
        out: &mut Emitter,
        _errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let rows = batch.num_rows();
        let keys = plan.keys.encode(&batch)?;
        let arguments = plan.aggregates.arguments(&batch)?;
        let mut groups = std::mem::take(&mut self.scratch);
        self.groups.intern(keys.as_ref(), None, rows, &mut groups);
        self.add_accumulators()?;
        // Rows by group, groups in order of first appearance.
        let mut touched: Vec<usize> = Vec::new();
        let mut rows_of: std::collections::HashMap<usize, Vec<u32>> = std::collections::HashMap::new();
        for (row, &group) in groups.iter().enumerate() {
            rows_of
                .entry(group)
                .or_insert_with(|| {
                    touched.push(group);
                    Vec::new()
                })
                .push(row as u32);
        }
        self.scratch = groups;
        // The groups whose rows were folded in (a refused group's value did not change).
        let mut updated: Vec<usize> = Vec::with_capacity(touched.len());
        for &group in &touched {
            let rows = std::mem::take(rows_of.get_mut(&group).expect("listed"));
            let taken = arguments.take(&UInt32Array::from(rows.clone()))?;
            // Plugin aggregates first: a state limit refuses the group's rows in every aggregate.
            let plugins = self.accumulators[group]
                .iter_mut()
                .enumerate()
                .filter_map(|(index, accumulator)| match accumulator {
                    RowAccumulator::Plugin(states) => Some((index, states)),
                    RowAccumulator::Native(_) => None,
                })
                .collect();
            let in_group = vec![0; rows.len()];
            let refused = fold_plugins(&plan.aggregates, plugins, &taken, &in_group, 1)?;
            if let Some(reason) = refused.get(&0) {
                for &row in &rows {
                    out.refused.push(RefusedRow {
                        position: format!("input row {row}"),
                        raw: weir_engine::errors::row_as_json(&batch, row as usize),
                        reason: reason.clone(),
                    });
                }
                continue;
            }
            for (index, accumulator) in self.accumulators[group].iter_mut().enumerate() {
                let RowAccumulator::Native(accumulator) = accumulator else { continue };
                let mut values = taken.values[index].clone();
                if let Some(filter) = &taken.filters[index] {
                    values = values.iter().map(|v| arrow::compute::filter(v, filter)).collect::<Result<_, _>>()?;
                }
                accumulator.update_batch(&values).map_err(|err| failed(&plan.aggregates, index, err))?;
            }
            updated.push(group);
        }
        let touched = updated;
        if touched.is_empty() {
            delivery.settle();
            return Ok(());
        }
        // The touched keys' current values.
        let keys = plan.keys.decode_groups(&self.groups, &touched)?;
        let mut columns: Vec<ArrayRef> = keys;
        for index in 0..plan.aggregates.calls.len() {
            let values = touched
                .iter()
                .map(|&group| self.accumulators[group][index].evaluate())
                .collect::<Result<Vec<ScalarValue>, _>>()
                .map_err(|err| failed(&plan.aggregates, index, err))?;
            let array = ScalarValue::iter_to_array(values).map_err(|err| failed(&plan.aggregates, index, err))?;
            let wanted = plan.aggregates.calls[index].field.data_type();
            let array = if array.data_type() == wanted { array } else { arrow::compute::cast(&array, wanted)? };
            columns.push(array);
        }
        out.emit(RecordBatch::try_new(Arc::clone(&plan.schema), columns)?, delivery);
        Ok(())
    }

    fn on_watermark(&mut self, _watermark: EventTime, _out: &mut Emitter) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn finish(&mut self, _out: &mut Emitter) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn state_groups(&self) -> usize {
        self.groups.len()
    }

    fn state_bytes(&self) -> usize {
        let accumulators: usize = self.accumulators.iter().flatten().map(|a| a.size()).sum();
        accumulators + self.groups.size()
    }

    fn runs_plugins(&self) -> bool {
        self.plan.aggregates.runs_plugins()
    }

    fn checkpointable(&self) -> bool {
        true
    }

    /// One row per key: the key, then each aggregate's partial state (`state <aggregate>`).
    fn snapshot(&mut self) -> Result<KeyedState, RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let count = self.groups.len();
        let mut columns = snapshot::key_columns(plan.keys.decode(&self.groups)?);
        if count > 0 {
            for (index, call) in plan.aggregates.calls.iter().enumerate() {
                let mut per_group = Vec::with_capacity(count);
                for group in &mut self.accumulators {
                    per_group.push(group[index].state(call).map_err(|err| failed(&plan.aggregates, index, err))?);
                }
                for column in 0..per_group[0].len() {
                    let pieces: Vec<&dyn Array> = per_group.iter().map(|state| state[column].as_ref()).collect();
                    columns.push((format!("state {index}"), arrow::compute::concat(&pieces)?));
                }
            }
        }
        let rows = if count == 0 { snapshot::concat(&[])? } else { snapshot::rows(columns)? };
        snapshot::write(&self.state_shape(), EventTime::MIN, &rows, &snapshot::leading(plan.keys.columns.len()))
    }

    fn restore(&mut self, state: KeyedState) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let restored = snapshot::read(&self.state_shape(), state)?;
        let key_count = plan.keys.columns.len();
        for batch in restored.batches.iter().filter(|batch| batch.num_rows() > 0) {
            let mut states: Vec<Vec<&ArrayRef>> = vec![Vec::new(); plan.aggregates.calls.len()];
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()).skip(key_count) {
                let index = field.name().strip_prefix("state ").and_then(|index| index.parse::<usize>().ok());
                match index.and_then(|index| states.get_mut(index)) {
                    Some(state) => state.push(column),
                    None => {
                        return Err(RuntimeError::Checkpoint(format!(
                            "unexpected aggregate state column `{}`",
                            field.name()
                        )));
                    }
                }
            }
            let keys = plan.keys.encode_columns(&batch.columns()[..key_count])?;
            let mut groups = std::mem::take(&mut self.scratch);
            self.groups.intern(keys.as_ref(), None, batch.num_rows(), &mut groups);
            self.add_accumulators()?;
            for (row, &group) in groups.iter().enumerate() {
                for (index, state) in states.iter().enumerate() {
                    let state: Vec<ArrayRef> = state.iter().map(|column| column.slice(row, 1)).collect();
                    self.accumulators[group][index]
                        .merge(&state)
                        .map_err(|err| failed(&plan.aggregates, index, err))?;
                }
            }
            self.scratch = groups;
        }
        Ok(())
    }
}
