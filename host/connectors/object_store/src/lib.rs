//! `object_store` sink: files of JSON lines or Parquet in a local directory or S3-compatible
//! storage, written through the `object_store` crate (one code path for both), partitioned by
//! time or column and rolled over by size and age.
//!
//! ```yaml
//! sinks:
//!   archive:
//!     type: object_store
//!     inputs: [readings]
//!     url: s3://weir-archive/raw          # or file:///var/lib/weir/raw, or a relative directory
//!     format: parquet                     # json (default) | parquet
//!     partition: "dt={ts:%Y-%m-%d}/hour={ts:%H}/device={device}"   # {column}, {column:strftime}, {now:strftime}
//!     roll: { max_size: 64MiB, max_age: 10s }   # per open file; defaults 128MiB / 10s
//!     options: { endpoint: "http://127.0.0.1:9000", region: us-east-1, allow_http: "true" }
//! ```
//!
//! S3 credentials come from `options` (`access_key_id`, `secret_access_key`, ...) or the usual
//! `AWS_*` environment variables. Each partition has one open file, kept in memory and uploaded
//! whole when it rolls (size or age) or when the job ends, so a file appears complete or not at
//! all. A batch counts as written (and its source may acknowledge it) once every file holding its
//! rows is uploaded. File names are `part-<millis>-<random>.<ext>`, unique across restarts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::object_store::ObjectStoreExt;
use ::object_store::path::Path as ObjectPath;
use ::object_store::{ObjectStore, PutPayload};
use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use bytesize::ByteSize;
use indexmap::IndexMap;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{Durability, PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::{OutputFormat, RecordWriter};
use weir_state::{Location, StorageUrl};

/// `object_store` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `s3://bucket/prefix`, `file:///dir` or a directory relative to the pipeline file.
    pub url: Spanned<String>,
    /// `json` or `parquet` (CSV is not offered: files have no single header across appends).
    #[serde(default)]
    pub format: OutputFormat,
    /// Partition path template.
    pub partition: Option<Spanned<String>>,
    /// Roll-over policy.
    #[serde(default)]
    pub roll: Roll,
    /// Store options (S3: endpoint, region, credentials, allow_http).
    #[serde(default)]
    pub options: IndexMap<String, String>,
}

/// When an open file is uploaded and a new one started.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roll {
    /// Size of the encoded file.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Age of the file (`10s`).
    #[serde(default = "default_max_age")]
    pub max_age: String,
}

impl Default for Roll {
    fn default() -> Self {
        Self { max_size: default_max_size(), max_age: default_max_age() }
    }
}

fn default_max_size() -> ByteSize {
    ByteSize::mib(128)
}

fn default_max_age() -> String {
    "10s".into()
}

/// One piece of a partition path.
#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// A column's value, optionally formatted with strftime (time columns).
    Column(usize, Option<String>),
    /// Processing time, formatted with strftime.
    Now(String),
}

fn parse_partition(text: &str, input: &SchemaRef) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            segments.push(Segment::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("unclosed `{{` in `{text}`"))? + open;
        let inner = &rest[open + 1..close];
        let (name, format) = match inner.split_once(':') {
            Some((name, format)) => (name.trim(), Some(format.to_owned())),
            None => (inner.trim(), None),
        };
        if name == "now" {
            segments.push(Segment::Now(format.unwrap_or_else(|| "%Y-%m-%d".into())));
        } else {
            let index = input.index_of(name).map_err(|_| format!("`{name}` is not an input column (or `now`)"))?;
            if format.is_some()
                && !matches!(input.field(index).data_type(), DataType::Timestamp(_, _) | DataType::Date32)
            {
                return Err(format!("`{{{inner}}}`: a time format needs a timestamp or date column"));
            }
            segments.push(Segment::Column(index, format));
        }
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_owned()));
    }
    Ok(segments)
}

