//! Decoding broker messages (one record per message) into batches, plus metadata columns.
//!
//! Every message-oriented source (Kafka, NATS, MQTT, AMQP, Redis Streams, HTTP push) shares this:
//! the payload format (`json`, `csv`, `raw` text, `bytes`) and declared `schema`, the error policy
//! for payloads that do not decode, and `metadata:` columns (`{ column: field }`, e.g.
//! `{ kafka_partition: partition }`) filled from the message's envelope.
//!
//! A batch of payloads is decoded in one pass; if that fails, payloads are decoded one at a time
//! so only the bad ones go to the error policy, each with its position (topic, partition, offset).
//! Metadata columns are built for exactly the payloads that decoded, so rows stay aligned.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use indexmap::IndexMap;
use serde::Deserialize;

use super::decode::describe;
use super::guard;
use super::schema::{SchemaSpec, build_schema};
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::RuntimeError;
use weir_engine::errors::{BadRecord, RecordErrorHandler};

/// How a message payload is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// One JSON object per message (may span lines).
    #[default]
    Json,
    /// One CSV record per message, no header.
    Csv,
    /// The payload as UTF-8 text in one column, `payload`.
    Raw,
    /// The payload bytes in one binary column, `payload`.
    Bytes,
}

/// The payload options every message source takes (flattened into its config).
#[derive(Debug, Deserialize)]
pub struct PayloadOptions {
    /// Payload format.
    #[serde(default)]
    pub format: MessageFormat,
    /// Declared payload columns (needed for `json` and `csv`).
    pub schema: Option<Spanned<SchemaSpec>>,
    /// Envelope fields as extra columns: `{ column_name: field }`.
    #[serde(default)]
    pub metadata: IndexMap<String, Spanned<String>>,
}

/// The type of an envelope field a connector offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaType {
    /// Text (topic, subject, key as text, headers as a JSON object).
    Utf8,
    /// Bytes (a binary key).
    Binary,
    /// An integer (partition, offset, sequence).
    Int64,
    /// Milliseconds since the epoch.
    TimestampMs,
}

impl MetaType {
    fn data_type(self) -> DataType {
        match self {
            Self::Utf8 => DataType::Utf8,
            Self::Binary => DataType::Binary,
            Self::Int64 => DataType::Int64,
            Self::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, None),
        }
    }
}

