//! `generator`: rows from a declared set of column generators, for demos, tests and load.
//!
//! ```yaml
//! readings:
//!   type: generator
//!   count: 100000          # total rows; omit for unbounded
//!   rate: 1000             # rows per second; omit for as fast as possible
//!   seed: 7                # random generators are repeatable per seed
//!   columns:
//!     id:     { sequence: { start: 1 } }
//!     device: { random: { min: 1, max: 50 } }          # int64 when min/max are integers
//!     temp:   { random: { min: -10.0, max: 40.0 } }    # float64 otherwise
//!     city:   { choice: [Berlin, Hangzhou, Austin] }
//!     ts:     { timestamp: { start: "2024-01-01T00:00:00Z", step: 1s } }  # or {} for wall-clock now
//! ```
//! With `parallelism: n`, subtask k produces rows k, k+n, k+2n, ... so sequences stay global.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use indexmap::IndexMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};

/// `generator` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Total rows; unbounded when absent.
    pub count: Option<u64>,
    /// Rows per second (all subtasks together); unlimited when absent.
    pub rate: Option<Spanned<f64>>,
    /// Seed of the random generators.
    #[serde(default)]
    pub seed: u64,
    /// Column name → generator, in output order.
    pub columns: Spanned<IndexMap<String, ColumnGenerator>>,
}

/// How one column's values are made.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ColumnGenerator {
    /// `start`, `start + step`, ... (int64).
    Sequence {
        /// First value.
        #[serde(default)]
        start: i64,
        /// Increment.
        #[serde(default = "one")]
        step: i64,
    },
    /// Uniform in `[min, max]` (int64) or `[min, max)` (float64).
    Random {
        /// Lower bound.
        min: Scalar,
        /// Upper bound.
        max: Scalar,
    },
    /// One of the listed values, uniformly.
    Choice(Vec<Scalar>),
    /// Event times: `start + row * step`, or the wall clock when `start` is absent.
    Timestamp {
        /// RFC 3339 time of row 0.
        start: Option<String>,
        /// Time between rows (`1s`, `250ms`); default 1ms.
        step: Option<String>,
    },
}

fn one() -> i64 {
    1
}

/// A literal in a generator definition.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Text(String),
}

/// A column generator checked and ready to run.
#[derive(Debug, Clone)]
enum Column {
    Sequence { start: i64, step: i64 },
    IntRange { min: i64, max: i64 },
    FloatRange { min: f64, max: f64 },
    Choice(Vec<Scalar>, DataType),
    Clock,
    Timestamps { start_ms: i64, step_ms: i64 },
}

impl Column {
    fn plan(name: &str, generator: &ColumnGenerator) -> Result<(Self, DataType), String> {
        Ok(match generator {
            ColumnGenerator::Sequence { start, step } => {
                (Self::Sequence { start: *start, step: *step }, DataType::Int64)
            }
            ColumnGenerator::Random { min: Scalar::Int(min), max: Scalar::Int(max) } => {
                if min > max {
                    return Err(format!("column `{name}`: min {min} is above max {max}"));
                }
                (Self::IntRange { min: *min, max: *max }, DataType::Int64)
            }
            ColumnGenerator::Random { min, max } => {
                let (Some(min), Some(max)) = (as_f64(min), as_f64(max)) else {
                    return Err(format!("column `{name}`: random min and max must be numbers"));
                };
                if min >= max {
                    return Err(format!("column `{name}`: min {min} must be below max {max}"));
                }
                (Self::FloatRange { min, max }, DataType::Float64)
            }
            ColumnGenerator::Choice(values) => {
                let data_type = match values.first() {
                    None => return Err(format!("column `{name}`: choice needs at least one value")),
                    Some(Scalar::Bool(_)) => DataType::Boolean,
                    Some(Scalar::Int(_)) => DataType::Int64,
                    Some(Scalar::Float(_)) => DataType::Float64,
                    Some(Scalar::Text(_)) => DataType::Utf8,
                };
                if values.iter().any(|v| std::mem::discriminant(v) != std::mem::discriminant(&values[0])) {
                    return Err(format!("column `{name}`: choice values must all have the same type"));
                }
                (Self::Choice(values.clone(), data_type.clone()), data_type)
            }
            ColumnGenerator::Timestamp { start, step } => {
                let timestamp = DataType::Timestamp(TimeUnit::Millisecond, None);
                let step_ms = match step {
                    None => 1,
                    Some(text) => humantime::parse_duration(text)
                        .map_err(|err| format!("column `{name}`: step `{text}`: {err}"))?
                        .as_millis() as i64,
                };
                match start {
                    None => (Self::Clock, timestamp),
                    Some(text) => {
                        let start_ms = chrono::DateTime::parse_from_rfc3339(text)
                            .map_err(|err| format!("column `{name}`: start `{text}` is not an RFC 3339 time: {err}"))?
                            .timestamp_millis();
                        (Self::Timestamps { start_ms, step_ms }, timestamp)
                    }
                }
            }
        })
    }

    /// Whether the column draws from the random generator.
    fn is_random(&self) -> bool {
        matches!(self, Self::IntRange { .. } | Self::FloatRange { .. } | Self::Choice(..))
    }

