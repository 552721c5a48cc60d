//! Event time at the sources: which column holds a row's time, how watermarks follow it, and when
//! a quiet source stops holding the job back.
//!
//! A source declares `event_time: { column, max_out_of_orderness, idle_timeout }`. The runner
//! then puts a watermark assigner behind every subtask of that source ([`assign`]): after each
//! batch it emits `Watermark(max_time - max_out_of_orderness - 1 ms)` when that advances (Flink's
//! bounded out-of-orderness strategy, per batch instead of on a 200 ms timer), and after
//! `idle_timeout` without a batch it sends [`Message::Idle`], so one silent partition does not
//! stall the windows downstream. The column travels in the schema's metadata
//! ([`EVENT_TIME_KEY`]) through the steps that keep it, so a `window` knows its time column
//! without repeating it.
//!
//! Times are milliseconds since the Unix epoch ([`super::EventTime`]); a column may be `Int64`
//! (milliseconds) or any `Timestamp` unit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::component::RuntimeError;
use super::output::Output;
use super::{EventTime, Message};
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, duration_opt};

/// Schema metadata key naming the event-time column of a stream.
pub const EVENT_TIME_KEY: &str = "weir.event_time";

/// A source's `event_time` option.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeConfig {
    /// The column holding each row's event time.
    pub column: Spanned<String>,
    /// How late a row may arrive behind the newest one seen (default 0: in order).
    #[serde(default, with = "duration_opt")]
    pub max_out_of_orderness: Option<Duration>,
    /// After this long without a batch the source subtask is idle and stops holding back the
    /// watermark (default: never).
    #[serde(default, with = "duration_opt")]
    pub idle_timeout: Option<Duration>,
}

/// A validated watermark strategy for one source.
#[derive(Debug, Clone)]
pub struct WatermarkStrategy {
    /// Index of the time column in the source's schema.
    pub column: usize,
    /// Milliseconds a row may be behind the newest one.
    pub delay_ms: i64,
    /// When a quiet subtask reports itself idle.
    pub idle_timeout: Option<Duration>,
}

impl EventTimeConfig {
    /// Checks the column against the source's schema; returns the strategy and the schema with
    /// the event-time marker.
    ///
    /// # Errors
    /// An unknown column or one that is not a time.
    pub fn plan(&self, schema: &SchemaRef) -> Result<(WatermarkStrategy, SchemaRef), SpecIssue> {
        let name = &self.column.value;
        let (index, field) = schema.column_with_name(name).ok_or_else(|| {
            let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            SpecIssue::at(
                &self.column.referenced,
                format!("event_time column `{name}` is not in the source's schema; columns: {}", known.join(", ")),
            )
        })?;
        check_time_type(field.data_type()).map_err(|message| SpecIssue::at(&self.column.referenced, message))?;
        let delay = self.max_out_of_orderness.unwrap_or_default();
        let strategy = WatermarkStrategy {
            column: index,
            delay_ms: i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            idle_timeout: self.idle_timeout,
        };
        Ok((strategy, mark(schema, name)))
    }
}

/// Whether a column type can carry event time.
///
/// # Errors
/// A message naming the type.
pub fn check_time_type(data_type: &DataType) -> Result<(), String> {
    match data_type {
        DataType::Int64 | DataType::Timestamp(..) => Ok(()),
        other => Err(format!(
            "an event-time column must be Int64 (milliseconds since the epoch) or a Timestamp, not {other}"
        )),
    }
}

/// `schema` with `column` marked as its event time.
pub fn mark(schema: &Schema, column: &str) -> SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.insert(EVENT_TIME_KEY.to_string(), column.to_string());
    Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
}

/// The event-time column of a stream, if it has one.
pub fn column_of(schema: &Schema) -> Option<&str> {
    schema.metadata().get(EVENT_TIME_KEY).map(String::as_str)
}

/// Carries the event-time marker from a step's input to its output schema when the output
/// still has the column (same name and type); steps that rebuild their schema call this.
pub fn carry(input: &Schema, output: Schema) -> Schema {
    let Some(column) = column_of(input) else { return output };
    let kept = matches!(
        (input.field_with_name(column), output.field_with_name(column)),
        (Ok(a), Ok(b)) if a.data_type() == b.data_type()
    );
    if !kept {
        return output;
    }
    let mut metadata: HashMap<String, String> = output.metadata().clone();
    metadata.insert(EVENT_TIME_KEY.to_string(), column.to_string());
    output.with_metadata(metadata)
}

/// A time column as milliseconds since the epoch (nulls stay null).
///
/// # Errors
/// A column type [`check_time_type`] refuses.
pub fn millis(array: &ArrayRef) -> Result<Int64Array, arrow::error::ArrowError> {
    use arrow::array::AsArray as _;
    match array.data_type() {
        DataType::Int64 => Ok(array.as_primitive::<arrow::datatypes::Int64Type>().clone()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let values = array.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
            Ok(Int64Array::new(values.values().clone(), values.nulls().cloned()))
        }
        DataType::Timestamp(..) => {
            let cast = arrow::compute::cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let values = cast.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
            Ok(Int64Array::new(values.values().clone(), values.nulls().cloned()))
        }
        other => Err(arrow::error::ArrowError::InvalidArgumentError(format!("{other} is not an event-time type"))),
    }
}