impl SinkSpec for ObjectStoreConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        if self.format == OutputFormat::Csv {
            return Err(SpecIssue::at(&self.url.referenced, "`format` must be json or parquet"));
        }
        if self.format == OutputFormat::Parquet {
            RecordWriter::new(self.format, input, Vec::new()).map_err(|err| {
                SpecIssue::at(&self.url.referenced, format!("cannot write these columns as Parquet: {err}"))
            })?;
        }
        let partition = match &self.partition {
            None => Vec::new(),
            Some(text) => {
                parse_partition(&text.value, input).map_err(|reason| SpecIssue::at(&text.referenced, reason))?
            }
        };
        let max_age = humantime::parse_duration(&self.roll.max_age)
            .map_err(|err| SpecIssue::at(&self.url.referenced, format!("`roll.max_age`: {err}")))?;
        let target = StorageUrl::parse(&self.url.value, &ctx.base_dir)
            .map_err(|err| SpecIssue::at(&self.url.referenced, err.reason))?;
        Ok(Arc::new(ObjectStoreFactory {
            target,
            options: self.options.clone(),
            format: self.format,
            schema: input.clone(),
            partition,
            max_size: self.roll.max_size.as_u64() as usize,
            max_age,
        }))
    }
}

#[derive(Debug)]
struct ObjectStoreFactory {
    target: StorageUrl,
    options: IndexMap<String, String>,
    format: OutputFormat,
    schema: SchemaRef,
    partition: Vec<Segment>,
    max_size: usize,
    max_age: Duration,
}

impl ObjectStoreFactory {
    fn open_store(&self) -> Result<(Arc<dyn ObjectStore>, String), RuntimeError> {
        let location = Location::open(&self.target, &self.options)
            .map_err(|err| RuntimeError::external("object_store", self.target.describe(), err.reason))?;
        Ok((location.store, location.root.to_string()))
    }
}

#[async_trait]
impl SinkFactory for ObjectStoreFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let (store, prefix) = self.open_store()?;
        Ok(Box::new(ObjectStoreSink {
            store,
            prefix,
            address: self.target.describe(),
            format: self.format,
            schema: self.schema.clone(),
            partition: self.partition.clone(),
            max_size: self.max_size,
            max_age: self.max_age,
            open: HashMap::new(),
            writes: 0,
            files_written: 0,
        }) as Box<dyn Sink>)
    }
}

struct OpenFile {
    writer: RecordWriter<Vec<u8>>,
    opened: Instant,
    /// The first write (by count) with rows in this file.
    first_write: u64,
}

struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    address: String,
    format: OutputFormat,
    schema: SchemaRef,
    partition: Vec<Segment>,
    max_size: usize,
    max_age: Duration,
    open: HashMap<String, OpenFile>,
    /// Writes so far.
    writes: u64,
    files_written: u64,
}

impl ObjectStoreSink {
    /// The partition path of every row.
    fn partitions(&self, batch: &RecordBatch) -> Result<Vec<String>, RuntimeError> {
        let rows = batch.num_rows();
        if self.partition.is_empty() {
            return Ok(vec![String::new(); rows]);
        }
        let now = chrono::Utc::now();
        let options = FormatOptions::default().with_null("__null__");
        let mut paths = vec![String::new(); rows];
        for segment in &self.partition {
            match segment {
                Segment::Literal(text) => paths.iter_mut().for_each(|path| path.push_str(text)),
                Segment::Now(format) => {
                    let text = now.format(format).to_string();
                    paths.iter_mut().for_each(|path| path.push_str(&text));
                }
                Segment::Column(index, None) => {
                    let formatter = ArrayFormatter::try_new(batch.column(*index).as_ref(), &options)?;
                    for (row, path) in paths.iter_mut().enumerate() {
                        path.push_str(&formatter.value(row).to_string());
                    }
                }
                Segment::Column(index, Some(format)) => {
                    let column = batch.column(*index);
                    for (row, path) in paths.iter_mut().enumerate() {
                        match time_of(column.as_ref(), row) {
                            Some(time) => path.push_str(&time.format(format).to_string()),
                            None => path.push_str("__null__"),
                        }
                    }
                }
            }
        }
        Ok(paths)
    }

