//! `window`: event-time (or processing-time) windows with keyed aggregates.
//!
//! ```yaml
//! per10s:
//!   type: window
//!   inputs: [bids]
//!   tumble: 10s                      # or hop: { size: 10s, slide: 2s }, session: { gap: 30s },
//!                                    #    cumulate: { step: 1m, max: 1h }
//!   group_by: [auction]              # optional; without it one subtask sees every row
//!   aggregates: { n: "count(*)", top: "max(price)", p99: "percentile(price, 0.99)" }
//!   allowed_lateness: 5s             # optional; late rows update the window and it fires again
//!   early_fire: 1s                   # optional; partial results every second of wall-clock time
//!   time_column: date_time           # optional; default: the source's `event_time` column
//!   processing_time: false           # true: windows by wall-clock time of arrival
//! ```
//!
//! Delivery: a source may acknowledge input once its rows are folded into window state (as Flink
//! does without checkpoints), so a crash loses the open windows and results fired but not yet
//! written. A stop (Ctrl-C, SIGTERM) fires nothing that is open unless the job drains
//! (`settings.drain_on_stop`, `weir run --drain`): a partial window is never published as final.
//! `at_least_once: true` (holding the acknowledgements until the results were written) is
//! refused: after a restart the replay re-fired the window that straddled the replay boundary
//! with only the replayed rows and overwrote its complete result, and JetStream redelivered held
//! messages into open windows. Checkpoints (a later issue) make window state durable; the
//! held-delivery path (`WindowPlan::at_least_once`) is what they will switch on.
//!
//! Output: `window_start`, `window_end` (the type of the time column), the `group_by` columns,
//! then one column per aggregate. A window fires when the watermark passes its end (Flink: when
//! `watermark >= end - 1`); with `allowed_lateness` its state stays until `end - 1 + lateness`
//! and late rows make it fire again with the updated values. Rows later than that go to the
//! `<name>.late` output if a component reads it, and are counted otherwise
//! (`late_events`). A row without a time goes to `on_error`. Bounded inputs fire every window
//! still open when they end.
//!
//! Aligned windows (tumble, hop, cumulate) fold rows into per-window accumulators as they arrive,
//! so state is one accumulator row per open window and key ([`aligned`]); session windows keep
//! the evaluated arguments of their rows until they close, because sessions merge ([`session`]).
//! Keyed windows run in parallel subtasks, rows hash-partitioned on the `group_by` columns.

pub mod aligned;
pub mod assign;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use super::aggregate_calls::AggregateSet;
use super::groups::KeyEncoder;
use assign::{WindowKind, millis};
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, SpannedMap, duration_opt};
use weir_engine::component::{
    OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError, TransformSpec,
};
use weir_engine::event_time;

/// Schema metadata naming the window columns of a window's output (read by `top_n`).
pub const WINDOW_KEY: &str = "weir.window";

/// `hop` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HopConfig {
    /// Window length.
    #[serde(with = "weir_config::yaml::duration")]
    pub size: Duration,
    /// Distance between window starts.
    #[serde(with = "weir_config::yaml::duration")]
    pub slide: Duration,
}

/// `session` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Largest gap between rows of one session.
    #[serde(with = "weir_config::yaml::duration")]
    pub gap: Duration,
}

/// `cumulate` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CumulateConfig {
    /// How much the window grows each time it fires.
    #[serde(with = "weir_config::yaml::duration")]
    pub step: Duration,
    /// The longest window; a new one starts after it.
    #[serde(with = "weir_config::yaml::duration")]
    pub max: Duration,
}

/// Where a row's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// An input column (event time), by index.
    Column(usize),
    /// The wall clock when the row arrives.
    Processing,
}

/// `window` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Tumbling window length.
    #[serde(default, with = "duration_opt")]
    pub tumble: Option<Duration>,
    /// Hopping windows.
    pub hop: Option<HopConfig>,
    /// Session windows.
    pub session: Option<SessionConfig>,
    /// Cumulating windows.
    pub cumulate: Option<CumulateConfig>,
    /// Key columns.
    #[serde(default)]
    pub group_by: Vec<Spanned<String>>,
    /// Output column to aggregate call.
    pub aggregates: Spanned<SpannedMap<String>>,
    /// How long a fired window still accepts late rows.
    #[serde(default, with = "duration_opt")]
    pub allowed_lateness: Option<Duration>,
    /// Emit partial results of open windows this often (wall-clock time).
    #[serde(default, with = "duration_opt")]
    pub early_fire: Option<Duration>,
    /// The time column (default: the input's event-time column).
    pub time_column: Option<Spanned<String>>,
    /// Windows by arrival time instead of event time.
    #[serde(default)]
    pub processing_time: bool,
    /// Withdrawn (see the module header); `true` is refused with the reason.
    pub at_least_once: Option<Spanned<bool>>,
}

