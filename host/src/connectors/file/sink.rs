//! The `file` sink.
//!
//! ```yaml
//! out:
//!   type: file
//!   inputs: [eur]
//!   path: out/eur.jsonl              # relative to the pipeline file
//!   format: json                     # json (default), csv, parquet
//!   roll: { max_size: 64MiB, max_age: 5m }   # optional: numbered files out/eur-00000.jsonl, ...
//! ```
//! A file is written under a hidden in-progress name (`.eur.jsonl.inprogress`) and renamed to its
//! final name only when complete, so readers never see a half-written file (Flink's FileSink
//! does the same). Roll-over is checked after each batch.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytesize::ByteSize;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::engine::component::{
    BoxFuture, PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkKind, SinkSpec,
};
use crate::formats::encode::{OutputFormat, RecordWriter};
use crate::pipeline::SpecIssue;
use crate::pipeline::yaml::Spanned;

/// Registration.
pub const SINK: SinkKind = SinkKind { name: "file", parse: |node| Ok(Box::new(node.deserialize::<FileSinkConfig>()?)) };

/// `file` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    #[serde(default, rename = "inputs")]
    _inputs: IgnoredAny,
    /// Output path.
    pub path: Spanned<String>,
    /// Output format.
    #[serde(default)]
    pub format: OutputFormat,
    /// Roll-over policy; one file when absent.
    pub roll: Option<RollConfig>,
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
}

impl SinkFactory for FileSinkFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async { self.open().map(|sink| Box::new(sink) as Box<dyn Sink>) })
    }
}

impl FileSinkFactory {
    fn open(&self) -> Result<FileSink, RuntimeError> {
        if let Some(parent) = self.path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| RuntimeError::io(format!("creating {}", parent.display()), err))?;
        }
        Ok(FileSink {
            path: self.path.clone(),
            format: self.format,
            schema: self.schema.clone(),
            max_size: self.max_size,
            max_age: self.max_age,
            rolling: self.rolling,
            sequence: 0,
            current: None,
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
    path: PathBuf,
    format: OutputFormat,
    schema: SchemaRef,
    max_size: Option<u64>,
    max_age: Option<Duration>,
    rolling: bool,
    sequence: u64,
    current: Option<OpenOutput>,
}

impl FileSink {
    fn next_final_path(&mut self) -> PathBuf {
        if !self.rolling {
            return self.path.clone();
        }
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}-{:05}.{}", self.sequence, ext.to_string_lossy()),
            None => format!("{stem}-{:05}", self.sequence),
        };
        self.sequence += 1;
        self.path.with_file_name(name)
    }

    fn open(&mut self) -> Result<&mut OpenOutput, RuntimeError> {
        if self.current.is_none() {
            let final_path = self.next_final_path();
            let in_progress = in_progress_path(&final_path);
            let file = std::fs::File::create(&in_progress)
                .map_err(|err| RuntimeError::io(format!("creating {}", in_progress.display()), err))?;
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
        tracing::debug!(path = %output.final_path.display(), "file complete");
        Ok(())
    }

    fn should_roll(&self) -> bool {
        let Some(output) = &self.current else { return false };
        let size = output.writer.get_ref().written + output.writer.buffered_bytes() as u64;
        self.max_size.is_some_and(|max| size >= max) || self.max_age.is_some_and(|max| output.opened.elapsed() >= max)
    }
}

fn in_progress_path(final_path: &Path) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    final_path.with_file_name(format!(".{name}.inprogress"))
}

impl Sink for FileSink {
    fn write<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        _ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.open()?.writer.write(batch)?;
            if self.rolling && self.should_roll() {
                self.complete_current()?;
            }
            Ok(())
        })
    }

    fn flush(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            match &mut self.current {
                Some(output) => output.writer.flush(),
                None => Ok(()),
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            if self.current.is_none() && !self.rolling {
                // An empty result is still a result: write the (empty) file.
                self.open()?;
            }
            self.complete_current()
        })
    }
}
