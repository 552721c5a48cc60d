//! The `file` sink.
//!
//! ```yaml
//! out:
//!   type: file
//!   inputs: [eur]
//!   path: out/eur.jsonl              # relative to the pipeline file
//!   format: json                     # json (default), csv, parquet
//!   roll: { max_size: 64MiB, max_age: 5m }   # optional: numbered files out/eur-00000.jsonl, ...
//!   overwrite: false                 # default: never replace a file an earlier run wrote
//! ```
//! A file is written under a hidden in-progress name (`.eur.jsonl.inprogress`) and renamed to its
//! final name only when complete, so readers never see a half-written file (Flink's FileSink
//! does the same). Roll-over is checked after each batch and at every flush.
//!
//! What is acknowledged is durable, and a restart never destroys it:
//! - JSON lines and CSV rows are durable once flushed and fsynced (the engine flushes at least
//!   five times a second while sources wait), so the in-progress file holds only complete,
//!   acknowledged batches plus possibly the tail of one that was not acknowledged.
//! - A Parquet file is readable only once its footer is written, so its rows become durable
//!   when the file is complete (rolled, or the job ended): until then their sources wait
//!   (`Durability::Deferred`). Without `roll`, a Parquet sink on an unbounded source therefore
//!   acknowledges nothing until the job stops; give it `roll: { max_age: ... }`.
//! - Files of earlier runs are never replaced (unless `overwrite: true`): a sink whose file
//!   exists writes the next numbered part (`eur-00001.jsonl`), and rolled parts continue after
//!   the highest number found. An in-progress file left by a crashed run is recovered when the
//!   sink opens: JSON/CSV files are cut after their last complete line and completed under
//!   their final name (rows of the unacknowledged tail are delivered again, at-least-once);
//!   a Parquet file without its footer held only unacknowledged rows and is removed.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bytesize::ByteSize;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{Durability, PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::{OutputFormat, RecordWriter};

/// `file` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output path.
    pub path: Spanned<String>,
    /// Output format.
    #[serde(default)]
    pub format: OutputFormat,
    /// Roll-over policy; one file when absent.
    pub roll: Option<RollConfig>,
    /// Replace files an earlier run wrote (for batch jobs that are re-run); default false.
    #[serde(default)]
    pub overwrite: bool,
}

/// When to start a new file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollConfig {
    /// Start a new file once the current one reaches this size (`64MiB`).
    pub max_size: Option<ByteSize>,
    /// Start a new file once the current one is this old (`5m`).
    pub max_age: Option<Spanned<String>>,
}

impl SinkSpec for FileSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let max_age = match self.roll.as_ref().and_then(|roll| roll.max_age.as_ref()) {
            None => None,
            Some(text) => Some(
                humantime::parse_duration(&text.value)
                    .map_err(|err| SpecIssue::at(&text.referenced, format!("`max_age`: {err}")))?,
            ),
        };
        if self.format == OutputFormat::Parquet {
            // Parquet rejects some types up front; find out now rather than at the first batch.
            RecordWriter::new(self.format, input, std::io::sink()).map_err(|err| {
                SpecIssue::at(&self.path.referenced, format!("cannot write these columns as Parquet: {err}"))
            })?;
        }
        Ok(Arc::new(FileSinkFactory {
            path: ctx.resolve(&self.path.value),
            format: self.format,
            schema: input.clone(),
            max_size: self.roll.as_ref().and_then(|roll| roll.max_size).map(|size| size.as_u64()),
            max_age,
            rolling: self.roll.is_some(),
            overwrite: self.overwrite,
        }))
    }
}

#[derive(Debug)]
struct FileSinkFactory {
    path: PathBuf,
    format: OutputFormat,
    schema: SchemaRef,
    max_size: Option<u64>,
    max_age: Option<Duration>,
    rolling: bool,
    overwrite: bool,
}

#[async_trait]
impl SinkFactory for FileSinkFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        self.open().map(|sink| Box::new(sink) as Box<dyn Sink>)
    }
}

impl FileSinkFactory {
    fn open(&self) -> Result<FileSink, RuntimeError> {
        if let Some(parent) = self.path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| RuntimeError::io(format!("creating {}", parent.display()), err))?;
        }
        let parts = Parts::of(&self.path, self.rolling);
        let sequence = if self.overwrite { 0 } else { parts.recover(self.format)? };
        Ok(FileSink {
            parts,
            format: self.format,
            schema: self.schema.clone(),
            max_size: self.max_size,
            max_age: self.max_age,
            rolling: self.rolling,
            sequence,
            current: None,
            writes: 0,
            durable_writes: 0,
        })
    }
}

