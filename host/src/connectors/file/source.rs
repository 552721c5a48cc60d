//! The `file` source.
//!
//! ```yaml
//! bids:
//!   type: file
//!   path: data/bids-*.jsonl       # a path or a glob, relative to the pipeline file
//!   format: json                  # json (default) or csv
//!   schema: { auction: int64, price: int64, dateTime: "timestamp(ms)" }   # or infer_schema: true
//!   on_error: dead-letter         # fail (default), skip, dead-letter
//!   dead_letter: rejects          # a sink receiving the bad lines
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::engine::component::{
    BoxFuture, PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceFactory, SourceKind, SourceSpec,
};
use crate::formats::decode::{ChunkReader, CsvOptions, LineDecoder, LineFormat};
use crate::formats::schema::{SchemaSpec, build_schema};
use crate::pipeline::SpecIssue;
use crate::pipeline::yaml::Spanned;

/// Registration.
pub const SOURCE: SourceKind =
    SourceKind { name: "file", parse: |node| Ok(Box::new(node.deserialize::<FileSourceConfig>()?)) };

/// `file` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    /// Read by the pipeline planner (`engine::event_time`).
    #[serde(default, rename = "event_time")]
    _event_time: IgnoredAny,
    #[serde(default, rename = "on_error")]
    _on_error: IgnoredAny,
    #[serde(default, rename = "dead_letter")]
    _dead_letter: IgnoredAny,
    /// File path or glob.
    pub path: Spanned<String>,
    /// Record format.
    #[serde(default)]
    pub format: LineFormat,
    /// Declared columns; required unless `infer_schema` is true.
    pub schema: Option<Spanned<SchemaSpec>>,
    /// Infer the schema from the first lines of the first file.
    #[serde(default)]
    pub infer_schema: bool,
    /// CSV: the first line of each file is a header (default true).
    #[serde(default = "yes")]
    pub header: bool,
    /// CSV field delimiter (one character, default `,`).
    #[serde(default = "comma")]
    pub delimiter: Spanned<String>,
    /// Keep reading appended lines and new files.
    #[serde(default)]
    pub follow: bool,
    /// How often a followed file is checked for new data (default 200ms).
    #[serde(default = "poll_interval")]
    pub poll_interval: Spanned<String>,
}

fn yes() -> bool {
    true
}

fn comma() -> Spanned<String> {
    crate::pipeline::yaml::unspanned(",".into())
}

fn poll_interval() -> Spanned<String> {
    crate::pipeline::yaml::unspanned("200ms".into())
}

/// Lines read for schema inference.
const INFER_LINES: usize = 1000;

impl SourceSpec for FileSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let pattern = ctx.resolve(&self.path.value);
        let pattern_text = pattern.to_string_lossy().into_owned();
        let at_path = |message: String| SpecIssue::at(&self.path.referenced, message);
        glob::Pattern::new(&pattern_text).map_err(|err| at_path(format!("`path` is not a valid glob: {err}")))?;
        let delimiter = match self.delimiter.value.as_bytes() {
            [byte] => *byte,
            _ => return Err(SpecIssue::at(&self.delimiter.referenced, "`delimiter` must be a single ASCII character")),
        };
        let poll = humantime::parse_duration(&self.poll_interval.value)
            .map_err(|err| SpecIssue::at(&self.poll_interval.referenced, format!("`poll_interval`: {err}")))?;
        let schema = match (&self.schema, self.infer_schema) {
            (Some(spec), false) => build_schema(&spec.value)?,
            (None, true) => {
                let files = matching_files(&pattern_text).map_err(at_path)?;
                let first = files
                    .first()
                    .ok_or_else(|| at_path(format!("no file matches `{pattern_text}` to infer a schema from")))?;
                infer_schema(first, self.format, self.header, delimiter).map_err(at_path)?
            }
            (Some(spec), true) => {
                return Err(SpecIssue::at(&spec.referenced, "give either `schema` or `infer_schema: true`, not both"));
            }
            (None, false) => return Err(SpecIssue::new("`schema` is required (or set `infer_schema: true`)")),
        };
        if !self.follow && !pattern_text.contains(['*', '?', '[']) && !Path::new(&pattern_text).exists() {
            return Err(at_path(format!("file not found: {pattern_text}")));
        }
        let factory = FileSourceFactory {
            pattern: pattern_text,
            schema: schema.clone(),
            format: self.format,
            csv: CsvOptions { delimiter },
            header: self.format == LineFormat::Csv && self.header,
            follow: self.follow,
            poll,
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema, parallelism: 1, factory: Arc::new(factory) })
    }
}

fn matching_files(pattern: &str) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = glob::glob(pattern)
        .map_err(|err| format!("`path` is not a valid glob: {err}"))?
        .filter_map(Result::ok)
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

pub(super) fn infer_schema(path: &Path, format: LineFormat, header: bool, delimiter: u8) -> Result<SchemaRef, String> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    let sample: Vec<u8> = reader
        .split(b'\n')
        .take(INFER_LINES)
        .filter_map(Result::ok)
        .flat_map(|mut line| {
            line.push(b'\n');
            line
        })
        .collect();
    let schema = match format {
        LineFormat::Json => arrow::json::reader::infer_json_schema(std::io::Cursor::new(&sample), Some(INFER_LINES))
            .map(|(schema, _)| schema),
        LineFormat::Csv => arrow::csv::reader::Format::default()
            .with_header(header)
            .with_delimiter(delimiter)
            .infer_schema(std::io::Cursor::new(&sample), Some(INFER_LINES))
            .map(|(schema, _)| schema),
    };
    schema.map(Arc::new).map_err(|err| format!("cannot infer a schema from {}: {err}", path.display()))
}