/// Refuses `at_least_once: true` with the reason (shared by `window` and `top_n`).
///
/// # Errors
/// `at_least_once: true`.
pub fn refuse_at_least_once(option: Option<&Spanned<bool>>) -> Result<(), SpecIssue> {
    match option {
        Some(option) if option.value => Err(SpecIssue::at(
            &option.referenced,
            "`at_least_once` was withdrawn: after a restart the replayed rows re-fired an already written window \
             with only part of its rows and overwrote the complete result. Remove it; windows become \
             exactly-once with checkpoints (a later release)",
        )),
        _ => Ok(()),
    }
}

/// How many windows one row may fall into (`hop.size / hop.slide`, `cumulate.max / step`): a
/// zero or tiny slide would put each row into millions of windows.
pub const MAX_WINDOWS_PER_ROW: i64 = 10_000;

/// The one window kind configured (shared by `window` and `top_n`).
///
/// # Errors
/// None or several kinds, or inconsistent sizes.
pub fn window_kind(
    tumble: Option<Duration>,
    hop: Option<&HopConfig>,
    session: Option<&SessionConfig>,
    cumulate: Option<&CumulateConfig>,
) -> Result<WindowKind, SpecIssue> {
    let mut kinds = Vec::new();
    if let Some(size) = tumble {
        kinds.push(WindowKind::Tumble { size: millis(size) });
    }
    if let Some(hop) = hop {
        kinds.push(WindowKind::Hop { size: millis(hop.size), slide: millis(hop.slide) });
    }
    if let Some(session) = session {
        kinds.push(WindowKind::Session { gap: millis(session.gap) });
    }
    if let Some(cumulate) = cumulate {
        kinds.push(WindowKind::Cumulate { step: millis(cumulate.step), max: millis(cumulate.max) });
    }
    let kind = match kinds.as_slice() {
        [kind] => *kind,
        [] => return Err(SpecIssue::new("say which windows: `tumble`, `hop`, `session` or `cumulate`")),
        _ => return Err(SpecIssue::new("`tumble`, `hop`, `session` and `cumulate` exclude each other; pick one")),
    };
    let lengths = [
        ("tumble", tumble),
        ("hop.size", hop.map(|hop| hop.size)),
        ("hop.slide", hop.map(|hop| hop.slide)),
        ("session.gap", session.map(|session| session.gap)),
        ("cumulate.step", cumulate.map(|cumulate| cumulate.step)),
        ("cumulate.max", cumulate.map(|cumulate| cumulate.max)),
    ];
    if let Some((option, _)) = lengths.iter().find(|(_, length)| length.is_some_and(|l| l < Duration::from_millis(1))) {
        return Err(SpecIssue::new(format!("`{option}` must be at least 1ms")));
    }
    match kind {
        WindowKind::Hop { size, slide } if size / slide > MAX_WINDOWS_PER_ROW => Err(SpecIssue::new(format!(
            "`hop.size` / `hop.slide` puts every row into {} windows; at most {MAX_WINDOWS_PER_ROW} are allowed",
            size / slide
        ))),
        WindowKind::Cumulate { step, max } if max / step > MAX_WINDOWS_PER_ROW => Err(SpecIssue::new(format!(
            "`cumulate.max` / `cumulate.step` puts every row into up to {} windows; at most {MAX_WINDOWS_PER_ROW} are allowed",
            max / step
        ))),
        WindowKind::Hop { size, slide } if slide > size => {
            Err(SpecIssue::new("`hop.slide` is longer than `hop.size`: rows between windows would be lost"))
        }
        WindowKind::Cumulate { step, max } if max % step != 0 => {
            Err(SpecIssue::new("`cumulate.max` must be a whole number of `cumulate.step`s"))
        }
        kind => Ok(kind),
    }
}

/// Resolves the time column of a windowed step.
///
/// # Errors
/// No time column, an unknown one, or one that is not a time.
pub fn time_source(
    input: &SchemaRef,
    time_column: Option<&Spanned<String>>,
    processing_time: bool,
) -> Result<(TimeSource, DataType), SpecIssue> {
    if processing_time {
        if let Some(column) = time_column {
            return Err(SpecIssue::at(
                &column.referenced,
                "`time_column` and `processing_time: true` exclude each other",
            ));
        }
        return Ok((TimeSource::Processing, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))));
    }
    let (name, at) = match (time_column, event_time::column_of(input)) {
        (Some(column), _) => (column.value.as_str(), Some(&column.referenced)),
        (None, Some(name)) => (name, None),
        (None, None) => {
            return Err(SpecIssue::new(
                "the input has no event time: declare `event_time: { column: ... }` on its source, name the column \
                 with `time_column`, or use `processing_time: true`",
            ));
        }
    };
    let issue = |message: String| match at {
        Some(at) => SpecIssue::at(at, message),
        None => SpecIssue::new(message),
    };
    let (index, field) = input.column_with_name(name).ok_or_else(|| {
        let known: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
        issue(format!("time column `{name}` is not in the input; columns: {}", known.join(", ")))
    })?;
    event_time::check_time_type(field.data_type()).map_err(issue)?;
    let output_type = match field.data_type() {
        DataType::Timestamp(_, zone) => DataType::Timestamp(TimeUnit::Millisecond, zone.clone()),
        other => other.clone(),
    };
    Ok((TimeSource::Column(index), output_type))
}

