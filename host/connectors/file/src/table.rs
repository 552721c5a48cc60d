//! `file` dimension table: a CSV or JSON-lines file loaded whole (for embedded demos and tests).
//!
//! ```yaml
//! tables:
//!   currencies:
//!     type: file
//!     path: currencies.csv            # relative to the pipeline file
//!     format: csv                     # csv | json
//!     key: [code]
//!     columns: { code: string, rate: float64 }   # optional: inferred from the file otherwise
//!     cache: { mode: full, reload_every: 1m }    # the only mode (default reload: 1h)
//! ```

use async_trait::async_trait;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Deserialize;

use super::source::infer_schema;
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, unspanned};
use weir_connector_support::dimension::plan_columns;
use weir_engine::component::PlanContext;
use weir_engine::table::{LookupError, PlannedTable, TableConnector, TableSpec};
use weir_formats::decode::LineFormat;
use weir_formats::schema::SchemaSpec;

/// `file` table options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// The file, relative to the pipeline file.
    pub path: Spanned<String>,
    /// `csv` or `json` (JSON lines).
    #[serde(default)]
    pub format: LineFormat,
    /// Key columns.
    pub key: Spanned<Vec<String>>,
    /// Columns with types; inferred from the file when absent.
    pub columns: Option<Spanned<SchemaSpec>>,
    /// CSV: the first line is a header (default true).
    #[serde(default = "yes")]
    pub header: bool,
    /// CSV field delimiter (default `,`).
    #[serde(default = "comma")]
    pub delimiter: char,
}

fn yes() -> bool {
    true
}

fn comma() -> char {
    ','
}

impl TableSpec for FileTableConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedTable, SpecIssue> {
        let path = ctx.resolve(&self.path.value);
        let at_path = |message: String| SpecIssue::at(&self.path.referenced, message);
        if !path.is_file() {
            return Err(at_path(format!("file not found: {}", path.display())));
        }
        if self.format == LineFormat::Text {
            return Err(SpecIssue::new("a dimension table file is `format: csv` or `format: json`"));
        }
        let delimiter =
            u8::try_from(self.delimiter).map_err(|_| SpecIssue::new("`delimiter` must be a single ASCII character"))?;
        let columns = match &self.columns {
            Some(columns) => columns.value.clone(),
            None => {
                let inferred = infer_schema(&path, self.format, self.header, delimiter).map_err(at_path)?;
                inferred
                    .fields()
                    .iter()
                    .map(|field| (field.name().clone(), unspanned(inferred_type_name(field.data_type()))))
                    .collect()
            }
        };
        let at = self.columns.as_ref().map_or(self.path.referenced, |columns| columns.referenced);
        let schema = plan_columns(&Spanned { value: columns, referenced: at, defined: at }, &self.key)?;
        let connector =
            FileTable { path, format: self.format, header: self.header, delimiter, schema: Arc::clone(&schema) };
        Ok(PlannedTable { schema, key: self.key.value.clone(), connector: Arc::new(connector), point_lookups: false })
    }
}

/// The declared-type name of an inferred type (inference yields int64, float64, bool, string).
fn inferred_type_name(data_type: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType;
    match data_type {
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "bool",
        _ => "string",
    }
    .to_owned()
}

/// A file read whole.
#[derive(Debug, Clone)]
struct FileTable {
    path: PathBuf,
    format: LineFormat,
    header: bool,
    delimiter: u8,
    schema: SchemaRef,
}

impl FileTable {
    fn read(&self) -> Result<Vec<RecordBatch>, LookupError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|err| LookupError::Unavailable(format!("cannot open {}: {err}", self.path.display())))?;
        let reader = std::io::BufReader::new(file);
        let invalid = |err: arrow::error::ArrowError| LookupError::Invalid(format!("{}: {err}", self.path.display()));
        let schema = Arc::clone(&self.schema);
        match self.format {
            LineFormat::Csv => arrow::csv::ReaderBuilder::new(schema)
                .with_header(self.header)
                .with_delimiter(self.delimiter)
                .build(reader)
                .map_err(invalid)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid),
            LineFormat::Json => arrow::json::ReaderBuilder::new(schema)
                .build(reader)
                .map_err(invalid)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid),
            LineFormat::Text => Err(LookupError::Invalid("a table is `csv` or `json`, not `text`".into())),
        }
    }
}

#[async_trait]
impl TableConnector for FileTable {
    fn system(&self) -> &'static str {
        "file"
    }

    fn address(&self) -> String {
        self.path.display().to_string()
    }

    async fn fetch(&self, _keys: &RecordBatch) -> Result<Vec<RecordBatch>, LookupError> {
        Err(LookupError::Invalid("a file table is loaded whole; it has no point lookups".into()))
    }

    async fn scan(&self) -> Result<Vec<RecordBatch>, LookupError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read())
            .await
            .map_err(|err| LookupError::Invalid(format!("reading the file panicked: {err}")))?
    }
}
