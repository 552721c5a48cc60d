//! The `stdin` source: lines from standard input.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
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

#[async_trait]
impl Source for StdinSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
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
    }
}