/// Resolves `group_by` names to input column indices.
///
/// # Errors
/// Unknown or repeated columns, or types that cannot be keys.
pub fn key_columns(input: &SchemaRef, group_by: &[Spanned<String>]) -> Result<Vec<usize>, SpecIssue> {
    let mut columns = Vec::new();
    for name in group_by {
        let index = input.index_of(&name.value).map_err(|_| {
            let known: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
            SpecIssue::at(
                &name.referenced,
                format!("`group_by`: column `{}` is not in the input; columns: {}", name.value, known.join(", ")),
            )
        })?;
        if columns.contains(&index) {
            return Err(SpecIssue::at(&name.referenced, format!("`group_by`: `{}` is listed twice", name.value)));
        }
        if !arrow::row::RowConverter::supports_fields(&[arrow::row::SortField::new(
            input.field(index).data_type().clone(),
        )]) {
            return Err(SpecIssue::at(
                &name.referenced,
                format!(
                    "`group_by`: `{}` has type {}, which cannot be a key",
                    name.value,
                    input.field(index).data_type()
                ),
            ));
        }
        columns.push(index);
    }
    Ok(columns)
}

/// Everything a window subtask needs, shared by all subtasks.
#[derive(Debug)]
pub struct WindowPlan {
    /// The component, for errors.
    pub kind: WindowKind,
    /// Where row times come from.
    pub time: TimeSource,
    /// Type of `window_start` / `window_end`.
    pub time_type: DataType,
    /// Key encoding.
    pub keys: KeyEncoder,
    /// The aggregates.
    pub aggregates: AggregateSet,
    /// Milliseconds a window keeps accepting late rows after it fired.
    pub lateness: i64,
    /// Early firing interval.
    pub early_fire: Option<Duration>,
    /// Hold the deliveries of the input rows until the results made from them are delivered.
    pub at_least_once: bool,
    /// Output schema.
    pub schema: SchemaRef,
}

