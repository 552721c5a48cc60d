//! What dimension-table connectors share: the declared columns and key (every table type), and
//! for SQL tables (PostgreSQL, MySQL) the options and the `SELECT` they build.
//!
//! Columns are declared, as in a Flink DDL, so a pipeline validates without the database; the
//! database's values are read as text and cast to the declared types (`lookup::text`), and keys
//! are sent as text that the database casts to the key column's type, so indexes are used.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use serde::Deserialize;

use super::sql::quote_identifier;
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_formats::schema::{SchemaSpec, build_schema};

/// Checks declared columns and key: the key is not empty and every key column is declared.
///
/// # Errors
/// An unknown type, an empty key, or a key column that is not declared.
pub fn plan_columns(columns: &Spanned<SchemaSpec>, key: &Spanned<Vec<String>>) -> Result<SchemaRef, SpecIssue> {
    let schema = build_schema(&columns.value)?;
    if key.value.is_empty() {
        return Err(SpecIssue::at(&key.referenced, "`key` is empty; name the key columns"));
    }
    for column in &key.value {
        if schema.index_of(column).is_err() {
            return Err(SpecIssue::at(&key.referenced, format!("key column `{column}` is not declared in `columns`")));
        }
    }
    Ok(schema)
}

/// Options of a SQL dimension table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlTableConfig {
    /// Connection string.
    pub url: Spanned<String>,
    /// User name, password and TLS.
    #[serde(flatten)]
    pub access: crate::secret::Access,
    /// The table (`name` or `schema.name`).
    pub table: Option<Spanned<String>>,
    /// Or a query whose result is the table (`SELECT ... FROM a JOIN b ...`).
    pub query: Option<Spanned<String>>,
    /// Key columns (the primary key the stream joins on).
    pub key: Spanned<Vec<String>>,
    /// Every column to read, with its type.
    pub columns: Spanned<SchemaSpec>,
    /// Connections at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    4
}

/// A checked [`SqlTableConfig`].
#[derive(Debug, Clone)]
pub struct SqlTablePlan {
    /// Declared columns.
    pub schema: SchemaRef,
    /// Key columns.
    pub key: Vec<String>,
    /// `"devices" AS t` or `(SELECT ...) AS t`.
    pub from: String,
    /// Quoting character of the dialect.
    pub quote: char,
}

impl SqlTableConfig {
    /// Checks the options; `quote` is the dialect's identifier quote.
    ///
    /// # Errors
    /// Both or neither of `table` and `query`, a bad key, an unsupported column type.
    pub fn plan(&self, quote: char) -> Result<SqlTablePlan, SpecIssue> {
        let schema = plan_columns(&self.columns, &self.key)?;
        if let Some(field) = schema.fields().iter().find(|field| matches!(field.data_type(), DataType::Binary)) {
            return Err(SpecIssue::at(
                &self.columns.referenced,
                format!("column `{}`: binary columns are not supported in dimension tables", field.name()),
            ));
        }
        let from = match (&self.table, &self.query) {
            (Some(table), None) => format!("{} AS t", quote_identifier(&table.value, quote)),
            (None, Some(query)) => format!("({}) AS t", query.value.trim().trim_end_matches(';')),
            (Some(table), Some(_)) => {
                return Err(SpecIssue::at(&table.referenced, "give `table` or `query`, not both"));
            }
            (None, None) => return Err(SpecIssue::new("`table` or `query` is required")),
        };
        if self.pool_size == 0 {
            return Err(SpecIssue::new("`pool_size` must be at least 1"));
        }
        Ok(SqlTablePlan { schema: Arc::clone(&schema), key: self.key.value.clone(), from, quote })
    }
}

impl SqlTablePlan {
    /// `t."column"`.
    pub fn column(&self, name: &str) -> String {
        format!("t.{}", quote_identifier(name, self.quote))
    }

    /// `SELECT <every column as text> FROM <from>`: `as_text` writes one column's expression.
    pub fn select(&self, as_text: impl Fn(&str, &DataType) -> String) -> String {
        let columns: Vec<String> =
            self.schema.fields().iter().map(|field| as_text(&self.column(field.name()), field.data_type())).collect();
        format!("SELECT {} FROM {}", columns.join(", "), self.from)
    }
}
