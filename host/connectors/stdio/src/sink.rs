//! The `stdout` sink: rows printed as JSON lines, CSV or a table.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};

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

#[async_trait]
impl SinkFactory for StdoutFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let sink = StdoutSink { format: self.format, header_written: false, _schema: self.schema.clone() };
        Ok(Box::new(sink) as Box<dyn Sink>)
    }
}

struct StdoutSink {
    format: StdoutFormat,
    header_written: bool,
    _schema: SchemaRef,
}

#[async_trait]
impl Sink for StdoutSink {
    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        self.print(batch)
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        std::io::stdout().flush().map_err(|err| RuntimeError::io("writing stdout", err))
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
