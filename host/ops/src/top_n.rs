//! `top_n`: the first `limit` rows of each window by an ordering (Flink's Window Top-N).
//!
//! ```yaml
//! # Nexmark q7: the highest bids of every 10-second window (ties included)
//! highest: { type: top_n, inputs: [bids], tumble: 10s, order_by: ["price DESC"], limit: 1 }
//! # Nexmark q5: per window of a `window` step, the auctions with the most bids
//! hot: { type: top_n, inputs: [counts], order_by: ["num DESC"], limit: 1 }
//! ```
//! Windows come from the step's own `tumble` / `hop` / `cumulate` over the input's event time
//! (output: `window_start`, `window_end`, then the input columns), or, when the input is a
//! `window` step's output, from its `window_start` / `window_end` columns (output: the input
//! columns). `partition_by` ranks within groups of a window. Ranking is by rank, not row number:
//! rows that tie with the last one kept are kept too (`with_ties: false` is not offered; the
//! ranking of equal rows would depend on arrival order).
//!
//! State per window and partition is only the current top rows: each batch is merged with them
//! and cut back at once, so a window of a million bids holds one row for `limit: 1`. A window
//! fires when the watermark reaches `end - 1`; rows of a window already fired go to
//! `<name>.late` (or are counted).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::SortOptions;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use serde::Deserialize;

use super::snapshot;
use super::window::assign::{Bounds, WindowKind};
use super::window::{CumulateConfig, HopConfig, SessionConfig, TimeSource, WINDOW_KEY, key_columns, row_times};
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, duration_opt};
use weir_engine::EventTime;
use weir_engine::checkpoint::KeyedState;
use weir_engine::component::{
    Emitter, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError,
    StatefulOperator, TransformSpec,
};
use weir_engine::delivery::Delivery;
use weir_engine::errors::RecordErrorHandler;

/// `top_n` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopNConfig {
    /// Tumbling windows over the input's event time.
    #[serde(default, with = "duration_opt")]
    pub tumble: Option<std::time::Duration>,
    /// Hopping windows.
    pub hop: Option<HopConfig>,
    /// Cumulating windows.
    pub cumulate: Option<CumulateConfig>,
    /// Not offered (sessions are per key); listed to refuse it clearly.
    pub session: Option<SessionConfig>,
    /// The time column (default: the input's event-time column).
    pub time_column: Option<Spanned<String>>,
    /// `column [ASC|DESC]`, most significant first.
    pub order_by: Spanned<Vec<Spanned<String>>>,
    /// Rows kept per window and partition (more on ties).
    pub limit: Spanned<usize>,
    /// Rank within groups of a window.
    #[serde(default)]
    pub partition_by: Vec<Spanned<String>>,
    /// Withdrawn, as for `window`; `true` is refused with the reason.
    pub at_least_once: Option<Spanned<bool>>,
}

/// Where each row's window comes from.
#[derive(Debug, Clone)]
enum Windows {
    /// Assigned here from the time column.
    Assigned { kind: WindowKind, time: TimeSource, time_type: DataType },
    /// The input is a window's output: these columns hold each row's bounds.
    Columns { start: usize, end: usize },
}

#[derive(Debug)]
struct TopNPlan {
    windows: Windows,
    order: Vec<(usize, SortOptions)>,
    partition: Vec<usize>,
    limit: usize,
    at_least_once: bool,
    input: SchemaRef,
    schema: SchemaRef,
}

