//! Decoding newline-delimited records (JSON lines, CSV) into batches of a declared schema.
//!
//! Chunks of complete lines are decoded in one pass by arrow-json / arrow-csv. When a chunk
//! fails, it is decoded again line by line so that only the bad lines go to the error policy,
//! each with its exact position; the good lines of that chunk are kept, in order.

use arrow::array::{ArrayBuilder, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use serde::Deserialize;

use super::guard;
use weir_engine::component::RuntimeError;
use weir_engine::errors::{BadRecord, RecordErrorHandler};

/// Record format of a line-oriented source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// One CSV record per line (quoted fields may not contain line breaks).
    Csv,
    /// Plain text: each line is one row of one string column, `line` (ordinary logs).
    Text,
}

impl LineFormat {
    /// The fixed schema of `text` lines.
    pub fn text_schema() -> SchemaRef {
        std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "line",
            arrow::datatypes::DataType::Utf8,
            false,
        )]))
    }
}

/// CSV options.
#[derive(Debug, Clone, Copy)]
pub struct CsvOptions {
    /// Field delimiter.
    pub delimiter: u8,
}

/// A run of complete lines read from one input, with where it starts.
#[derive(Debug, Default)]
pub struct LineChunk {
    /// The bytes of whole lines, each ending in `\n` (the last may lack it at end of input).
    pub bytes: Vec<u8>,
    /// 1-based line number of the first line.
    pub first_line: u64,
    /// Byte offset of the first line in the input.
    pub first_offset: u64,
}

impl LineChunk {
    /// Each line as `(line number, byte offset, bytes without its \n or \r\n)`.
    fn records(&self) -> impl Iterator<Item = (u64, u64, &[u8])> {
        let mut offset = self.first_offset;
        self.bytes.split_inclusive(|&byte| byte == b'\n').enumerate().map(move |(index, line)| {
            let position = offset;
            offset += line.len() as u64;
            let record = line.strip_suffix(b"\n").unwrap_or(line);
            (self.first_line + index as u64, position, record.strip_suffix(b"\r").unwrap_or(record))
        })
    }
}

/// Decodes line chunks of one input into batches.
pub struct LineDecoder {
    schema: SchemaRef,
    format: LineFormat,
    csv: CsvOptions,
    origin: String,
    batch_size: usize,
    decoder: FormatDecoder,
    /// JSON: numbers the columns cannot hold exactly.
    numbers: Option<guard::NumberGuard>,
}

enum FormatDecoder {
    Json(arrow::json::reader::Decoder),
    Csv(Box<arrow::csv::reader::Decoder>),
    /// Text lines need no decoder (see [`LineDecoder::decode_text`]).
    Text,
}

impl FormatDecoder {
    fn decode(&mut self, bytes: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Self::Json(decoder) => decoder.decode(bytes),
            Self::Csv(decoder) => decoder.decode(bytes),
            Self::Text => Err(ArrowError::ParseError("text lines are not decoded here".into())),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Self::Json(decoder) => decoder.flush(),
            Self::Csv(decoder) => decoder.flush(),
            Self::Text => Ok(None),
        }
    }
}

impl std::fmt::Debug for LineDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineDecoder").field("format", &self.format).field("origin", &self.origin).finish()
    }
}

impl LineDecoder {
    /// A decoder for lines from `origin` (a file path or `stdin`, used in error positions).
    ///
    /// # Errors
    /// A schema arrow cannot decode into.
    pub fn new(
        schema: SchemaRef,
        format: LineFormat,
        csv: CsvOptions,
        origin: String,
        batch_size: usize,
    ) -> Result<Self, ArrowError> {
        let decoder = build(&schema, format, csv, batch_size)?;
        let numbers = (format == LineFormat::Json).then(|| guard::NumberGuard::new(&schema));
        Ok(Self { schema, format, csv, origin, batch_size, decoder, numbers })
    }

    /// Decodes a chunk into batches of at most the batch size. Bad lines go to `errors`; the result holds the good rows in order.
    ///
    /// # Errors
    /// A bad line under the `fail` policy.
    pub fn decode(
        &mut self,
        chunk: &LineChunk,
        errors: &mut RecordErrorHandler,
    ) -> Result<Vec<RecordBatch>, RuntimeError> {
        if self.format == LineFormat::Text {
            return self.decode_text(chunk, errors);
        }
        let decoded = self
            .refuse_hostile(&chunk.bytes)
            .and_then(|()| self.refuse_suspicious_numbers(&chunk.bytes))
            .and_then(|()| self.decode_all(&chunk.bytes))
            .and_then(|batches| match &self.numbers {
                Some(numbers) if !batches.iter().all(|batch| numbers.batch_ok(batch)) => {
                    Err(guard::NumberGuard::not_finite())
                }
                _ => Ok(batches),
            });
        match decoded {
            Ok(batches) => Ok(batches),
            Err(_) => {
                // The decoder may hold half a chunk: start from a clean one.
                self.decoder = build(&self.schema, self.format, self.csv, self.batch_size)?;
                self.decode_line_by_line(chunk, errors)
            }
        }
    }