    fn build(&self, rows: &[u64], rng: &mut SmallRng) -> ArrayRef {
        match self {
            Self::Sequence { start, step } => Arc::new(
                rows.iter()
                    .map(|&row| Some(start.wrapping_add(step.wrapping_mul(row as i64))))
                    .collect::<arrow::array::Int64Array>(),
            ),
            Self::IntRange { min, max } => {
                let mut builder = Int64Builder::with_capacity(rows.len());
                rows.iter().for_each(|_| builder.append_value(rng.random_range(*min..=*max)));
                Arc::new(builder.finish())
            }
            Self::FloatRange { min, max } => {
                let mut builder = Float64Builder::with_capacity(rows.len());
                rows.iter().for_each(|_| builder.append_value(rng.random_range(*min..*max)));
                Arc::new(builder.finish())
            }
            Self::Choice(values, data_type) => {
                let picks = rows.iter().map(|_| &values[rng.random_range(0..values.len())]);
                match data_type {
                    DataType::Boolean => {
                        let mut builder = BooleanBuilder::with_capacity(rows.len());
                        picks
                            .for_each(|v| builder.append_option(if let Scalar::Bool(b) = v { Some(*b) } else { None }));
                        Arc::new(builder.finish())
                    }
                    DataType::Int64 => {
                        let mut builder = Int64Builder::with_capacity(rows.len());
                        picks.for_each(|v| builder.append_option(if let Scalar::Int(i) = v { Some(*i) } else { None }));
                        Arc::new(builder.finish())
                    }
                    DataType::Float64 => {
                        let mut builder = Float64Builder::with_capacity(rows.len());
                        picks.for_each(|v| builder.append_option(as_f64(v)));
                        Arc::new(builder.finish())
                    }
                    _ => {
                        let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                        picks.for_each(|v| {
                            builder.append_option(if let Scalar::Text(t) = v { Some(t.as_str()) } else { None })
                        });
                        Arc::new(builder.finish())
                    }
                }
            }
            Self::Clock => {
                let now = chrono::Utc::now().timestamp_millis();
                let mut builder = TimestampMillisecondBuilder::with_capacity(rows.len());
                rows.iter().for_each(|_| builder.append_value(now));
                Arc::new(builder.finish())
            }
            Self::Timestamps { start_ms, step_ms } => {
                let mut builder = TimestampMillisecondBuilder::with_capacity(rows.len());
                rows.iter().for_each(|&row| builder.append_value(start_ms + step_ms * row as i64));
                Arc::new(builder.finish())
            }
        }
    }
}

fn as_f64(value: &Scalar) -> Option<f64> {
    match value {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) => Some(*f),
        _ => None,
    }
}

impl SourceSpec for GeneratorConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        if self.columns.value.is_empty() {
            return Err(SpecIssue::at(&self.columns.referenced, "`columns` is empty"));
        }
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        for (name, generator) in &self.columns.value {
            let (column, data_type) =
                Column::plan(name, generator).map_err(|message| SpecIssue::at(&self.columns.referenced, message))?;
            fields.push(Field::new(name, data_type, false));
            columns.push(column);
        }
        if let Some(rate) = self.rate.as_ref().filter(|rate| rate.value.is_nan() || rate.value <= 0.0) {
            return Err(SpecIssue::at(&rate.referenced, "`rate` must be above 0"));
        }
        let factory = GeneratorSource {
            schema: Arc::new(Schema::new(fields)),
            columns,
            count: self.count,
            rate: self.rate.as_ref().map(|rate| rate.value),
            seed: self.seed,
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource {
            schema: factory.schema.clone(),
            parallelism: ctx.parallelism.unwrap_or(1),
            factory: Arc::new(factory),
        })
    }
}

#[derive(Debug, Clone)]
struct GeneratorSource {
    schema: SchemaRef,
    columns: Vec<Column>,
    count: Option<u64>,
    rate: Option<f64>,
    seed: u64,
    batch_size: usize,
}

#[async_trait]
impl Source for GeneratorSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let config = &*self;
        let (subtask, parallelism) = (ctx.subtask as u64, ctx.parallelism as u64);
        let mut rng = SmallRng::seed_from_u64(config.seed.wrapping_add(subtask));
        let count = config.count.unwrap_or(u64::MAX);
        let per_subtask_rate = config.rate.map(|rate| rate / parallelism as f64);
        // With a rate, batches are small enough to keep latency near 100 ms.
        let batch_size = per_subtask_rate
            .map_or(config.batch_size, |rate| ((rate / 10.0).ceil() as usize).clamp(1, config.batch_size));
        let started = Instant::now();
        let mut produced: u64 = 0;
        let mut next_row = subtask;
        let mut rows = Vec::with_capacity(batch_size);
        // The position is the next row number. Random columns draw from one generator per
        // subtask, so resuming replays the draws of the rows before it (in the same batches).
        if let Some(position) = ctx.restored_position() {
            let resume = position.parse::<u64>().map_err(|_| {
                RuntimeError::Checkpoint(format!("generator position `{position}` is not a row number"))
            })?;
            let draws = config.columns.iter().any(Column::is_random);
            while next_row < resume.min(count) {
                rows.clear();
                while rows.len() < batch_size && next_row < count {
                    rows.push(next_row);
                    next_row = next_row.saturating_add(parallelism);
                }
                if draws {
                    config.columns.iter().for_each(|column| drop(column.build(&rows, &mut rng)));
                }
            }
        }
        while next_row < count && !ctx.stop.is_cancelled() {
            if let Some(rate) = per_subtask_rate {
                let due = started + Duration::from_secs_f64(produced as f64 / rate);
                if !ctx.wait_until(due).await {
                    break;
                }
            }
            rows.clear();
            while rows.len() < batch_size && next_row < count {
                rows.push(next_row);
                next_row = next_row.saturating_add(parallelism);
            }
            let arrays = config.columns.iter().map(|column| column.build(&rows, &mut rng)).collect();
            let batch = RecordBatch::try_new(config.schema.clone(), arrays)?;
            produced += rows.len() as u64;
            ctx.metrics.record_received(batch.num_rows());
            ctx.output.send(batch).await?;
            ctx.offer_barrier(|| Some(next_row.to_string())).await?;
        }
        Ok(())
    }

    fn checkpointable(&self) -> bool {
        true
    }
}
