//! `postgres` dimension table: rows by key for lookup joins.
//!
//! ```yaml
//! tables:
//!   devices:
//!     type: postgres
//!     url: postgres://postgres@127.0.0.1:5432/test
//!     table: devices                  # or query: "SELECT d.id, d.name, s.city FROM devices d JOIN sites s ..."
//!     key: [id]
//!     columns: { id: int64, name: string, site: string, installed: "timestamp(ms, UTC)" }
//!     pool_size: 4                    # connections (deadpool-postgres)
//!     cache: { mode: partial, max_rows: 100000, expire_after_write: 1m }
//! ```
//!
//! One query per chunk of keys: `WHERE t.id = ANY($1::text[]::int8[])`, or for composite keys
//! `WHERE (t.a, t.b) IN (SELECT k.a::int8, k.b::text FROM unnest($1::text[], $2::text[]) ...)`,
//! so the key index is used whatever the key types. A lost connection is dropped from the pool
//! and the query retried on a fresh one.

use async_trait::async_trait;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::TryStreamExt;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{describe_address, plan_connection};
use weir_config::SpecIssue;
use weir_connector_support::dimension::{SqlTableConfig, SqlTablePlan};
use weir_connector_support::link::CONNECT_TIMEOUT;
use weir_engine::component::PlanContext;
use weir_engine::table::{LookupError, PlannedTable, TableConnector, TableSpec};
use weir_lookup::text::{TextRows, key_text};

/// `postgres` table options.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct PostgresTableConfig(SqlTableConfig);

impl TableSpec for PostgresTableConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedTable, SpecIssue> {
        let (config, tls) = plan_connection(&self.0.url, &self.0.access, ctx)?;
        let plan = self.0.plan('"')?;
        let address = describe_address(&config);
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match tls {
            None => Manager::from_config(config, NoTls, manager_config),
            Some(tls) => Manager::from_config(config, MakeRustlsConnect::new((*tls.config).clone()), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(self.0.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|err| SpecIssue::new(format!("connection pool: {err}")))?;
        let connector = PostgresTable {
            fetch_sql: fetch_sql(&plan),
            scan_sql: plan.select(column_as_text),
            schema: Arc::clone(&plan.schema),
            pool,
            address,
        };
        Ok(PlannedTable { schema: plan.schema, key: plan.key, connector: Arc::new(connector), point_lookups: true })
    }
}

/// The PostgreSQL type a key parameter is cast to.
fn pg_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "bool",
        DataType::Int8 | DataType::Int16 => "int2",
        DataType::Int32 | DataType::UInt8 | DataType::UInt16 => "int4",
        DataType::Int64 | DataType::UInt32 => "int8",
        DataType::Float32 => "float4",
        DataType::Float64 => "float8",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        _ => "text",
    }
}

/// A column as text Arrow parses: ISO 8601 for timestamps (`to_json`), `::text` otherwise.
fn column_as_text(column: &str, data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(..) => format!("to_json({column}) #>> '{{}}'"),
        _ => format!("{column}::text"),
    }
}

fn fetch_sql(plan: &SqlTablePlan) -> String {
    let select = plan.select(column_as_text);
    let key_types: Vec<&str> =
        plan.key.iter().map(|key| pg_type(plan.schema.field_with_name(key).expect("declared").data_type())).collect();
    if let ([key], [ty]) = (plan.key.as_slice(), key_types.as_slice()) {
        return format!("{select} WHERE {} = ANY($1::text[]::{ty}[])", plan.column(key));
    }
    let columns: Vec<String> = plan.key.iter().map(|key| plan.column(key)).collect();
    let casts: Vec<String> = key_types.iter().enumerate().map(|(i, ty)| format!("k.c{i}::{ty}")).collect();
    let arrays: Vec<String> = (1..=plan.key.len()).map(|i| format!("${i}::text[]")).collect();
    let names: Vec<String> = (0..plan.key.len()).map(|i| format!("c{i}")).collect();
    format!(
        "{select} WHERE ({}) IN (SELECT {} FROM unnest({}) AS k({}))",
        columns.join(", "),
        casts.join(", "),
        arrays.join(", "),
        names.join(", ")
    )
}

/// A PostgreSQL table behind a connection pool.
struct PostgresTable {
    pool: Pool,
    address: String,
    schema: SchemaRef,
    fetch_sql: String,
    scan_sql: String,
}

impl std::fmt::Debug for PostgresTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTable").field("address", &self.address).field("fetch_sql", &self.fetch_sql).finish()
    }
}

#[async_trait]
impl TableConnector for PostgresTable {
    fn system(&self) -> &'static str {
        "postgres"
    }

    fn address(&self) -> String {
        self.address.clone()
    }

    async fn fetch(&self, keys: &RecordBatch) -> Result<Vec<RecordBatch>, LookupError> {
        let params: Vec<Vec<String>> =
            keys.columns().iter().map(|column| key_text(column)).collect::<Result<_, _>>()?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client.prepare_cached(&self.fetch_sql).await.map_err(|err| classify(&err))?;
        let rows = client.query(&statement, &params).await.map_err(|err| classify(&err))?;
        let mut text = TextRows::new(Arc::clone(&self.schema));
        for row in &rows {
            for column in 0..self.schema.fields().len() {
                let value: Option<&str> = row.try_get(column).map_err(|err| classify(&err))?;
                text.push(column, value);
            }
        }
        text.finish()
    }

    async fn scan(&self) -> Result<Vec<RecordBatch>, LookupError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client.prepare_cached(&self.scan_sql).await.map_err(|err| classify(&err))?;
        let rows = client.query_raw(&statement, Vec::<String>::new()).await.map_err(|err| classify(&err))?;
        futures::pin_mut!(rows);
        let mut text = TextRows::new(Arc::clone(&self.schema));
        while let Some(row) = rows.try_next().await.map_err(|err| classify(&err))? {
            for column in 0..self.schema.fields().len() {
                let value: Option<&str> = row.try_get(column).map_err(|err| classify(&err))?;
                text.push(column, value);
            }
            text.cut_if_full()?;
        }
        text.finish()
    }
}

/// Connection trouble and server states that pass (SQLSTATE 08, 40, 53, 57) can be retried;
/// anything else (a bad query, a value the cast rejects) cannot.
fn classify(err: &tokio_postgres::Error) -> LookupError {
    let reason = match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    };
    match err.code().map(|code| &code.code()[..2]) {
        None | Some("08" | "40" | "53" | "57") => LookupError::Unavailable(reason),
        Some(_) => LookupError::Invalid(reason),
    }
}

fn pool_error(err: deadpool_postgres::PoolError) -> LookupError {
    match err {
        deadpool_postgres::PoolError::Backend(err) => classify(&err),
        other => LookupError::Unavailable(format!("no connection: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_query_per_chunk_uses_the_key_index() {
        let yaml = r#"
url: postgres://u@h/db
table: devices
key: [site, id]
columns: { id: int64, site: string, name: string }
"#;
        let config: SqlTableConfig = serde_saphyr::from_str(yaml).unwrap();
        let plan = config.plan('"').unwrap();
        assert_eq!(
            fetch_sql(&plan),
            "SELECT t.\"id\"::text, t.\"site\"::text, t.\"name\"::text FROM \"devices\" AS t WHERE (t.\"site\", \
             t.\"id\") IN (SELECT k.c0::text, k.c1::int8 FROM unnest($1::text[], $2::text[]) AS k(c0, c1))"
        );
    }
}