/// Newest event time in a batch's time column (nulls ignored).
fn newest(batch: &RecordBatch, column: usize) -> Option<EventTime> {
    let times = millis(batch.column(column)).ok()?;
    arrow::compute::max(&times)
}

/// Forwards one source subtask's messages, adding watermarks and idleness. Runs as its own
/// task between the source and its downstream edges; ends when the source's `End` passed.
///
/// # Errors
/// [`RuntimeError::Downstream`] if a downstream task has gone.
pub async fn assign(
    strategy: WatermarkStrategy,
    mut input: mpsc::Receiver<Message>,
    mut output: Output,
) -> Result<(), RuntimeError> {
    let mut watermark = EventTime::MIN;
    let mut idle = false;
    loop {
        let message = match strategy.idle_timeout {
            Some(timeout) if !idle => match tokio::time::timeout(timeout, input.recv()).await {
                Ok(message) => message,
                Err(_) => {
                    idle = true;
                    output.broadcast(Message::Idle).await?;
                    continue;
                }
            },
            _ => input.recv().await,
        };
        match message {
            Some(Message::Batch(batch, delivery)) => {
                idle = false;
                let newest = newest(&batch, strategy.column);
                output.deliver(batch, delivery).await?;
                if let Some(next) = newest.map(|time| time.saturating_sub(strategy.delay_ms).saturating_sub(1))
                    && next > watermark
                {
                    watermark = next;
                    output.broadcast(Message::Watermark(watermark)).await?;
                }
            }
            // Upstream watermarks are the source's own business; ours replace them.
            Some(Message::Watermark(_) | Message::Idle) => {}
            Some(Message::Barrier(epoch)) => output.broadcast(Message::Barrier(epoch)).await?,
            Some(Message::End) | None => {
                output.broadcast(Message::End).await?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Delivery;
    use crate::output::{Edge, Route};
    use arrow::datatypes::Field;

    fn times(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("ts", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)]).unwrap()
    }

    #[tokio::test]
    async fn watermarks_trail_the_newest_time_and_idleness_is_reported() {
        let (source_tx, source_rx) = mpsc::channel(8);
        let (down_tx, mut down_rx) = mpsc::channel(8);
        let output = Output::new("src".into(), vec![Edge::new(vec![down_tx], Route::Forward(0))], Arc::default());
        let strategy = WatermarkStrategy { column: 0, delay_ms: 4_000, idle_timeout: Some(Duration::from_millis(50)) };
        let task = tokio::spawn(assign(strategy, source_rx, output));
        source_tx.send(Message::Batch(times(&[10_000, 12_000, 11_000]), Delivery::untracked())).await.unwrap();
        assert!(matches!(down_rx.recv().await, Some(Message::Batch(..))));
        assert!(matches!(down_rx.recv().await, Some(Message::Watermark(7_999))));
        // Older rows do not move the watermark back or repeat it.
        source_tx.send(Message::Batch(times(&[9_000]), Delivery::untracked())).await.unwrap();
        assert!(matches!(down_rx.recv().await, Some(Message::Batch(..))));
        // Quiet for longer than the idle timeout.
        assert!(matches!(down_rx.recv().await, Some(Message::Idle)));
        source_tx.send(Message::Batch(times(&[20_000]), Delivery::untracked())).await.unwrap();
        assert!(matches!(down_rx.recv().await, Some(Message::Batch(..))));
        assert!(matches!(down_rx.recv().await, Some(Message::Watermark(15_999))));
        source_tx.send(Message::End).await.unwrap();
        assert!(matches!(down_rx.recv().await, Some(Message::End)));
        task.await.unwrap().unwrap();
    }

    #[test]
    fn timestamps_of_any_unit_become_milliseconds() {
        let seconds: ArrayRef = Arc::new(arrow::array::TimestampSecondArray::from(vec![Some(2), None]));
        let ms = millis(&seconds).unwrap();
        assert_eq!(ms.value(0), 2_000);
        assert!(ms.is_null(1));
        assert!(check_time_type(&DataType::Utf8).is_err());
    }

    #[test]
    fn the_marker_survives_steps_that_keep_the_column() {
        let input = mark(&Schema::new(vec![Field::new("ts", DataType::Int64, false)]), "ts");
        let kept = carry(&input, Schema::new(vec![Field::new("ts", DataType::Int64, false)]));
        assert_eq!(column_of(&kept), Some("ts"));
        let dropped = carry(&input, Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        assert_eq!(column_of(&dropped), None);
    }
}
