//! `mysql` dimension table (MySQL, MariaDB): rows by key for lookup joins.
//!
//! ```yaml
//! tables:
//!   customers:
//!     type: mysql
//!     url: mysql://root@127.0.0.1:3306/test
//!     table: customers                # or query: "SELECT ..."
//!     key: [id]
//!     columns: { id: int64, name: string, tier: string }
//!     pool_size: 4
//! ```
//!
//! One query per chunk of keys: `WHERE t.id IN (?, ?, ...)`, or `WHERE (t.a, t.b) IN ((?, ?), ...)`
//! for composite keys. Values come back as `CAST(... AS CHAR)` and are cast to the declared types.

use async_trait::async_trait;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use futures::TryStreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Value};

use super::describe_address;
use weir_config::SpecIssue;
use weir_connector_support::dimension::{SqlTableConfig, SqlTablePlan};
use weir_engine::component::PlanContext;
use weir_engine::table::{LookupError, PlannedTable, TableConnector, TableSpec};
use weir_lookup::text::{TextRows, key_text};

/// `mysql` table options.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct MysqlTableConfig(SqlTableConfig);

impl TableSpec for MysqlTableConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedTable, SpecIssue> {
        let opts = super::plan_connection(&self.0.url, &self.0.access, ctx)?;
        let plan = self.0.plan('`')?;
        let address = describe_address(&opts);
        let constraints = PoolConstraints::new(0, self.0.pool_size)
            .ok_or_else(|| SpecIssue::new("`pool_size` must be at least 1"))?;
        let opts = OptsBuilder::from_opts(opts).pool_opts(PoolOpts::default().with_constraints(constraints));
        let connector = MysqlTable {
            select: plan.select(column_as_text),
            key_filter: key_filter(&plan),
            key_columns: plan.key.len(),
            schema: Arc::clone(&plan.schema),
            opts: opts.into(),
            pool: std::sync::OnceLock::new(),
            address,
        };
        Ok(PlannedTable { schema: plan.schema, key: plan.key, connector: Arc::new(connector), point_lookups: true })
    }
}

fn column_as_text(column: &str, _data_type: &DataType) -> String {
    format!("CAST({column} AS CHAR)")
}

/// `t.id` or `(t.a, t.b)`: the left side of `IN`.
fn key_filter(plan: &SqlTablePlan) -> String {
    match plan.key.as_slice() {
        [key] => plan.column(key),
        keys => format!("({})", keys.iter().map(|key| plan.column(key)).collect::<Vec<_>>().join(", ")),
    }
}

/// A MySQL table behind a connection pool.
struct MysqlTable {
    opts: Opts,
    /// Made on first use (it starts a task on the runtime; planning happens outside one).
    pool: std::sync::OnceLock<Pool>,
    address: String,
    schema: SchemaRef,
    select: String,
    key_filter: String,
    key_columns: usize,
}

impl std::fmt::Debug for MysqlTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTable").field("address", &self.address).field("select", &self.select).finish()
    }
}

impl MysqlTable {
    async fn connection(&self) -> Result<mysql_async::Conn, LookupError> {
        let pool = self.pool.get_or_init(|| Pool::new(self.opts.clone()));
        pool.get_conn().await.map_err(|err| classify(&err))
    }

    fn push_row(&self, text: &mut TextRows, mut row: Row) -> Result<(), LookupError> {
        for column in 0..self.schema.fields().len() {
            let value: Option<String> = row
                .take_opt(column)
                .unwrap_or(Ok(None))
                .map_err(|err| LookupError::Invalid(format!("column {column}: {err}")))?;
            text.push(column, value.as_deref());
        }
        Ok(())
    }
}

#[async_trait]
impl TableConnector for MysqlTable {
    fn system(&self) -> &'static str {
        "mysql"
    }

    fn address(&self) -> String {
        self.address.clone()
    }

    async fn fetch(&self, keys: &RecordBatch) -> Result<Vec<RecordBatch>, LookupError> {
        let columns: Vec<Vec<String>> =
            keys.columns().iter().map(|column| key_text(column)).collect::<Result<_, _>>()?;
        let tuple = match self.key_columns {
            1 => "?".to_owned(),
            n => format!("({})", vec!["?"; n].join(", ")),
        };
        let sql = format!("{} WHERE {} IN ({})", self.select, self.key_filter, vec![tuple; keys.num_rows()].join(", "));
        let mut params = Vec::with_capacity(keys.num_rows() * self.key_columns);
        for row in 0..keys.num_rows() {
            params.extend(columns.iter().map(|column| Value::from(column[row].as_str())));
        }
        let mut conn = self.connection().await?;
        let rows: Vec<Row> = conn.exec(sql, params).await.map_err(|err| classify(&err))?;
        let mut text = TextRows::new(Arc::clone(&self.schema));
        for row in rows {
            self.push_row(&mut text, row)?;
        }
        text.finish()
    }

    async fn scan(&self) -> Result<Vec<RecordBatch>, LookupError> {
        let mut conn = self.connection().await?;
        let mut rows = conn.query_stream::<Row, _>(self.select.as_str()).await.map_err(|err| classify(&err))?;
        let mut text = TextRows::new(Arc::clone(&self.schema));
        while let Some(row) = rows.try_next().await.map_err(|err| classify(&err))? {
            self.push_row(&mut text, row)?;
            text.cut_if_full()?;
        }
        text.finish()
    }
}

/// Lost connections, deadlocks, lock waits and a server going away can be retried; a bad query
/// cannot.
fn classify(err: &mysql_async::Error) -> LookupError {
    match err {
        mysql_async::Error::Server(server)
            if server.state.starts_with("40") || matches!(server.code, 1040 | 1053 | 1205 | 1213) =>
        {
            LookupError::Unavailable(err.to_string())
        }
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => LookupError::Unavailable(err.to_string()),
        other => LookupError::Invalid(other.to_string()),
    }
}
