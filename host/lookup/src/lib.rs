//! Dimension tables for lookup joins: the `tables:` section, caches, batched fetching and
//! retries around the table connectors (whose contract, [`TableConnector`], is the engine's).
//!
//! A table is declared once per pipeline and shared by every `lookup_join` that names it (and by
//! all their subtasks): one cache, one connection pool, one concurrency limit.
//!
//! ```yaml
//! tables:
//!   devices:
//!     type: postgres                 # postgres | mysql | redis | file
//!     url: postgres://postgres@127.0.0.1:5432/test
//!     table: devices                 # or `query: SELECT ...`
//!     key: [id]
//!     columns: { id: int64, name: string, site: string }
//!     cache: { mode: partial, max_rows: 100000, expire_after_write: 10m, cache_missing: true }
//!     lookup: { chunk_size: 1000, max_concurrency: 4, timeout: 5s, max_retries: 3 }
//! ```
//!
//! Module map: [`table`] (the shared runtime: probe the cache, fetch what missed), [`cache`]
//! (the three cache modes), [`keys`] (key and row encoding), [`text`] (typed columns from the
//! text values databases and Redis return), [`metrics`].

pub mod cache;
pub mod keys;
pub mod metrics;
pub mod table;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use cache::CacheConfig;
pub use table::DimensionTable;
use weir_config::SpecIssue;
use weir_config::yaml::{Node, Spanned};
use weir_engine::component::PlanContext;
use weir_engine::registry::Registry;
pub use weir_engine::table::{LookupError, PlannedTable, TableConnector};

/// How lookups reach the system: chunking, concurrency, time limit, retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupOptions {
    /// At most this many keys per query (`WHERE id = ANY($1)`, `IN (...)`, one pipeline).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Queries in flight at once for this table, over all joins and subtasks.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Time limit of one query; a query that takes longer counts as failed and is retried.
    #[serde(default = "default_timeout", with = "weir_config::yaml::duration_opt")]
    pub timeout: Option<Duration>,
    /// Retries of a failed query (with exponential backoff, 100 ms doubling to 5 s) before the
    /// join's `on_error` policy applies; `on_error: retry` retries without limit.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
}

fn default_chunk_size() -> usize {
    1000
}
fn default_max_concurrency() -> usize {
    4
}
#[allow(clippy::unnecessary_wraps)] // serde default for an Option field
fn default_timeout() -> Option<Duration> {
    Some(Duration::from_secs(5))
}
fn default_max_retries() -> usize {
    3
}

impl Default for LookupOptions {
    fn default() -> Self {
        Self {
            chunk_size: default_chunk_size(),
            max_concurrency: default_max_concurrency(),
            timeout: default_timeout(),
            max_retries: default_max_retries(),
        }
    }
}

/// The options every table type shares (the connector's own config lists them as ignored, so
/// unknown keys are still reported).
#[derive(Debug, Deserialize)]
struct TableCommon {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    cache: Option<Spanned<CacheConfig>>,
    #[serde(default)]
    lookup: Option<Spanned<LookupOptions>>,
}

/// The tables of a pipeline, by name.
#[derive(Debug, Default)]
pub struct TableCatalog {
    tables: indexmap::IndexMap<String, Arc<DimensionTable>>,
}

impl TableCatalog {
    /// The table called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<DimensionTable>> {
        self.tables.get(name)
    }

    /// Every table, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<DimensionTable>)> {
        self.tables.iter()
    }

    /// The declared names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.tables.keys().map(String::as_str).collect()
    }
}

/// Plans the `tables:` section.
///
/// # Errors
/// The table's label (`tables.devices`) and the first problem found.
pub fn plan_tables(
    nodes: &[Node],
    registry: &Registry,
    ctx: &PlanContext,
) -> Result<TableCatalog, (String, SpecIssue)> {
    let mut catalog = TableCatalog::default();
    for node in nodes {
        let label = format!("tables.{}", node.name);
        let located = |issue: SpecIssue| (label.clone(), issue.or_at(node.key_at));
        let common: TableCommon = node.deserialize().map_err(located)?;
        let Some(kind) = &common.kind else {
            return Err(located(SpecIssue::new("missing `type`")));
        };
        let spec = registry.table(kind).and_then(|table| table.parse(node)).map_err(located)?;
        let planned = spec.plan(ctx).map_err(located)?;
        let cache = match &common.cache {
            Some(cache) => cache
                .value
                .check(planned.point_lookups)
                .map_err(|message| located(SpecIssue::at(&cache.referenced, message)))?,
            None if planned.point_lookups => cache::CacheMode::None,
            None => cache::CacheMode::Full(cache::FullOptions::default()),
        };
        let lookup = common.lookup.map(|spanned| spanned.value).unwrap_or_default();
        if lookup.chunk_size == 0 || lookup.max_concurrency == 0 {
            return Err(located(SpecIssue::new("`lookup.chunk_size` and `lookup.max_concurrency` must be at least 1")));
        }
        let table = DimensionTable::new(node.name.clone(), planned, cache, lookup).map_err(located)?;
        catalog.tables.insert(node.name.clone(), Arc::new(table));
    }
    Ok(catalog)
}