/// One envelope field's value for one message.
#[derive(Debug, Clone, Copy)]
pub enum MetaValue<'a> {
    /// Text, or null.
    Utf8(Option<&'a str>),
    /// Bytes, or null.
    Binary(Option<&'a [u8]>),
    /// An integer, or null.
    Int64(Option<i64>),
    /// Milliseconds since the epoch, or null.
    TimestampMs(Option<i64>),
}

/// A planned payload + metadata layout: the output schema and how to fill it.
#[derive(Debug, Clone)]
pub struct MessageLayout {
    format: MessageFormat,
    payload_schema: SchemaRef,
    /// `(field index in the connector's offer, type)` per metadata column, in column order.
    metadata: Vec<(usize, MetaType)>,
    schema: SchemaRef,
}

impl PayloadOptions {
    /// Checks the options against the envelope fields the connector offers (`offered`: name and
    /// type) and fixes the output schema.
    ///
    /// # Errors
    /// A missing schema for `json`/`csv`, an unknown metadata field or a column name used twice.
    pub fn plan(&self, offered: &[(&str, MetaType)]) -> Result<MessageLayout, SpecIssue> {
        let payload_schema = match (self.format, &self.schema) {
            (MessageFormat::Json | MessageFormat::Csv, None) => {
                return Err(SpecIssue::new("`schema` is required for `format: json` and `format: csv`"));
            }
            (MessageFormat::Json | MessageFormat::Csv, Some(schema)) => build_schema(&schema.value)?,
            (MessageFormat::Raw, _) => Arc::new(Schema::new(vec![Field::new("payload", DataType::Utf8, false)])),
            (MessageFormat::Bytes, _) => Arc::new(Schema::new(vec![Field::new("payload", DataType::Binary, false)])),
        };
        let mut fields: Vec<Field> = payload_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut metadata = Vec::with_capacity(self.metadata.len());
        for (column, field) in &self.metadata {
            let Some(index) = offered.iter().position(|(name, _)| *name == field.value) else {
                let names: Vec<&str> = offered.iter().map(|(name, _)| *name).collect();
                return Err(SpecIssue::at(
                    &field.referenced,
                    format!("unknown metadata field `{}`; this source offers: {}", field.value, names.join(", ")),
                ));
            };
            if fields.iter().any(|existing| existing.name() == column) {
                return Err(SpecIssue::at(
                    &field.referenced,
                    format!("metadata column `{column}` is already a payload column"),
                ));
            }
            let kind = offered[index].1;
            fields.push(Field::new(column, kind.data_type(), true));
            metadata.push((index, kind));
        }
        Ok(MessageLayout { format: self.format, payload_schema, metadata, schema: Arc::new(Schema::new(fields)) })
    }
}

impl MessageLayout {
    /// Whether a `metadata:` column reads offered field `field` (so a connector can skip
    /// preparing envelope fields nobody asked for).
    pub fn uses(&self, field: usize) -> bool {
        self.metadata.iter().any(|&(index, _)| index == field)
    }

    /// The output schema: payload columns, then metadata columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// A decoder for one source subtask.
    ///
    /// # Errors
    /// A schema arrow's decoders cannot handle.
    pub fn decoder(&self, batch_size: usize) -> Result<MessageDecoder, ArrowError> {
        Ok(MessageDecoder {
            layout: self.clone(),
            json: self.json_decoder(batch_size)?,
            batch_size,
            numbers: guard::NumberGuard::new(&self.payload_schema),
        })
    }

    fn json_decoder(&self, batch_size: usize) -> Result<Option<arrow::json::reader::Decoder>, ArrowError> {
        match self.format {
            MessageFormat::Json => Ok(Some(
                arrow::json::ReaderBuilder::new(self.payload_schema.clone())
                    .with_batch_size(batch_size.max(1))
                    .build_decoder()?,
            )),
            _ => Ok(None),
        }
    }
}

/// Turns messages into batches for one source subtask.
pub struct MessageDecoder {
    layout: MessageLayout,
    json: Option<arrow::json::reader::Decoder>,
    batch_size: usize,
    /// Numbers the payload columns cannot hold exactly.
    numbers: guard::NumberGuard,
}

impl std::fmt::Debug for MessageDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDecoder").field("format", &self.layout.format).finish()
    }
}

/// A message as the decoder sees it.
pub trait Envelope {
    /// The payload.
    fn payload(&self) -> &[u8];
    /// Where it came from, for error messages (`topic/partition@offset`).
    fn position(&self) -> String;
    /// The value of offered metadata field `field` (an index into the connector's offer).
    fn metadata(&self, field: usize) -> MetaValue<'_>;
}

impl MessageDecoder {
    /// Decodes `messages` into one batch (or none if every message was bad or there were none).
    /// Bad payloads go to `errors`.
    ///
    /// # Errors
    /// A bad payload under `on_error: fail`.
    pub fn decode<E: Envelope>(
        &mut self,
        messages: &[E],
        errors: &mut RecordErrorHandler,
    ) -> Result<Option<RecordBatch>, RuntimeError> {
        if messages.is_empty() {
            return Ok(None);
        }
        let (payload, kept) = match self.decode_all(messages) {
            Ok(batch) => (batch, None),
            Err(_) => {
                self.json = self.layout.json_decoder(self.batch_size)?;
                let (batch, kept) = self.decode_one_by_one(messages, errors)?;
                (batch, Some(kept))
            }
        };
        let Some(payload) = payload else { return Ok(None) };
        let mut columns: Vec<ArrayRef> = payload.columns().to_vec();
        for &(field, kind) in &self.layout.metadata {
            columns.push(match &kept {
                None => metadata_column(messages.iter(), field, kind),
                Some(kept) => metadata_column(kept.iter().map(|&i| &messages[i]), field, kind),
            });
        }
        Ok(Some(RecordBatch::try_new(self.layout.schema.clone(), columns)?))
    }