    fn decode_all(&mut self, mut bytes: &[u8]) -> Result<Vec<RecordBatch>, ArrowError> {
        let mut batches = Vec::new();
        while !bytes.is_empty() {
            let consumed = self.decoder.decode(bytes)?;
            bytes = &bytes[consumed..];
            if consumed == 0 || !bytes.is_empty() {
                // The decoder is full (batch_size rows) or needs a flush to go on.
                batches.extend(self.decoder.flush()?);
            }
        }
        match &mut self.decoder {
            // A last line without a terminator is complete at this point: terminate it.
            FormatDecoder::Csv(decoder) => {
                decoder.decode(b"\n")?;
            }
            FormatDecoder::Json(decoder) if decoder.has_partial_record() => {
                return Err(ArrowError::JsonError("truncated record".into()));
            }
            FormatDecoder::Json(_) | FormatDecoder::Text => {}
        }
        batches.extend(self.decoder.flush()?);
        Ok(batches)
    }

    fn decode_line_by_line(
        &mut self,
        chunk: &LineChunk,
        errors: &mut RecordErrorHandler,
    ) -> Result<Vec<RecordBatch>, RuntimeError> {
        let mut batches = Vec::new();
        for (line_number, position, record) in chunk.records() {
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let rejected = match std::str::from_utf8(record) {
                Err(err) => Some(format!("invalid UTF-8: {err}")),
                Ok(_) => match self.decode_one(record) {
                    Ok(batch) => {
                        batches.extend(batch);
                        None
                    }
                    Err(err) => {
                        self.decoder = build(&self.schema, self.format, self.csv, self.batch_size)?;
                        Some(describe(&err))
                    }
                },
            };
            if let Some(reason) = rejected {
                errors.handle(BadRecord {
                    position: format!("{}:{} (byte {})", self.origin, line_number, position),
                    raw: record,
                    reason,
                })?;
            }
        }
        Ok(concat(&self.schema, batches)?.into_iter().collect())
    }

    /// Text lines: each valid UTF-8 line is a row (without its `\r\n`); others are bad records.
    fn decode_text(
        &mut self,
        chunk: &LineChunk,
        errors: &mut RecordErrorHandler,
    ) -> Result<Vec<RecordBatch>, RuntimeError> {
        let mut batches = Vec::new();
        let mut lines = arrow::array::StringBuilder::new();
        for (line_number, position, record) in chunk.records() {
            match std::str::from_utf8(record) {
                Ok(text) => lines.append_value(text),
                Err(err) => errors.handle(BadRecord {
                    position: format!("{}:{} (byte {})", self.origin, line_number, position),
                    raw: record,
                    reason: format!("invalid UTF-8: {err}"),
                })?,
            }
            if lines.len() >= self.batch_size {
                batches.push(RecordBatch::try_new(self.schema.clone(), vec![std::sync::Arc::new(lines.finish())])?);
            }
        }
        if !lines.is_empty() {
            batches.push(RecordBatch::try_new(self.schema.clone(), vec![std::sync::Arc::new(lines.finish())])?);
        }
        Ok(batches)
    }

    /// Records the decoders must not see (see [`super::guard`]); a chunk holding one is decoded
    /// line by line.
    fn refuse_hostile(&self, bytes: &[u8]) -> Result<(), ArrowError> {
        match self.format {
            LineFormat::Json if guard::json_too_deep(bytes, guard::MAX_JSON_DEPTH, true) => Err(guard::too_deep()),
            LineFormat::Csv if guard::csv_quote_left_open(bytes) => Err(guard::quote_left_open()),
            LineFormat::Json | LineFormat::Csv | LineFormat::Text => Ok(()),
        }
    }

    /// A chunk whose numbers may not fit their columns goes line by line, where
    /// [`Self::decode_one`] checks each flagged record exactly.
    fn refuse_suspicious_numbers(&self, bytes: &[u8]) -> Result<(), ArrowError> {
        match &self.numbers {
            Some(numbers) if numbers.suspicious(bytes) => {
                Err(ArrowError::JsonError("a number may not fit its column".into()))
            }
            _ => Ok(()),
        }
    }

    fn decode_one(&mut self, record: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
        self.refuse_hostile(record)?;
        if let Some(numbers) = self.numbers.as_ref().filter(|numbers| numbers.suspicious(record)) {
            numbers.check_record(record)?;
        }
        let decoded = self.decode_one_unchecked(record)?;
        match (&self.numbers, &decoded) {
            (Some(numbers), Some(batch)) if !numbers.batch_ok(batch) => Err(guard::NumberGuard::not_finite()),
            _ => Ok(decoded),
        }
    }

