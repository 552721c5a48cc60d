//! `stdin` source and `stdout` sink: pipelines in shell pipes.
//!
//! ```yaml
//! sources:
//!   lines: { type: stdin, format: json, schema: { level: string, msg: string } }
//! sinks:
//!   show:  { type: stdout, inputs: [lines], format: table }   # json (default), csv, table
//! ```

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    BoxFuture, Durability, PlanContext, PlannedSource, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec, Source,
    SourceContext, SourceSpec,
};
use weir_formats::decode::{ChunkReader, CsvOptions, LineDecoder, LineFormat};
use weir_formats::schema::{SchemaSpec, build_schema};

/// `stdin` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Record format (CSV input has no header line).
    #[serde(default)]
    pub format: LineFormat,
    /// Declared columns (none for `format: text`, whose one column is `line`).
    pub schema: Option<Spanned<SchemaSpec>>,
}

impl SourceSpec for StdinConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let schema = match (&self.schema, self.format) {
            (None, LineFormat::Text) => LineFormat::text_schema(),
            (Some(spec), LineFormat::Text) => {
                return Err(SpecIssue::at(&spec.referenced, "`format: text` has one column, `line`: drop `schema`"));
            }
            (Some(spec), _) => build_schema(&spec.value)?,
            (None, _) => return Err(SpecIssue::new("`schema` is required for `format: json` and `format: csv`")),
        };
        let factory = StdinSource { schema: schema.clone(), format: self.format, batch_size: ctx.batch_size };
        Ok(PlannedSource { schema, parallelism: 1, factory: Arc::new(factory) })
    }
}

#[derive(Debug, Clone)]
struct StdinSource {
    schema: SchemaRef,
    format: LineFormat,
    batch_size: usize,
}

impl Source for StdinSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let config = &*self;
            let mut decoder = LineDecoder::new(
                config.schema.clone(),
                config.format,
                CsvOptions { delimiter: b',' },
                "stdin".into(),
                config.batch_size,
            )?;
            let mut reader = ChunkReader::new(tokio::io::stdin());
            loop {
                // Interactive input arrives a line at a time: take whatever complete lines exist.
                let chunk = tokio::select! {
                    chunk = reader.next_chunk(1, true) => chunk.map_err(|err| RuntimeError::io("reading stdin", err))?,
                    () = ctx.stop.cancelled() => return Ok(()),
                };
                let Some(chunk) = chunk else { return Ok(()) };
                for batch in decoder.decode(&chunk, &mut ctx.errors)? {
                    ctx.metrics.record_received(batch.num_rows());
                    ctx.output.send(batch).await?;
                }
                ctx.errors.flush().await?;
            }
        })
    }
}

/// How `stdout` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    /// JSON lines.
    #[default]
    Json,
    /// CSV with a header.
    Csv,
    /// A pretty table per batch.
    Table,
}

/// `stdout` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Output format.
    #[serde(default)]
    pub format: StdoutFormat,
}

impl SinkSpec for StdoutConfig {
    fn plan(&self, input: &SchemaRef, _ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        Ok(Arc::new(StdoutFactory { format: self.format, schema: input.clone() }))
    }
}

#[derive(Debug)]
struct StdoutFactory {
    format: StdoutFormat,
    schema: SchemaRef,
}

impl SinkFactory for StdoutFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        let sink = StdoutSink { format: self.format, header_written: false, _schema: self.schema.clone() };
        Box::pin(async { Ok(Box::new(sink) as Box<dyn Sink>) })
    }
}

struct StdoutSink {
    format: StdoutFormat,
    header_written: bool,
    _schema: SchemaRef,
}

impl Sink for StdoutSink {
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        _ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.print(batch) })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async { std::io::stdout().flush().map_err(|err| RuntimeError::io("writing stdout", err)) })
    }
}

impl StdoutSink {
    fn print(&mut self, batch: &RecordBatch) -> Result<(), RuntimeError> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match self.format {
            StdoutFormat::Json => {
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
                writer.write(batch)?;
                writer.finish()?;
            }
            StdoutFormat::Csv => {
                let mut writer = arrow::csv::WriterBuilder::new().with_header(!self.header_written).build(&mut out);
                writer.write(batch)?;
                self.header_written = true;
            }
            StdoutFormat::Table => {
                let table = arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))?;
                writeln!(out, "{table}").map_err(|err| RuntimeError::io("writing stdout", err))?;
            }
        }
        out.flush().map_err(|err| RuntimeError::io("writing stdout", err))
    }
}