impl TransformSpec for TopNConfig {
    fn plan(&self, input: &SchemaRef, _ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        super::window::refuse_at_least_once(self.at_least_once.as_ref())?;
        if self.session.is_some() {
            return Err(SpecIssue::new("`top_n` takes `tumble`, `hop` or `cumulate` windows, not sessions"));
        }
        if self.limit.value == 0 {
            return Err(SpecIssue::at(&self.limit.referenced, "`limit` must be at least 1"));
        }
        let own = self.tumble.is_some() || self.hop.is_some() || self.cumulate.is_some();
        let windowed_input = input.metadata().get(WINDOW_KEY).is_some();
        let (windows, schema, mut hash) = if own {
            let kind = super::window::window_kind(self.tumble, self.hop.as_ref(), None, self.cumulate.as_ref())?;
            let (time, time_type) = super::window::time_source(input, self.time_column.as_ref(), false)?;
            let mut fields = vec![
                Field::new("window_start", time_type.clone(), false),
                Field::new("window_end", time_type.clone(), false),
            ];
            for field in input.fields() {
                if field.name() == "window_start" || field.name() == "window_end" {
                    return Err(SpecIssue::new(format!(
                        "the input already has a `{}` column; rename it before windowing again",
                        field.name()
                    )));
                }
                fields.push(field.as_ref().clone());
            }
            let metadata = HashMap::from([(WINDOW_KEY.to_string(), "window_start,window_end".to_string())]);
            let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
            (Windows::Assigned { kind, time, time_type }, schema, Vec::new())
        } else if windowed_input {
            let start = input.index_of("window_start").map_err(|err| SpecIssue::new(err.to_string()))?;
            let end = input.index_of("window_end").map_err(|err| SpecIssue::new(err.to_string()))?;
            // Every row of a window must meet in one subtask.
            (Windows::Columns { start, end }, Arc::clone(input), vec![start, end])
        } else {
            return Err(SpecIssue::new(
                "say which windows to rank in (`tumble`, `hop` or `cumulate`), or read a `window` step's output",
            ));
        };
        if self.order_by.value.is_empty() {
            return Err(SpecIssue::at(&self.order_by.referenced, "`order_by` is empty"));
        }
        let mut order = Vec::new();
        for item in &self.order_by.value {
            let mut words = item.value.split_whitespace();
            let name = words.next().unwrap_or_default();
            let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
                None | Some("ASC") => false,
                Some("DESC") => true,
                Some(other) => {
                    return Err(SpecIssue::at(
                        &item.referenced,
                        format!("`order_by`: expected ASC or DESC, not `{other}`"),
                    ));
                }
            };
            if words.next().is_some() {
                return Err(SpecIssue::at(&item.referenced, "`order_by`: each item is `column [ASC|DESC]`"));
            }
            let index = input.index_of(name).map_err(|_| {
                let known: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
                SpecIssue::at(
                    &item.referenced,
                    format!("`order_by`: column `{name}` is not in the input; columns: {}", known.join(", ")),
                )
            })?;
            order.push((index, SortOptions { descending, nulls_first: false }));
        }
        let partition = key_columns(input, &self.partition_by)?;
        hash.extend(partition.iter().copied());
        let plan = Arc::new(TopNPlan {
            windows,
            order,
            partition,
            limit: self.limit.value,
            at_least_once: false,
            input: Arc::clone(input),
            schema: Arc::clone(&schema),
        });
        let partitioning = if hash.is_empty() { Partitioning::Single } else { Partitioning::Hash(hash) };
        Ok(PlannedTransform { schema, factory: Arc::new(TopNFactory(plan)), partitioning })
    }
}

#[derive(Debug)]
struct TopNFactory(Arc<TopNPlan>);

impl OperatorFactory for TopNFactory {
    fn create(&self) -> OperatorInstance {
        let plan = Arc::clone(&self.0);
        let order = RowConverter::new(
            plan.order
                .iter()
                .map(|&(c, options)| SortField::new_with_options(plan.input.field(c).data_type().clone(), options))
                .collect(),
        )
        .expect("orderable columns");
        let partition = RowConverter::new(
            plan.partition.iter().map(|&c| SortField::new(plan.input.field(c).data_type().clone())).collect(),
        )
        .expect("key columns were checked");
        OperatorInstance::Stateful(Box::new(TopN {
            plan,
            order,
            partition,
            windows: BTreeMap::new(),
            watermark: EventTime::MIN,
        }))
    }
}

/// The top rows of one window and partition, with the deliveries of the batches they came from.
#[derive(Debug)]
struct Candidates {
    rows: RecordBatch,
    deliveries: Vec<Delivery>,
}

/// An open window: (end, start).
type WindowKey = (i64, i64);

/// One window's candidates by partition key (row-format bytes; empty without `partition_by`).
type Partitions = HashMap<Box<[u8]>, Candidates>;

/// Row times of one batch, by where the windows come from.
enum RowTimes {
    Assigned(WindowKind, arrow::array::Int64Array),
    Columns(arrow::array::Int64Array, arrow::array::Int64Array),
}

struct TopN {
    plan: Arc<TopNPlan>,
    order: RowConverter,
    partition: RowConverter,
    /// Open windows by (end, start), then partition key.
    windows: BTreeMap<(i64, i64), Partitions>,
    watermark: EventTime,
}

impl TopN {
    /// Columns of the kept rows (the output schema) that the input is partitioned by.
    fn key_columns(&self) -> Vec<usize> {
        match &self.plan.windows {
            Windows::Assigned { .. } => self.plan.partition.iter().map(|&c| c + 2).collect(),
            Windows::Columns { start, end } => {
                [*start, *end].into_iter().chain(self.plan.partition.iter().copied()).collect()
            }
        }
    }

