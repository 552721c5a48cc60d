//! The dimension-table contract: what a table connector (PostgreSQL, MySQL, Redis, a file)
//! implements for lookup joins. The caches, batching and retries around it are the lookup layer's.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use weir_config::SpecIssue;

use super::component::PlanContext;

/// Why a lookup failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    /// The system could not be reached or did not answer in time; trying again can help.
    #[error("{0}")]
    Unavailable(String),
    /// The system answered, but with something the table cannot use (a bad query, a value that
    /// does not fit the declared type); trying again cannot help.
    #[error("{0}")]
    Invalid(String),
}

impl LookupError {
    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// What a dimension-table connector does: fetch rows by key, or every row.
///
/// Rows come back with the table's declared schema (key columns included); keys that have no
/// row are simply absent.
#[async_trait::async_trait]
pub trait TableConnector: Send + Sync + std::fmt::Debug {
    /// `postgres`, `mysql`, `redis`, `file`.
    fn system(&self) -> &'static str;

    /// Where the data is (address or path, no secrets).
    fn address(&self) -> String;

    /// The rows whose key is one of `keys` (the key columns, with the table's key types, no
    /// NULLs, no duplicates).
    async fn fetch(&self, keys: &RecordBatch) -> Result<Vec<RecordBatch>, LookupError>;

    /// Every row of the table (for `cache: { mode: full }`).
    async fn scan(&self) -> Result<Vec<RecordBatch>, LookupError>;
}

/// A validated table declaration, before the cache and pool exist.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    /// Every declared column.
    pub schema: SchemaRef,
    /// The key columns, in key order.
    pub key: Vec<String>,
    /// The connector.
    pub connector: Arc<dyn TableConnector>,
    /// Whether the connector can fetch single keys (a `file` table cannot: it is loaded whole).
    pub point_lookups: bool,
}

/// A table type's typed config.
pub trait TableSpec: Send + Sync + std::fmt::Debug {
    /// Validates the config.
    ///
    /// # Errors
    /// A [`SpecIssue`] pointing at the offending option.
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedTable, SpecIssue>;
}
