//! Encoding batches into files or streams: JSON lines, CSV, or Parquet.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Deserialize;

use weir_engine::component::RuntimeError;

/// Output format of a file or stream sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// CSV with a header line.
    Csv,
    /// Apache Parquet (snappy-compressed); complete only once closed.
    Parquet,
}

/// Every row of a batch as a JSON object, in one buffer: `(bytes, end offsets)`; row `i` is
/// `bytes[ends[i-1]..ends[i]]` (for message sinks: one message per row).
///
/// # Errors
/// A column type JSON cannot represent.
pub fn rows_as_json(batch: &RecordBatch) -> Result<JsonRows, RuntimeError> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::with_capacity(batch.num_rows() * 64));
    writer.write(batch)?;
    writer.finish()?;
    let bytes = writer.into_inner();
    let mut ends = Vec::with_capacity(batch.num_rows());
    // Line breaks inside strings are escaped in JSON, so every raw `\n` ends a row.
    ends.extend(memchr::memchr_iter(b'\n', &bytes));
    Ok(JsonRows { bytes, ends })
}

/// The rows of a batch as JSON objects; see [`rows_as_json`].
#[derive(Debug)]
pub struct JsonRows {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl JsonRows {
    /// Row `row` as JSON (no line break).
    pub fn row(&self, row: usize) -> &[u8] {
        let start = if row == 0 { 0 } else { self.ends[row - 1] + 1 };
        &self.bytes[start..self.ends[row]]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All rows as JSON lines, each ending in a line break.
    pub fn lines(&self) -> &[u8] {
        &self.bytes
    }
}

/// Writes batches of one schema in one format to `W`.
pub enum RecordWriter<W: Write + Send> {
    /// JSON lines.
    Json(arrow::json::LineDelimitedWriter<W>),
    /// CSV (a writer per batch over `W`, so `W` stays reachable for flushes).
    Csv {
        /// The output.
        out: W,
        /// Whether the header line is out.
        header_written: bool,
    },
    /// Parquet.
    Parquet(Box<ArrowWriter<W>>),
}

impl<W: Write + Send> RecordWriter<W> {
    /// Starts writing `schema` rows in `format`.
    ///
    /// # Errors
    /// A schema Parquet cannot store.
    pub fn new(format: OutputFormat, schema: &SchemaRef, out: W) -> Result<Self, RuntimeError> {
        Ok(match format {
            OutputFormat::Json => Self::Json(arrow::json::LineDelimitedWriter::new(out)),
            OutputFormat::Csv => Self::Csv { out, header_written: false },
            OutputFormat::Parquet => {
                let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                Self::Parquet(Box::new(ArrowWriter::try_new(out, schema.clone(), Some(properties))?))
            }
        })
    }

    /// Encodes one batch.
    ///
    /// # Errors
    /// Encoding or I/O failures.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        match self {
            Self::Json(writer) => writer.write(batch)?,
            Self::Csv { out, header_written } => {
                arrow::csv::WriterBuilder::new().with_header(!*header_written).build(&mut *out).write(batch)?;
                *header_written = true;
            }
            Self::Parquet(writer) => writer.write(batch)?,
        }
        Ok(())
    }

    /// The output, for inspection (byte counts).
    pub fn get_ref(&self) -> &W {
        match self {
            Self::Json(writer) => writer.get_ref(),
            Self::Csv { out, .. } => out,
            Self::Parquet(writer) => writer.inner(),
        }
    }

    /// Bytes buffered inside the encoder and not yet written to `W` (Parquet row groups).
    pub fn buffered_bytes(&self) -> usize {
        match self {
            Self::Parquet(writer) => writer.in_progress_size(),
            _ => 0,
        }
    }

    /// Flushes buffered rows to `W` (Parquet: closes the current row group).
    ///
    /// # Errors
    /// I/O failures.
    pub fn flush(&mut self) -> Result<(), RuntimeError> {
        match self {
            Self::Json(writer) => writer.get_mut().flush().map_err(|err| RuntimeError::io("flushing", err))?,
            Self::Csv { out, .. } => out.flush().map_err(|err| RuntimeError::io("flushing", err))?,
            Self::Parquet(writer) => writer.flush()?,
        }
        Ok(())
    }

    /// Completes the output (Parquet footer) and returns the inner writer.
    ///
    /// # Errors
    /// Encoding or I/O failures.
    pub fn finish(self) -> Result<W, RuntimeError> {
        let mut out = match self {
            Self::Json(mut writer) => {
                writer.finish()?;
                writer.into_inner()
            }
            Self::Csv { out, .. } => out,
            Self::Parquet(writer) => writer.into_inner()?,
        };
        out.flush().map_err(|err| RuntimeError::io("flushing", err))?;
        Ok(out)
    }
}