    /// What a checkpoint of this step depends on: its output rows, order, partition and limit.
    fn state_shape(&self) -> String {
        let fields: Vec<String> =
            self.plan.schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
        let windows = match &self.plan.windows {
            Windows::Assigned { kind, .. } => format!("{kind:?}"),
            Windows::Columns { .. } => "input windows".to_owned(),
        };
        format!(
            "top_n {windows}, rows [{}], order {:?}, partition {:?}, limit {}",
            fields.join(", "),
            self.plan.order,
            self.plan.partition,
            self.plan.limit
        )
    }

    /// Emits the windows complete at the watermark (all when `all`).
    fn fire(&mut self, all: bool, out: &mut Emitter) -> Result<(), RuntimeError> {
        let watermark = if all { EventTime::MAX } else { self.watermark };
        while let Some(entry) = self.windows.first_entry() {
            if entry.key().0 - 1 > watermark {
                break;
            }
            for (_, candidates) in entry.remove() {
                out.emit(candidates.rows, Delivery::merge(candidates.deliveries));
            }
        }
        Ok(())
    }
}

impl StatefulOperator for TopN {
    fn process(
        &mut self,
        batch: RecordBatch,
        delivery: Delivery,
        out: &mut Emitter,
        errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let rows = batch.num_rows();
        let mut placed: BTreeMap<Bounds, Vec<u32>> = BTreeMap::new();
        let mut late = Vec::new();
        let mut bounds = Vec::new();
        // Each row's window(s): assigned from its time, or read from the input's bound columns.
        let times = match &plan.windows {
            Windows::Assigned { kind, time, .. } => RowTimes::Assigned(*kind, row_times(*time, &batch)?),
            Windows::Columns { start, end } => RowTimes::Columns(
                weir_engine::event_time::millis(batch.column(*start))?,
                weir_engine::event_time::millis(batch.column(*end))?,
            ),
        };
        for row in 0..rows {
            bounds.clear();
            match &times {
                RowTimes::Assigned(_, times) if times.is_null(row) => {
                    super::window::reject_timeless(&batch, row, errors)?;
                    continue;
                }
                RowTimes::Assigned(kind, times) => kind.windows_of(times.value(row), &mut bounds),
                RowTimes::Columns(starts, ends) => {
                    bounds.push(Bounds { start: starts.value(row), end: ends.value(row) })
                }
            }
            let mut any = false;
            for &window in &bounds {
                if window.end - 1 > self.watermark {
                    placed.entry(window).or_default().push(row as u32);
                    any = true;
                }
            }
            if !any {
                late.push(row as u32);
            }
        }
        let partition_columns: Vec<ArrayRef> = plan.partition.iter().map(|&c| Arc::clone(batch.column(c))).collect();
        let partition_keys =
            (!partition_columns.is_empty()).then(|| self.partition.convert_columns(&partition_columns)).transpose()?;
        for (window, selection) in placed {
            // Split the window's rows by partition key.
            let mut parts: HashMap<Box<[u8]>, Vec<u32>> = HashMap::new();
            match &partition_keys {
                None => {
                    parts.insert(Box::from([]), selection);
                }
                Some(keys) => {
                    for row in selection {
                        parts.entry(Box::from(keys.row(row as usize).as_ref())).or_default().push(row);
                    }
                }
            }
            for (key, selection) in parts {
                let mut taken = arrow::compute::take_record_batch(&batch, &UInt32Array::from(selection))?;
                if let Windows::Assigned { time_type, .. } = &plan.windows {
                    taken = with_bounds(&plan.schema, time_type, window, taken)?;
                }
                let open = self.windows.entry((window.end, window.start)).or_default();
                let candidates = open.entry(key).or_insert_with(|| Candidates {
                    rows: RecordBatch::new_empty(Arc::clone(&plan.schema)),
                    deliveries: Vec::new(),
                });
                let merged = arrow::compute::concat_batches(&plan.schema, [&candidates.rows, &taken])?;
                candidates.rows = cut(&plan, &self.order, merged)?;
                if plan.at_least_once && delivery.is_tracked() {
                    candidates.deliveries.push(delivery.fork());
                }
            }
        }
        if !late.is_empty() {
            let late = arrow::compute::take_record_batch(&batch, &UInt32Array::from(late))?;
            out.late.push((late, delivery.fork()));
        }
        delivery.settle();
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<(), RuntimeError> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.fire(false, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), RuntimeError> {
        self.fire(true, out)
    }

    fn state_groups(&self) -> usize {
        self.windows.values().map(HashMap::len).sum()
    }

    fn state_bytes(&self) -> usize {
        self.windows.values().flat_map(HashMap::values).map(|c| c.rows.get_array_memory_size()).sum()
    }

    fn checkpointable(&self) -> bool {
        true
    }

    /// The kept rows of every open window and partition, as output rows.
    fn snapshot(&mut self) -> Result<KeyedState, RuntimeError> {
        let kept: Vec<&RecordBatch> = self.windows.values().flat_map(HashMap::values).map(|c| &c.rows).collect();
        let rows = arrow::compute::concat_batches(&self.plan.schema, kept)?;
        snapshot::write(&self.state_shape(), self.watermark, &rows, &self.key_columns())
    }

    fn restore(&mut self, state: KeyedState) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let restored = snapshot::read(&self.state_shape(), state)?;
        if let Some(watermark) = restored.watermark {
            self.watermark = self.watermark.max(watermark);
        }
        let (start, end, offset) = match &plan.windows {
            Windows::Assigned { .. } => (0, 1, 2),
            Windows::Columns { start, end } => (*start, *end, 0),
        };
        for batch in restored.batches.iter().filter(|batch| batch.num_rows() > 0) {
            let rows = RecordBatch::try_new(Arc::clone(&plan.schema), batch.columns().to_vec())?;
            let starts = weir_engine::event_time::millis(rows.column(start))?;
            let ends = weir_engine::event_time::millis(rows.column(end))?;
            let partition: Vec<ArrayRef> =
                plan.partition.iter().map(|&c| Arc::clone(rows.column(c + offset))).collect();
            let keys = (!partition.is_empty()).then(|| self.partition.convert_columns(&partition)).transpose()?;
            let mut parts: BTreeMap<(WindowKey, Box<[u8]>), Vec<u32>> = BTreeMap::new();
            for row in 0..rows.num_rows() {
                let key: Box<[u8]> =
                    keys.as_ref().map_or_else(|| Box::from([]), |keys| Box::from(keys.row(row).as_ref()));
                parts.entry(((ends.value(row), starts.value(row)), key)).or_default().push(row as u32);
            }
            for ((window, key), selection) in parts {
                let taken = arrow::compute::take_record_batch(&rows, &UInt32Array::from(selection))?;
                let candidates = self.windows.entry(window).or_default().entry(key).or_insert_with(|| Candidates {
                    rows: RecordBatch::new_empty(Arc::clone(&plan.schema)),
                    deliveries: Vec::new(),
                });
                candidates.rows = arrow::compute::concat_batches(&plan.schema, [&candidates.rows, &taken])?;
            }
        }
        Ok(())
    }
}