    /// All payloads in one pass; an error (or a message that is not exactly one record) sends
    /// the caller to the one-by-one path.
    fn decode_all<E: Envelope>(&mut self, messages: &[E]) -> Result<Option<RecordBatch>, ArrowError> {
        let schema = self.layout.payload_schema.clone();
        match self.layout.format {
            MessageFormat::Json => {
                let decoder = self.json.as_mut().expect("json decoder");
                let mut batches = Vec::new();
                for message in messages {
                    let payload = message.payload();
                    if guard::json_too_deep(payload, guard::MAX_JSON_DEPTH, false) {
                        return Err(guard::too_deep());
                    }
                    if self.numbers.suspicious(payload) {
                        self.numbers.check_record(payload)?;
                    }
                    let consumed = decoder.decode(payload)?;
                    if consumed < payload.len() {
                        // Full batch: flush and feed the rest.
                        batches.extend(decoder.flush()?);
                        if decoder.decode(&payload[consumed..])? < payload.len() - consumed {
                            return Err(ArrowError::JsonError("payload larger than a batch".into()));
                        }
                    }
                    if decoder.has_partial_record() {
                        return Err(ArrowError::JsonError("truncated record".into()));
                    }
                }
                batches.extend(decoder.flush()?);
                let batch = concat_batches(&schema, &batches)?;
                if batch.num_rows() != messages.len() {
                    return Err(ArrowError::JsonError("a message held more or less than one record".into()));
                }
                if !self.numbers.batch_ok(&batch) {
                    return Err(guard::NumberGuard::not_finite());
                }
                Ok(Some(batch))
            }
            MessageFormat::Csv => {
                let mut text = Vec::new();
                for message in messages {
                    let payload = message.payload();
                    if payload.contains(&b'\n') {
                        return Err(ArrowError::CsvError("line break in a CSV message".into()));
                    }
                    if guard::csv_quote_left_open(payload) {
                        return Err(guard::quote_left_open());
                    }
                    text.extend_from_slice(payload);
                    text.push(b'\n');
                }
                let batch = decode_csv(&schema, &text, messages.len())?;
                if batch.num_rows() != messages.len() {
                    return Err(ArrowError::CsvError("a message held more or less than one record".into()));
                }
                Ok(Some(batch))
            }
            MessageFormat::Raw => {
                let mut builder = StringBuilder::new();
                for message in messages {
                    let text = std::str::from_utf8(message.payload())
                        .map_err(|err| ArrowError::ParseError(format!("invalid UTF-8: {err}")))?;
                    builder.append_value(text);
                }
                Ok(Some(RecordBatch::try_new(schema, vec![Arc::new(builder.finish())])?))
            }
            MessageFormat::Bytes => {
                let mut builder = BinaryBuilder::new();
                for message in messages {
                    builder.append_value(message.payload());
                }
                Ok(Some(RecordBatch::try_new(schema, vec![Arc::new(builder.finish())])?))
            }
        }
    }

    fn decode_one_by_one<E: Envelope>(
        &mut self,
        messages: &[E],
        errors: &mut RecordErrorHandler,
    ) -> Result<(Option<RecordBatch>, Vec<usize>), RuntimeError> {
        let mut batches = Vec::new();
        let mut kept = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match self.decode_all(std::slice::from_ref(message)) {
                Ok(batch) => {
                    batches.extend(batch);
                    kept.push(index);
                }
                Err(err) => {
                    self.json = self.layout.json_decoder(self.batch_size)?;
                    errors.handle(BadRecord {
                        position: message.position(),
                        raw: message.payload(),
                        reason: describe(&err),
                    })?;
                }
            }
        }
        if batches.is_empty() {
            return Ok((None, kept));
        }
        Ok((Some(concat_batches(&self.layout.payload_schema, &batches)?), kept))
    }
}

fn decode_csv(schema: &SchemaRef, text: &[u8], rows: usize) -> Result<RecordBatch, ArrowError> {
    let mut decoder =
        arrow::csv::ReaderBuilder::new(schema.clone()).with_header(false).with_batch_size(rows.max(1)).build_decoder();
    let mut rest = text;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        let consumed = decoder.decode(rest)?;
        rest = &rest[consumed..];
        batches.extend(decoder.flush()?);
        if consumed == 0 {
            break;
        }
    }
    batches.extend(decoder.flush()?);
    concat_batches(schema, &batches)
}

