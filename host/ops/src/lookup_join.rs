//! `lookup_join`: enriches each row with the row of a dimension table that has its key
//! (Flink's `JOIN ... FOR SYSTEM_TIME AS OF proc_time`: the table as it is when the row passes).
//!
//! ```yaml
//! transforms:
//!   enriched:
//!     type: lookup_join
//!     inputs: [readings]
//!     table: devices                   # a table from `tables:`
//!     on: { device_id: id }            # stream column: table key column (every key column)
//!     kind: left                       # inner (default: unmatched rows are dropped) | left (NULLs)
//!     columns: [name, "site AS device_site"]   # default: every non-key column
//!     on_error: retry                  # fail (default) | retry | skip | dead-letter
//!     retry_on_miss: { attempts: 2, delay: 500ms }
//!     in_flight: 4                     # batches looked up concurrently, output stays in order
//! ```
//!
//! Per batch, the distinct keys are resolved once (through the table's cache, the misses in one
//! query per chunk), then the dimension columns are gathered with Arrow's `take`. Rows with a
//! NULL in a key column never match. When a lookup fails after the table's retries, `fail`
//! stops the job, `skip` drops the rows of the failed keys (counted), `dead-letter` sends them
//! to the dead-letter sink with the error, and `retry` keeps retrying without limit, so no row
//! is lost while the database is away (the batch and everything behind it waits).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use indexmap::IndexMap;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    AsyncOperator, AsyncOutput, BoxFuture, FailedRow, OperatorFactory, OperatorInstance, Partitioning, PlanContext,
    PlannedTransform, RuntimeError, TransformSpec,
};
use weir_engine::errors::ErrorPolicy;
use weir_lookup::DimensionTable;
use weir_lookup::metrics::LookupMetrics;
use weir_lookup::table::{LoaderGuard, Persistence, RetryOnMiss};

/// Which rows a lookup join keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinKind {
    /// Only rows that found a dimension row.
    #[default]
    Inner,
    /// Every row; dimension columns are NULL when there is no match.
    Left,
}

/// `retry_on_miss` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOnMissConfig {
    /// Extra lookups of a key that found nothing.
    pub attempts: usize,
    /// Wait before each (`500ms`).
    #[serde(with = "weir_config::yaml::duration_opt")]
    pub delay: Option<std::time::Duration>,
}

/// `lookup_join` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupJoinConfig {
    /// The dimension table.
    pub table: Spanned<String>,
    /// Stream column → table key column.
    pub on: Spanned<IndexMap<String, String>>,
    /// Inner or left.
    #[serde(default)]
    pub kind: JoinKind,
    /// Dimension columns to add, `name` or `name AS alias`.
    pub columns: Option<Vec<Spanned<String>>>,
    /// Look up misses again after a delay.
    pub retry_on_miss: Option<Spanned<RetryOnMissConfig>>,
    /// Batches in flight at once.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
}

fn default_in_flight() -> usize {
    4
}