/// The rows of `rows` that rank within the limit (all ties of the last one included).
fn cut(plan: &TopNPlan, order: &RowConverter, rows: RecordBatch) -> Result<RecordBatch, RuntimeError> {
    if rows.num_rows() <= plan.limit {
        return Ok(rows);
    }
    // Assigned windows put `window_start` and `window_end` in front of the input columns.
    let offset = usize::from(matches!(plan.windows, Windows::Assigned { .. })) * 2;
    let columns: Vec<ArrayRef> = plan.order.iter().map(|&(c, _)| Arc::clone(rows.column(c + offset))).collect();
    let keys = order.convert_columns(&columns)?;
    let mut ranked: Vec<u32> = (0..rows.num_rows() as u32).collect();
    let nth = plan.limit - 1;
    ranked.select_nth_unstable_by(nth, |&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
    let threshold = keys.row(ranked[nth] as usize);
    let kept: Vec<u32> = (0..rows.num_rows() as u32).filter(|&r| keys.row(r as usize) <= threshold).collect();
    Ok(arrow::compute::take_record_batch(&rows, &UInt32Array::from(kept))?)
}

/// Prepends the window bounds to rows of one window.
fn with_bounds(
    schema: &SchemaRef,
    time_type: &DataType,
    window: Bounds,
    rows: RecordBatch,
) -> Result<RecordBatch, RuntimeError> {
    let count = rows.num_rows();
    let mut columns = vec![
        super::window::bound_column(window.start, count, time_type)?,
        super::window::bound_column(window.end, count, time_type)?,
    ];
    columns.extend(rows.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