fn metadata_column<'a, E: Envelope + 'a>(
    messages: impl Iterator<Item = &'a E>,
    field: usize,
    kind: MetaType,
) -> ArrayRef {
    match kind {
        MetaType::Utf8 => {
            let mut builder = StringBuilder::new();
            for message in messages {
                match message.metadata(field) {
                    MetaValue::Utf8(value) => builder.append_option(value),
                    MetaValue::Binary(value) => {
                        builder.append_option(value.map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
                    }
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
        MetaType::Binary => {
            let mut builder = BinaryBuilder::new();
            for message in messages {
                match message.metadata(field) {
                    MetaValue::Binary(value) => builder.append_option(value),
                    MetaValue::Utf8(value) => builder.append_option(value.map(str::as_bytes)),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
        MetaType::Int64 => {
            let mut builder = Int64Builder::new();
            for message in messages {
                match message.metadata(field) {
                    MetaValue::Int64(value) | MetaValue::TimestampMs(value) => builder.append_option(value),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
        MetaType::TimestampMs => {
            let mut builder = TimestampMillisecondBuilder::new();
            for message in messages {
                match message.metadata(field) {
                    MetaValue::Int64(value) | MetaValue::TimestampMs(value) => builder.append_option(value),
                    _ => builder.append_null(),
                }
            }
            Arc::new(builder.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use weir_engine::errors::ErrorPolicy;
    use weir_engine::metrics::ComponentMetrics;

    struct Msg(&'static str, i64);

    impl Envelope for Msg {
        fn payload(&self) -> &[u8] {
            self.0.as_bytes()
        }
        fn position(&self) -> String {
            format!("offset {}", self.1)
        }
        fn metadata(&self, _field: usize) -> MetaValue<'_> {
            MetaValue::Int64(Some(self.1))
        }
    }

    fn layout(format: &str) -> MessageLayout {
        let yaml =
            format!("{{ format: {format}, schema: {{ id: int64, name: string }}, metadata: {{ off: offset }} }}");
        let options: PayloadOptions = weir_config::yaml::deserialize(&yaml).unwrap();
        options.plan(&[("offset", MetaType::Int64)]).unwrap()
    }

    #[test]
    fn bad_payloads_are_skipped_and_metadata_stays_aligned() {
        let mut decoder = layout("json").decoder(1024).unwrap();
        let metrics = Arc::new(ComponentMetrics::default());
        let mut errors = RecordErrorHandler::new("src".into(), ErrorPolicy::Skip, Arc::clone(&metrics), None);
        let messages = [
            Msg(r#"{"id": 1, "name": "a"}"#, 10),
            Msg(r#"{"id": "#, 11),
            Msg("{\"id\": 3,\n \"name\": \"c\"}", 12),
            Msg(r#"{"id": 4} {"id": 5}"#, 13),
        ];
        let batch = decoder.decode(&messages, &mut errors).unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), offsets.value(0)), (1, 10));
        assert_eq!((ids.value(1), offsets.value(1)), (3, 12));
        assert_eq!(metrics.snapshot().discarded_events, 2);
        // The decoder is clean after the slow path: the next good batch decodes in one pass.
        let batch = decoder.decode(&[Msg(r#"{"id": 6}"#, 14)], &mut errors).unwrap().unwrap();
        assert!(batch.column(1).is_null(0));
    }

    #[test]
    fn csv_messages_decode_one_record_each() {
        let mut decoder = layout("csv").decoder(1024).unwrap();
        let mut errors = RecordErrorHandler::new("src".into(), ErrorPolicy::Fail, Arc::default(), None);
        let batch = decoder.decode(&[Msg("1,a", 1), Msg("2,b", 2)], &mut errors).unwrap().unwrap();
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "b");
        let err = decoder.decode(&[Msg("x,a", 3)], &mut errors).unwrap_err();
        assert!(err.to_string().contains("offset 3"), "{err}");
    }
}