    async fn upload(&mut self, partition: &str, file: OpenFile) -> Result<(), RuntimeError> {
        let bytes = file.writer.finish()?;
        let extension = if self.format == OutputFormat::Parquet { "parquet" } else { "jsonl" };
        let name = format!("part-{}-{:016x}.{extension}", chrono::Utc::now().timestamp_millis(), rand::random::<u64>());
        let mut path = String::new();
        for piece in [self.prefix.as_str(), partition.trim_matches('/'), name.as_str()] {
            if !piece.is_empty() {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(piece);
            }
        }
        let location = ObjectPath::from(path.as_str());
        let payload = PutPayload::from(bytes);
        let mut delays = backon::BackoffBuilder::build(weir_connector_support::link::reconnect_backoff());
        loop {
            match self.store.put(&location, payload.clone()).await {
                Ok(_) => break,
                Err(err) => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(path = %location, error = %err, "upload failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(RuntimeError::external("object_store", &self.address, err)),
                },
            }
        }
        self.files_written += 1;
        tracing::debug!(path = %location, "file written");
        Ok(())
    }

    /// Uploads every open file for which `due` holds.
    async fn roll(&mut self, due: impl Fn(&OpenFile) -> bool) -> Result<(), RuntimeError> {
        let ready: Vec<String> = self.open.iter().filter(|(_, file)| due(file)).map(|(key, _)| key.clone()).collect();
        for key in ready {
            let file = self.open.remove(&key).expect("listed");
            self.upload(&key, file).await?;
        }
        Ok(())
    }
}

fn time_of(column: &dyn Array, row: usize) -> Option<chrono::DateTime<chrono::Utc>> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        DataType::Timestamp(unit, _) => {
            use arrow::datatypes::{
                TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
                TimestampSecondType,
            };
            let nanos = match unit {
                TimeUnit::Second => {
                    column.as_primitive::<TimestampSecondType>().value(row).checked_mul(1_000_000_000)?
                }
                TimeUnit::Millisecond => {
                    column.as_primitive::<TimestampMillisecondType>().value(row).checked_mul(1_000_000)?
                }
                TimeUnit::Microsecond => {
                    column.as_primitive::<TimestampMicrosecondType>().value(row).checked_mul(1_000)?
                }
                TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().value(row),
            };
            Some(chrono::DateTime::from_timestamp_nanos(nanos))
        }
        DataType::Date32 => {
            let days = column.as_primitive::<arrow::datatypes::Date32Type>().value(row);
            chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        }
        _ => None,
    }
}

#[async_trait]
impl Sink for ObjectStoreSink {
    fn durability(&self) -> Durability {
        Durability::Deferred
    }

    fn durable_writes(&self) -> u64 {
        self.open.values().map(|file| file.first_write).min().unwrap_or(self.writes)
    }

    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let write = self.writes;
        self.writes += 1;
        let paths = self.partitions(batch)?;
        let mut rows_by_partition: IndexMap<&str, Vec<u32>> = IndexMap::new();
        for (row, path) in paths.iter().enumerate() {
            rows_by_partition.entry(path.as_str()).or_default().push(row as u32);
        }
        for (partition, rows) in rows_by_partition {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))?
            };
            if !self.open.contains_key(partition) {
                let writer = RecordWriter::new(self.format, &self.schema, Vec::new())?;
                self.open.insert(partition.to_owned(), OpenFile { writer, opened: Instant::now(), first_write: write });
            }
            let file = self.open.get_mut(partition).expect("opened");
            file.writer.write(&part)?;
        }
        let (max_size, max_age) = (self.max_size, self.max_age);
        self.roll(|file| {
            file.writer.get_ref().len() + file.writer.buffered_bytes() >= max_size || file.opened.elapsed() >= max_age
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), RuntimeError> {
        let max_age = self.max_age;
        self.roll(|file| file.opened.elapsed() >= max_age).await
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        self.roll(|_| true).await?;
        tracing::info!(target_store = %self.address, files = self.files_written, "object store sink closed");
        Ok(())
    }
}