/// Counts bytes on their way to the file.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type FileWriter = RecordWriter<Counting<BufWriter<std::fs::File>>>;

struct OpenOutput {
    writer: FileWriter,
    in_progress: PathBuf,
    final_path: PathBuf,
    opened: Instant,
}

struct FileSink {
    parts: Parts,
    format: OutputFormat,
    schema: SchemaRef,
    max_size: Option<u64>,
    max_age: Option<Duration>,
    rolling: bool,
    sequence: u64,
    current: Option<OpenOutput>,
    /// Batches written so far.
    writes: u64,
    /// Batches before this count are in completed files (Parquet's durability).
    durable_writes: u64,
}

impl FileSink {
    fn next_final_path(&mut self) -> PathBuf {
        let path = self.parts.path(self.sequence);
        self.sequence += 1;
        path
    }

    fn open(&mut self) -> Result<&mut OpenOutput, RuntimeError> {
        if self.current.is_none() {
            let final_path = self.next_final_path();
            let in_progress = in_progress_path(&final_path);
            let file = std::fs::File::create(&in_progress)
                .map_err(|err| RuntimeError::io(format!("creating {}", in_progress.display()), err))?;
            sync_parent(&in_progress)?;
            let out = Counting { inner: BufWriter::with_capacity(1 << 20, file), written: 0 };
            let writer = RecordWriter::new(self.format, &self.schema, out)?;
            self.current = Some(OpenOutput { writer, in_progress, final_path, opened: Instant::now() });
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    fn complete_current(&mut self) -> Result<(), RuntimeError> {
        let Some(output) = self.current.take() else { return Ok(()) };
        let out = output.writer.finish()?;
        let file = out
            .inner
            .into_inner()
            .map_err(|err| RuntimeError::io(format!("writing {}", output.in_progress.display()), err.into_error()))?;
        file.sync_all().map_err(|err| RuntimeError::io(format!("syncing {}", output.in_progress.display()), err))?;
        std::fs::rename(&output.in_progress, &output.final_path)
            .map_err(|err| RuntimeError::io(format!("renaming to {}", output.final_path.display()), err))?;
        sync_parent(&output.final_path)?;
        self.durable_writes = self.writes;
        tracing::debug!(path = %output.final_path.display(), "file complete");
        Ok(())
    }

    /// Makes the rows written so far durable where the format allows it (JSON lines, CSV):
    /// through the buffers and fsynced. Parquet rows wait for their file's footer.
    fn sync(&mut self) -> Result<(), RuntimeError> {
        let Some(output) = &mut self.current else { return Ok(()) };
        if self.format == OutputFormat::Parquet {
            return Ok(());
        }
        output.writer.flush()?;
        output
            .writer
            .get_ref()
            .inner
            .get_ref()
            .sync_data()
            .map_err(|err| RuntimeError::io(format!("syncing {}", output.in_progress.display()), err))
    }

    fn should_roll(&self) -> bool {
        let Some(output) = &self.current else { return false };
        let size = output.writer.get_ref().written + output.writer.buffered_bytes() as u64;
        self.max_size.is_some_and(|max| size >= max) || self.max_age.is_some_and(|max| output.opened.elapsed() >= max)
    }
}

fn in_progress_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    final_path.with_file_name(format!(".{name}{IN_PROGRESS}"))
}

const IN_PROGRESS: &str = ".inprogress";

/// Makes a file's creation or renaming durable (fsync of its directory).
fn sync_parent(path: &Path) -> Result<(), RuntimeError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| RuntimeError::io(format!("syncing directory {}", dir.display()), err))
}

/// The names of one sink's files: `path` itself is part 0 of a single-file sink; numbered parts
/// are `stem-00001.ext`, ... (rolled files start at `stem-00000.ext`).
#[derive(Debug)]
struct Parts {
    dir: PathBuf,
    file_name: String,
    stem: String,
    extension: Option<String>,
    rolling: bool,
}