#[derive(Debug, Clone)]
struct FileSourceFactory {
    pattern: String,
    schema: SchemaRef,
    format: LineFormat,
    csv: CsvOptions,
    header: bool,
    follow: bool,
    poll: Duration,
    batch_size: usize,
}

impl SourceFactory for FileSourceFactory {
    fn create(&self, _subtask: usize, _parallelism: usize) -> Box<dyn Source> {
        Box::new(FileSource { config: self.clone() })
    }
}

struct FileSource {
    config: FileSourceFactory,
}

/// One open file being read (or followed).
struct OpenFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    reader: ChunkReader<tokio::fs::File>,
    decoder: LineDecoder,
    header_pending: bool,
}

impl FileSource {
    async fn open(&self, path: &Path) -> Result<OpenFile, RuntimeError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|err| RuntimeError::io(format!("opening {}", path.display()), err))?;
        let identity = identity(
            &file.metadata().await.map_err(|err| RuntimeError::io(format!("reading {}", path.display()), err))?,
        );
        let config = &self.config;
        let decoder = LineDecoder::new(
            config.schema.clone(),
            config.format,
            config.csv,
            path.display().to_string(),
            config.batch_size,
        )?;
        Ok(OpenFile {
            path: path.to_path_buf(),
            identity,
            reader: ChunkReader::new(file),
            decoder,
            header_pending: config.header,
        })
    }

    /// Reads what `file` has now; returns whether anything was read.
    async fn drain(&self, file: &mut OpenFile, ctx: &mut SourceContext, to_end: bool) -> Result<bool, RuntimeError> {
        let mut progressed = false;
        loop {
            if ctx.stop.is_cancelled() {
                return Ok(progressed);
            }
            let chunk = file
                .reader
                .next_chunk(self.config.batch_size, to_end)
                .await
                .map_err(|err| RuntimeError::io(format!("reading {}", file.path.display()), err))?;
            let Some(mut chunk) = chunk else { return Ok(progressed) };
            progressed = true;
            if file.header_pending {
                file.header_pending = false;
                let header_end = memchr::memchr(b'\n', &chunk.bytes).map_or(chunk.bytes.len(), |at| at + 1);
                chunk.bytes.drain(..header_end);
                chunk.first_line += 1;
                chunk.first_offset += header_end as u64;
            }
            for batch in file.decoder.decode(&chunk, &mut ctx.errors)? {
                ctx.metrics.record_received(batch.num_rows());
                ctx.output.send(batch).await?;
            }
            ctx.errors.flush().await?;
        }
    }

    async fn read_once(&self, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let files = matching_files(&self.config.pattern)
            .map_err(|err| RuntimeError::io(err, std::io::ErrorKind::InvalidInput.into()))?;
        if files.is_empty() {
            tracing::warn!(component = %ctx.component, pattern = %self.config.pattern, "no file matches");
        }
        for path in files {
            let mut file = self.open(&path).await?;
            self.drain(&mut file, ctx, true).await?;
            if ctx.stop.is_cancelled() {
                break;
            }
        }
        Ok(())
    }

    async fn follow(&self, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let mut files: BTreeMap<PathBuf, OpenFile> = BTreeMap::new();
        while !ctx.stop.is_cancelled() {
            for path in matching_files(&self.config.pattern).unwrap_or_default() {
                if !files.contains_key(&path) {
                    tracing::info!(component = %ctx.component, path = %path.display(), "following file");
                    files.insert(path.clone(), self.open(&path).await?);
                }
            }
            let mut progressed = false;
            for (path, file) in files.iter_mut() {
                file.reader.rearm();
                progressed |= self.drain(file, ctx, false).await?;
                // Rotation (a new file at the path) or truncation: finish the old one, reopen.
                let current = tokio::fs::metadata(path).await.ok();
                let rotated = current.as_ref().is_some_and(|meta| identity(meta) != file.identity);
                let truncated = current.as_ref().is_some_and(|meta| meta.len() < file.reader.offset());
                if rotated || truncated {
                    file.reader.rearm();
                    self.drain(file, ctx, true).await?;
                    tracing::info!(component = %ctx.component, path = %path.display(), rotated, truncated, "reopening file");
                    *file = self.open(path).await?;
                    progressed = true;
                }
            }
            if !progressed {
                tokio::select! {
                    () = tokio::time::sleep(self.config.poll) => {}
                    () = ctx.stop.cancelled() => {}
                }
            }
        }
        // Stopping: what is complete was sent. A last line still being written is not a record
        // yet: it stays unread, and the log says so.
        for (path, file) in &files {
            if file.reader.pending_bytes() > 0 {
                tracing::warn!(
                    component = %ctx.component,
                    path = %path.display(),
                    offset = file.reader.offset(),
                    bytes = file.reader.pending_bytes(),
                    "stopped with an incomplete last line unread"
                );
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

impl Source for FileSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { if self.config.follow { self.follow(ctx).await } else { self.read_once(ctx).await } })
    }
}