    fn decode_one_unchecked(&mut self, record: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
        let consumed = self.decoder.decode(record)?;
        if consumed < record.len() {
            return Err(ArrowError::JsonError("more than one record on the line".into()));
        }
        if self.format == LineFormat::Csv {
            self.decoder.decode(b"\n")?;
        } else if let FormatDecoder::Json(decoder) = &self.decoder
            && decoder.has_partial_record()
        {
            return Err(ArrowError::JsonError("truncated record".into()));
        }
        self.decoder.flush()
    }
}

fn build(
    schema: &SchemaRef,
    format: LineFormat,
    csv: CsvOptions,
    batch_size: usize,
) -> Result<FormatDecoder, ArrowError> {
    Ok(match format {
        LineFormat::Json => FormatDecoder::Json(
            arrow::json::ReaderBuilder::new(schema.clone()).with_batch_size(batch_size).build_decoder()?,
        ),
        LineFormat::Csv => FormatDecoder::Csv(Box::new(
            arrow::csv::ReaderBuilder::new(schema.clone())
                .with_header(false)
                .with_delimiter(csv.delimiter)
                .with_batch_size(batch_size)
                .build_decoder(),
        )),
        LineFormat::Text => FormatDecoder::Text,
    })
}

fn concat(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>, ArrowError> {
    match batches.len() {
        0 => Ok(None),
        1 => Ok(batches.into_iter().next()),
        _ => concat_batches(schema, &batches).map(Some),
    }
}

/// The reason in a decoding error, without arrow's prefix.
pub(crate) fn describe(err: &ArrowError) -> String {
    match err {
        ArrowError::JsonError(text) | ArrowError::CsvError(text) | ArrowError::ParseError(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Reads an input in chunks of complete lines, tracking line numbers and byte offsets.
#[derive(Debug)]
pub struct ChunkReader<R> {
    reader: R,
    buffer: Vec<u8>,
    next_line: u64,
    next_offset: u64,
    eof: bool,
}

/// Bytes asked of the reader per read.
const READ_BLOCK: usize = 1 << 20;

impl<R: tokio::io::AsyncRead + Unpin> ChunkReader<R> {
    /// Reads from the start of `reader`.
    pub fn new(reader: R) -> Self {
        Self::at(reader, 0, 1)
    }

    /// Reads from a `reader` already positioned at byte `offset`, which is the start of line
    /// `line` (1-based) of the input.
    pub fn at(reader: R, offset: u64, line: u64) -> Self {
        Self { reader, buffer: Vec::with_capacity(READ_BLOCK), next_line: line, next_offset: offset, eof: false }
    }

    /// Bytes consumed so far (the offset of the next chunk).
    pub fn offset(&self) -> u64 {
        self.next_offset
    }

    /// The 1-based number of the next chunk's first line.
    pub fn next_line(&self) -> u64 {
        self.next_line
    }

    /// The next chunk of at least `min_lines` complete lines (fewer at the end of the input).
    /// With `partial_last_line`, a last line without `\n` at end of input is returned too
    /// (read-once inputs); otherwise it stays buffered until its line break arrives (followed
    /// files). Returns `None` when nothing complete is available.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn next_chunk(
        &mut self,
        min_lines: usize,
        partial_last_line: bool,
    ) -> std::io::Result<Option<LineChunk>> {
        use tokio::io::AsyncReadExt;
        let mut scanned = 0;
        let mut lines = 0;
        loop {
            lines += memchr::memchr_iter(b'\n', &self.buffer[scanned..]).count();
            scanned = self.buffer.len();
            if lines >= min_lines || self.eof {
                break;
            }
            self.buffer.reserve(READ_BLOCK);
            let read = (&mut self.reader).take(READ_BLOCK as u64).read_buf(&mut self.buffer).await?;
            if read == 0 {
                self.eof = true;
            }
        }
        let end = match memchr::memrchr(b'\n', &self.buffer) {
            Some(last) if !(self.eof && partial_last_line) => last + 1,
            _ if self.eof && partial_last_line => self.buffer.len(),
            _ => 0,
        };
        if end == 0 {
            return Ok(None);
        }
        let rest = self.buffer.split_off(end);
        let bytes = std::mem::replace(&mut self.buffer, rest);
        let chunk = LineChunk { first_line: self.next_line, first_offset: self.next_offset, bytes };
        self.next_line +=
            memchr::memchr_iter(b'\n', &chunk.bytes).count() as u64 + u64::from(!chunk.bytes.ends_with(b"\n"));
        self.next_offset += chunk.bytes.len() as u64;
        Ok(Some(chunk))
    }

    /// Bytes read but not yet returned (an incomplete last line).
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Forgets an end of input seen earlier, to read what was appended since.
    pub fn rearm(&mut self) {
        self.eof = false;
    }
}