impl Parts {
    fn of(path: &Path, rolling: bool) -> Self {
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            dir,
            file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            stem: path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            extension: path.extension().map(|e| e.to_string_lossy().into_owned()),
            rolling,
        }
    }

    fn name(&self, sequence: u64) -> String {
        if sequence == 0 && !self.rolling {
            return self.file_name.clone();
        }
        match &self.extension {
            Some(ext) => format!("{}-{sequence:05}.{ext}", self.stem),
            None => format!("{}-{sequence:05}", self.stem),
        }
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.dir.join(self.name(sequence))
    }

    /// The part number of a final file name of this sink.
    fn sequence_of(&self, name: &str) -> Option<u64> {
        if name == self.file_name && !self.rolling {
            return Some(0);
        }
        let rest = name.strip_prefix(&self.stem)?.strip_prefix('-')?;
        let digits = match &self.extension {
            Some(ext) => rest.strip_suffix(ext.as_str())?.strip_suffix('.')?,
            None => rest,
        };
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
    }

    /// Completes or removes the in-progress files an earlier run left, and returns the first
    /// part number no earlier run used.
    fn recover(&self, format: OutputFormat) -> Result<u64, RuntimeError> {
        let listing = |dir: &Path| -> Result<Vec<String>, RuntimeError> {
            match std::fs::read_dir(dir) {
                Ok(entries) => Ok(entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(err) => Err(RuntimeError::io(format!("listing {}", dir.display()), err)),
            }
        };
        let names = listing(&self.dir)?;
        let mut next = 0;
        let mut left_over = Vec::new();
        for name in &names {
            let in_progress = name.strip_prefix('.').and_then(|n| n.strip_suffix(IN_PROGRESS));
            let Some(sequence) = self.sequence_of(in_progress.unwrap_or(name)) else { continue };
            next = next.max(sequence + 1);
            if in_progress.is_some() {
                left_over.push(self.dir.join(name));
            }
        }
        for file in left_over {
            if let Some(final_path) = recover_in_progress(&file, format)? {
                let target = if final_path.exists() {
                    next += 1;
                    self.path(next - 1)
                } else {
                    final_path
                };
                std::fs::rename(&file, &target)
                    .map_err(|err| RuntimeError::io(format!("renaming to {}", target.display()), err))?;
                sync_parent(&target)?;
                tracing::info!(from = %file.display(), to = %target.display(), "recovered the file an earlier run left in progress");
            }
        }
        Ok(next)
    }
}

/// Cuts an in-progress JSON-lines or CSV file after its last complete line and returns its final
/// path, or removes the file (nothing complete in it, or Parquet without a footer, whose rows
/// were never acknowledged) and returns `None`.
fn recover_in_progress(file: &Path, format: OutputFormat) -> Result<Option<PathBuf>, RuntimeError> {
    let io = |what: &str, err| RuntimeError::io(format!("{what} {}", file.display()), err);
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let final_name = name.strip_prefix('.').and_then(|n| n.strip_suffix(IN_PROGRESS)).unwrap_or(&name);
    let complete = match format {
        OutputFormat::Parquet => 0,
        OutputFormat::Json | OutputFormat::Csv => {
            let bytes = std::fs::read(file).map_err(|err| io("reading", err))?;
            let end = memchr::memrchr(b'\n', &bytes).map_or(0, |at| at + 1);
            let header =
                if format == OutputFormat::Csv { memchr::memchr(b'\n', &bytes).map_or(0, |at| at + 1) } else { 0 };
            if end > header { end } else { 0 }
        }
    };
    if complete == 0 {
        std::fs::remove_file(file).map_err(|err| io("removing", err))?;
        tracing::info!(path = %file.display(), "removed a file an earlier run left in progress (none of its rows were acknowledged)");
        return Ok(None);
    }
    let out = std::fs::OpenOptions::new().write(true).open(file).map_err(|err| io("opening", err))?;
    out.set_len(complete as u64).map_err(|err| io("truncating", err))?;
    out.sync_all().map_err(|err| io("syncing", err))?;
    Ok(Some(file.with_file_name(final_name)))
}

#[async_trait]
impl Sink for FileSink {
    fn durability(&self) -> Durability {
        match self.format {
            OutputFormat::Parquet => Durability::Deferred,
            OutputFormat::Json | OutputFormat::Csv => Durability::OnFlush,
        }
    }

    fn durable_writes(&self) -> u64 {
        self.durable_writes
    }

    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        self.open()?.writer.write(batch)?;
        self.writes += 1;
        if self.rolling && self.should_roll() {
            self.complete_current()?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), RuntimeError> {
        if self.rolling && self.should_roll() {
            return self.complete_current();
        }
        self.sync()
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        if self.current.is_none() && !self.rolling {
            // An empty result is still a result: write the (empty) file.
            self.open()?;
        }
        self.complete_current()
    }
}