impl WindowPlan {
    /// One output batch: the window bounds, the keys, the aggregate values.
    ///
    /// # Errors
    /// Arrow failures (types are fixed at planning).
    pub fn output(
        &self,
        starts: arrow::array::Int64Array,
        ends: arrow::array::Int64Array,
        keys: Vec<ArrayRef>,
        values: Vec<ArrayRef>,
    ) -> Result<RecordBatch, RuntimeError> {
        let mut columns = vec![as_time_type(starts, &self.time_type)?, as_time_type(ends, &self.time_type)?];
        columns.extend(keys);
        columns.extend(values);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// What this window's checkpointed state depends on ([`crate::snapshot`]): the windows, the
    /// key and the aggregates. A change in any of them makes a checkpoint unrestorable.
    pub fn state_shape(&self) -> String {
        format!("window {:?}, {}, {}", self.kind, self.keys.state_shape(), self.aggregates.state_shape())
    }
}

/// The output schema of a windowed aggregate.
fn output_schema(time_type: &DataType, keys: &KeyEncoder, aggregates: &AggregateSet) -> Result<SchemaRef, SpecIssue> {
    let mut fields =
        vec![Field::new("window_start", time_type.clone(), false), Field::new("window_end", time_type.clone(), false)];
    fields.extend(keys.fields.iter().cloned());
    for field in aggregates.fields() {
        if fields.iter().any(|f| f.name() == field.name()) {
            return Err(SpecIssue::new(format!(
                "`aggregates`: the output column `{}` clashes with a window or key column",
                field.name()
            )));
        }
        fields.push(field);
    }
    let metadata = HashMap::from([(WINDOW_KEY.to_string(), "window_start,window_end".to_string())]);
    Ok(Arc::new(Schema::new_with_metadata(fields, metadata)))
}

/// Compiles the `aggregates` map.
///
/// # Errors
/// The first call that does not compile, at its position.
pub fn compile_aggregates(
    aggregates: &Spanned<SpannedMap<String>>,
    input: &SchemaRef,
    ctx: &PlanContext,
) -> Result<AggregateSet, SpecIssue> {
    if aggregates.value.0.is_empty() {
        return Err(SpecIssue::at(&aggregates.referenced, "`aggregates` is empty"));
    }
    let entries = aggregates.value.0.iter().map(|(name, sql)| (name.value.as_str(), sql.value.as_str()));
    AggregateSet::compile(entries, input, &ctx.resource::<crate::expr::FunctionCatalog>()).map_err(|(name, err)| {
        let at = aggregates.value.0.iter().find(|(key, _)| key.value == name).map(|(_, sql)| &sql.referenced);
        match at {
            Some(at) => SpecIssue::at(at, format!("`aggregates.{name}`: {err}")),
            None => SpecIssue::new(format!("`aggregates.{name}`: {err}")),
        }
    })
}

impl TransformSpec for WindowConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        refuse_at_least_once(self.at_least_once.as_ref())?;
        let kind = window_kind(self.tumble, self.hop.as_ref(), self.session.as_ref(), self.cumulate.as_ref())?;
        if matches!(kind, WindowKind::Session { .. }) && self.allowed_lateness.is_some() {
            return Err(SpecIssue::new(
                "`allowed_lateness` is not supported for session windows yet (a late row would have to \
                 re-open a fired session); late rows go to `<name>.late`",
            ));
        }
        let (time, time_type) = time_source(input, self.time_column.as_ref(), self.processing_time)?;
        let columns = key_columns(input, &self.group_by)?;
        let keys = KeyEncoder::new(input, columns.clone()).map_err(|err| SpecIssue::new(err.to_string()))?;
        let aggregates = compile_aggregates(&self.aggregates, input, ctx)?;
        let schema = output_schema(&time_type, &keys, &aggregates)?;
        if matches!(kind, WindowKind::Session { .. }) && self.early_fire.is_some() {
            return Err(SpecIssue::new("`early_fire` is for tumble, hop and cumulate windows"));
        }
        let plan = Arc::new(WindowPlan {
            kind,
            time,
            time_type,
            keys,
            aggregates,
            lateness: self
                .allowed_lateness
                .map_or(0, |lateness| i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX)),
            early_fire: self.early_fire,
            at_least_once: false,
            schema: Arc::clone(&schema),
        });
        let partitioning = if columns.is_empty() { Partitioning::Single } else { Partitioning::Hash(columns) };
        Ok(PlannedTransform { schema, factory: Arc::new(WindowFactory(plan)), partitioning })
    }
}

#[derive(Debug)]
struct WindowFactory(Arc<WindowPlan>);

impl OperatorFactory for WindowFactory {
    fn create(&self) -> OperatorInstance {
        match self.0.kind {
            WindowKind::Session { gap } => {
                OperatorInstance::Stateful(Box::new(session::SessionWindows::new(Arc::clone(&self.0), gap)))
            }
            _ => OperatorInstance::Stateful(Box::new(aligned::AlignedWindows::new(Arc::clone(&self.0)))),
        }
    }
}

/// The current wall-clock time in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

/// Hands a row whose time column is NULL to the step's `on_error` (it belongs to no window).
///
/// # Errors
/// Under `on_error: fail`.
pub fn reject_timeless(
    batch: &RecordBatch,
    row: usize,
    errors: &mut weir_engine::errors::RecordErrorHandler,
) -> Result<(), RuntimeError> {
    let raw = weir_engine::errors::row_as_json(batch, row);
    errors.handle(weir_engine::errors::BadRecord {
        position: format!("input row {row}"),
        raw: &raw,
        reason: "the row has no event time (the time column is null)".into(),
    })
}

/// A window bound repeated for `rows` rows, in the window's time type.
///
/// # Errors
/// Arrow cast failures (types are fixed at planning).
pub fn bound_column(value: i64, rows: usize, time_type: &DataType) -> Result<ArrayRef, RuntimeError> {
    as_time_type(arrow::array::Int64Array::from_value(value, rows), time_type)
}

/// Milliseconds as a column of the window's time type (`Int64` or a `Timestamp`).
fn as_time_type(millis: arrow::array::Int64Array, time_type: &DataType) -> Result<ArrayRef, RuntimeError> {
    let column: ArrayRef = Arc::new(millis);
    Ok(if *time_type == DataType::Int64 { column } else { arrow::compute::cast(&column, time_type)? })
}

/// Row times of a batch in ms: the time column, or the arrival time for processing time.
///
/// # Errors
/// Arrow failures.
pub fn row_times(time: TimeSource, batch: &RecordBatch) -> Result<arrow::array::Int64Array, RuntimeError> {
    Ok(match time {
        TimeSource::Column(index) => event_time::millis(batch.column(index))?,
        TimeSource::Processing => arrow::array::Int64Array::from_value(now_ms(), batch.num_rows()),
    })
}