impl TransformSpec for LookupJoinConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        let tables = ctx.resource::<weir_lookup::TableCatalog>();
        let table = tables.get(&self.table.value).ok_or_else(|| {
            let known = tables.names();
            let known =
                if known.is_empty() { "none (declare it under `tables:`)".to_owned() } else { known.join(", ") };
            SpecIssue::at(&self.table.referenced, format!("unknown table `{}`; tables: {known}", self.table.value))
        })?;
        let at_on = |message: String| SpecIssue::at(&self.on.referenced, message);
        let mut stream_keys = vec![None; table.key().len()];
        for (stream_column, table_column) in &self.on.value {
            let stream_index = input.index_of(stream_column).map_err(|_| {
                at_on(format!("`on`: the input has no column `{stream_column}`; columns: {}", column_names(input)))
            })?;
            let position = table.key().iter().position(|key| key == table_column).ok_or_else(|| {
                at_on(format!(
                    "`on`: `{table_column}` is not a key column of table `{}` (key: {})",
                    table.name(),
                    table.key().join(", ")
                ))
            })?;
            let (from, to) = (input.field(stream_index).data_type(), &table.keys().types()[position]);
            if !comparable(from, to) {
                return Err(at_on(format!(
                    "`on`: `{stream_column}` is {from} but key `{table_column}` is {to}; cast it first with a select step"
                )));
            }
            stream_keys[position] = Some(stream_index);
        }
        let stream_keys = stream_keys
            .into_iter()
            .zip(table.key())
            .map(|(index, key)| {
                index.ok_or_else(|| {
                    at_on(format!("`on`: the key column `{key}` is not joined; lookups need the whole key"))
                })
            })
            .collect::<Result<Vec<usize>, _>>()?;

        let selected = self.selected_columns(table)?;
        let mut fields: Vec<Field> = input.fields().iter().map(|field| field.as_ref().clone()).collect();
        let mut dimension_columns = Vec::with_capacity(selected.len());
        for (index, name, at) in selected {
            if fields.iter().any(|field| field.name() == &name) {
                return Err(SpecIssue::at(
                    &at,
                    format!("`columns`: the input already has a column `{name}`; rename it with `AS`"),
                ));
            }
            fields.push(Field::new(name, table.schema().field(index).data_type().clone(), true));
            dimension_columns.push(index);
        }
        let retry_on_miss = self
            .retry_on_miss
            .as_ref()
            .map(|retry| RetryOnMiss { attempts: retry.value.attempts, delay: retry.value.delay.unwrap_or_default() });
        if self.in_flight == 0 {
            return Err(SpecIssue::new("`in_flight` must be at least 1"));
        }
        let schema: SchemaRef = Arc::new(weir_engine::event_time::carry(input, Schema::new(fields)));
        let plan = JoinPlan {
            table: Arc::clone(table),
            stream_keys,
            dimension_columns,
            schema: Arc::clone(&schema),
            kind: self.kind,
            policy: ctx.on_error,
            retry_on_miss,
            in_flight: self.in_flight,
        };
        Ok(PlannedTransform {
            schema,
            factory: Arc::new(LookupJoinFactory(Arc::new(plan))),
            partitioning: Partitioning::Any,
        })
    }
}

impl LookupJoinConfig {
    /// `(table column index, output name, where it was written)` for every added column.
    fn selected_columns(
        &self,
        table: &DimensionTable,
    ) -> Result<Vec<(usize, String, weir_config::yaml::Location)>, SpecIssue> {
        let schema = table.schema();
        let Some(columns) = &self.columns else {
            return Ok(schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, field)| !table.key().contains(field.name()))
                .map(|(index, field)| (index, field.name().clone(), self.table.referenced))
                .collect());
        };
        columns
            .iter()
            .map(|item| {
                let text = item.value.trim();
                let (column, alias) = match split_alias(text) {
                    Some((column, alias)) => (column, alias),
                    None => (text, text),
                };
                let index = schema.index_of(column).map_err(|_| {
                    SpecIssue::at(
                        &item.referenced,
                        format!(
                            "`columns`: table `{}` has no column `{column}`; columns: {}",
                            table.name(),
                            column_names(schema)
                        ),
                    )
                })?;
                Ok((index, alias.to_owned(), item.referenced))
            })
            .collect()
    }
}

/// `name AS alias` (any case) into its parts.
fn split_alias(text: &str) -> Option<(&str, &str)> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find(" as ")?;
    Some((text[..at].trim(), text[at + 4..].trim()))
}

fn column_names(schema: &Schema) -> String {
    schema.fields().iter().map(|field| field.name().as_str()).collect::<Vec<_>>().join(", ")
}

/// Whether a stream column can be looked up in a key column: the same type, two integer types
/// (cast strictly), or two string types.
fn comparable(from: &DataType, to: &DataType) -> bool {
    from == to
        || (from.is_integer() && to.is_integer())
        || (matches!(from, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            && matches!(to, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
}

/// Everything a lookup join subtask needs; shared by its subtasks.
#[derive(Debug)]
struct JoinPlan {
    table: Arc<DimensionTable>,
    /// Stream columns in table key order.
    stream_keys: Vec<usize>,
    /// Table columns added to the output.
    dimension_columns: Vec<usize>,
    schema: SchemaRef,
    kind: JoinKind,
    policy: ErrorPolicy,
    retry_on_miss: Option<RetryOnMiss>,
    in_flight: usize,
}

#[derive(Debug)]
struct LookupJoinFactory(Arc<JoinPlan>);

impl OperatorFactory for LookupJoinFactory {
    fn create(&self) -> OperatorInstance {
        let loader = self.0.table.attach();
        OperatorInstance::Async(Box::new(LookupJoin { plan: Arc::clone(&self.0), _loader: loader, rows_seen: 0 }))
    }
}

struct LookupJoin {
    plan: Arc<JoinPlan>,
    /// Keeps a full cache's loader running while this subtask runs.
    _loader: Option<Arc<LoaderGuard>>,
    rows_seen: u64,
}

impl AsyncOperator for LookupJoin {
    fn capacity(&self) -> usize {
        self.plan.in_flight
    }

    fn start(
        &mut self,
        batch: RecordBatch,
        stop: &CancellationToken,
    ) -> BoxFuture<'static, Result<AsyncOutput, RuntimeError>> {
        let first_row = self.rows_seen;
        self.rows_seen += batch.num_rows() as u64;
        let plan = Arc::clone(&self.plan);
        let stop = stop.clone();
        Box::pin(async move { plan.join(batch, first_row, &stop).await })
    }
}

/// A row whose key has a NULL.
const NO_KEY: u32 = u32::MAX;

impl JoinPlan {
    async fn join(
        &self,
        batch: RecordBatch,
        first_row: u64,
        stop: &CancellationToken,
    ) -> Result<AsyncOutput, RuntimeError> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(AsyncOutput::default());
        }
        let key_columns: Vec<ArrayRef> = self.stream_keys.iter().map(|&i| Arc::clone(batch.column(i))).collect();
        let keys = self.table.keys().encode(&key_columns)?;
        // Distinct keys of the batch: each is resolved once however many rows share it.
        let mut slots: hashbrown::HashMap<&[u8], u32> = hashbrown::HashMap::with_capacity(rows.min(4096));
        let mut distinct: Vec<&[u8]> = Vec::new();
        let mut row_slots: Vec<u32> = Vec::with_capacity(rows);
        for row in 0..rows {
            if keys.valid.as_ref().is_some_and(|valid| valid.is_null(row)) {
                row_slots.push(NO_KEY);
                continue;
            }
            let key = keys.rows.row(row).data();
            let slot = *slots.entry(key).or_insert_with(|| {
                distinct.push(key);
                (distinct.len() - 1) as u32
            });
            row_slots.push(slot);
        }
        let persistence = if self.policy == ErrorPolicy::Retry { Persistence::Unbounded } else { Persistence::Bounded };
        let resolved = self
            .table
            .resolve(&distinct, persistence, self.retry_on_miss, stop)
            .await
            .map_err(|err| self.table.error(format_args!("dimension table `{}`: {err}", self.table.name())))?;

        let keep_unmatched = self.kind == JoinKind::Left;
        let mut indices: Vec<Option<u32>> = Vec::with_capacity(rows);
        let mut keep: Vec<bool> = Vec::with_capacity(rows);
        let mut failed = Vec::new();
        let (mut joined, mut unmatched) = (0u64, 0u64);
        let no_key: Result<Option<u32>, Arc<str>> = Ok(None);
        for (row, &slot) in row_slots.iter().enumerate() {
            let found = if slot == NO_KEY { &no_key } else { &resolved.found[slot as usize] };
            match found {
                Ok(Some(index)) => {
                    joined += 1;
                    indices.push(Some(*index));
                    keep.push(true);
                }
                Ok(None) => {
                    unmatched += 1;
                    if keep_unmatched {
                        indices.push(None);
                    }
                    keep.push(keep_unmatched);
                }
                Err(reason) => {
                    if self.policy == ErrorPolicy::Fail {
                        return Err(self.table.error(reason));
                    }
                    keep.push(false);
                    failed.push(FailedRow {
                        row,
                        position: format!("input row {}", first_row + row as u64),
                        reason: reason.to_string(),
                    });
                }
            }
        }
        LookupMetrics::add(&self.table.metrics.rows_joined, joined);
        LookupMetrics::add(&self.table.metrics.rows_unmatched, unmatched);

        let input = if indices.len() == rows {
            batch.clone()
        } else {
            arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))?
        };
        let indices = UInt32Array::from(indices);
        let mut columns: Vec<ArrayRef> = input.columns().to_vec();
        for &column in &self.dimension_columns {
            columns.push(arrow::compute::take(resolved.rows.column(column), &indices, None)?);
        }
        let output = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let batches = if output.num_rows() > 0 { vec![output] } else { Vec::new() };
        let input = (!failed.is_empty()).then_some(batch);
        Ok(AsyncOutput { batches, input, failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_key_types() {
        assert_eq!(split_alias("site AS device_site"), Some(("site", "device_site")));
        assert_eq!(split_alias("name"), None);
        assert!(comparable(&DataType::Int32, &DataType::Int64));
        assert!(!comparable(&DataType::Utf8, &DataType::Int64));
    }
}
