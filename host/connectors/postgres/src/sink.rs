//! The `postgres` sink: appends by binary COPY, upserts by INSERT ... ON CONFLICT, each batch one transaction.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{LinkState, connect, reconnect_backoff};
use weir_connector_support::secret::Access;
use weir_connector_support::sql::{
    Cell, TableOptions, TablePlan, WriteMode, cell, check_columns, last_row_per_key, quote_identifier,
};
use weir_connector_support::tls::Tls;

use crate::{describe_address, plan_connection};
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_engine::errors::BadRecord;
use weir_engine::errors::row_as_json;

/// `postgres` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// Connection string: a `postgres://` URL or `key=value` pairs.
    pub url: Spanned<String>,
    /// User name, password, TLS.
    #[serde(flatten)]
    pub access: Access,
    /// Table, mode, key, create_table.
    #[serde(flatten)]
    pub table: TableOptions,
}

impl SinkSpec for PostgresSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let (config, tls) = plan_connection(&self.url, &self.access, ctx)?;
        check_columns(input, &self.table.table)?;
        let plan = self.table.plan(input)?;
        Ok(Arc::new(PostgresSinkFactory {
            address: describe_address(&config),
            config,
            tls,
            plan,
            create_table: self.table.create_table,
            input: input.clone(),
        }))
    }
}

#[derive(Debug)]
struct PostgresSinkFactory {
    config: tokio_postgres::Config,
    tls: Option<Tls>,
    address: String,
    plan: TablePlan,
    create_table: bool,
    input: SchemaRef,
}

#[async_trait]
impl SinkFactory for PostgresSinkFactory {
    fn ordered_by(&self) -> Option<Vec<usize>> {
        self.plan.ordered_by()
    }

    /// The first connection must succeed (a wrong address fails the job at once); a connection
    /// lost while the table is created and the statements prepared (a terminated backend, a
    /// restarting server) is re-opened with the mid-run backoff.
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
        let mut client = open(&self.config, self.tls.as_ref(), &self.address).await?;
        loop {
            let reason = match self.set_up(&client).await {
                Ok(statements) => {
                    return Ok(Box::new(PostgresSink {
                        config: self.config.clone(),
                        tls: self.tls.clone(),
                        address: self.address.clone(),
                        plan: self.plan.clone(),
                        input: self.input.clone(),
                        client: Some(client),
                        statements,
                        link: None,
                    }) as Box<dyn Sink>);
                }
                Err(err) => match classify(&err) {
                    Failure::Transient(reason) => reason,
                    Failure::Data | Failure::Fatal(_) => return Err(self.fail(&err)),
                },
            };
            loop {
                let Some(delay) = delays.next() else {
                    return Err(RuntimeError::external("postgres", &self.address, reason));
                };
                tracing::warn!(address = %self.address, error = %reason, "connection lost while setting up the sink; reconnecting");
                tokio::time::sleep(delay).await;
                match open(&self.config, self.tls.as_ref(), &self.address).await {
                    Ok(reopened) => {
                        client = reopened;
                        break;
                    }
                    Err(err) => tracing::debug!(address = %self.address, error = %err, "reconnect failed"),
                }
            }
        }
    }
}

impl PostgresSinkFactory {
    /// Creates the table if asked, and prepares the statements.
    async fn set_up(&self, client: &Client) -> Result<Statements, tokio_postgres::Error> {
        if self.create_table {
            client.batch_execute(&create_table_sql(&self.plan, &self.input)).await?;
        }
        Statements::prepare(client, &self.plan, &self.input).await
    }

    fn fail(&self, err: &tokio_postgres::Error) -> RuntimeError {
        RuntimeError::external("postgres", &self.address, describe_error(err))
    }
}

async fn open(config: &tokio_postgres::Config, tls: Option<&Tls>, address: &str) -> Result<Client, RuntimeError> {
    // The connection task ends when the client is dropped or the server goes away; the sink
    // notices on its next write.
    match tls {
        None => {
            let connecting = async { config.connect(NoTls).await.map_err(|err| describe_error(&err)) };
            let (client, connection) = connect("postgres", address, connecting).await?;
            tokio::spawn(connection);
            Ok(client)
        }
        Some(tls) => {
            let tls = MakeRustlsConnect::new((*tls.config).clone());
            let connecting = async { config.connect(tls).await.map_err(|err| describe_error(&err)) };
            let (client, connection) = connect("postgres", address, connecting).await?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

/// The prepared statements and the target columns' types.
struct Statements {
    /// Target column types, in input column order.
    types: Vec<Type>,
    copy: String,
    batch: Option<Statement>,
    row: Statement,
}

impl Statements {
    async fn prepare(client: &Client, plan: &TablePlan, input: &SchemaRef) -> Result<Self, tokio_postgres::Error> {
        let table = quote_identifier(&plan.table, '"');
        let columns: Vec<String> = input.fields().iter().map(|f| quote_identifier(f.name(), '"')).collect();
        let column_list = columns.join(", ");
        let probe = client.prepare(&format!("SELECT {column_list} FROM {table} LIMIT 0")).await?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let conflict = match plan.mode {
            WriteMode::Append => String::new(),
            WriteMode::Upsert => {
                let key: Vec<&str> = plan.key.iter().map(|&i| columns[i].as_str()).collect();
                let updates: Vec<String> = (0..columns.len())
                    .filter(|i| !plan.key.contains(i))
                    .map(|i| format!("{0} = EXCLUDED.{0}", columns[i]))
                    .collect();
                if updates.is_empty() {
                    format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
                } else {
                    format!(" ON CONFLICT ({}) DO UPDATE SET {}", key.join(", "), updates.join(", "))
                }
            }
        };
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let row = client
            .prepare(&format!("INSERT INTO {table} ({column_list}) VALUES ({}){conflict}", placeholders.join(", ")))
            .await?;
        let batch = match plan.mode {
            WriteMode::Append => None,
            WriteMode::Upsert => {
                let arrays: Vec<String> =
                    types.iter().enumerate().map(|(i, ty)| format!("${}::{}[]", i + 1, ty.name())).collect();
                let sql = format!(
                    "INSERT INTO {table} ({column_list}) SELECT * FROM UNNEST({}){conflict}",
                    arrays.join(", ")
                );
                Some(client.prepare(&sql).await?)
            }
        };
        let copy = format!("COPY {table} ({column_list}) FROM STDIN BINARY");
        Ok(Self { types, copy, batch, row })
    }
}

fn create_table_sql(plan: &TablePlan, input: &SchemaRef) -> String {
    let mut columns: Vec<String> = input
        .fields()
        .iter()
        .map(|f| format!("{} {}", quote_identifier(f.name(), '"'), postgres_type(f.data_type())))
        .collect();
    if !plan.key.is_empty() {
        let key: Vec<String> = plan.key.iter().map(|&i| quote_identifier(input.field(i).name(), '"')).collect();
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {} ({})", quote_identifier(&plan.table, '"'), columns.join(", "))
}

fn postgres_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Boolean => "boolean",
        DataType::Binary | DataType::LargeBinary => "bytea",
        DataType::Date32 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(_, None) => "timestamp",
        _ => "text",
    }
}

struct PostgresSink {
    config: tokio_postgres::Config,
    tls: Option<Tls>,
    address: String,
    plan: TablePlan,
    input: SchemaRef,
    client: Option<Client>,
    statements: Statements,
    link: Option<LinkState>,
}

/// Why a write attempt failed.
enum Failure {
    /// The connection is gone or the server asked to retry: reconnect and write the batch again.
    Transient(String),
    /// The database rejected the data (SQLSTATE 22xxx / 23xxx): write row by row.
    Data,
    /// Anything else (missing table, permissions): the job fails.
    Fatal(String),
}

fn classify(err: &tokio_postgres::Error) -> Failure {
    match err.code() {
        None => Failure::Transient(describe_error(err)),
        Some(code) => {
            let class = &code.code()[..2];
            match class {
                "22" | "23" => Failure::Data,
                // Serialization failures, deadlocks, the server shutting down or out of resources.
                "40" | "53" | "57" | "08" => Failure::Transient(describe_error(err)),
                _ => Failure::Fatal(describe_error(err)),
            }
        }
    }
}

fn describe_error(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}): {detail}", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => {
            // The client's message alone says "error performing TLS handshake"; its cause says why.
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn write(&mut self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let batch = match self.plan.mode {
            WriteMode::Append => batch.clone(),
            WriteMode::Upsert => last_row_per_key(batch, &self.plan.key)?,
        };
        let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
        loop {
            let failure = match self.client_for(ctx).await {
                Err(err) => return Err(err),
                Ok(()) => match self.write_batch(&batch).await {
                    Ok(()) => return Ok(()),
                    Err(err) => classify(&err),
                },
            };
            match failure {
                Failure::Data => return self.write_rows(&batch, ctx).await,
                Failure::Fatal(reason) => return Err(RuntimeError::external("postgres", &self.address, reason)),
                Failure::Transient(reason) => {
                    self.client = None;
                    self.link_for(ctx).down(&reason);
                    let Some(delay) = delays.next() else {
                        return Err(RuntimeError::external("postgres", &self.address, reason));
                    };
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        self.client = None;
        Ok(())
    }
}

impl PostgresSink {
    fn link_for(&mut self, ctx: &SinkContext) -> &mut LinkState {
        self.link.get_or_insert_with(|| LinkState::connected(Arc::clone(&ctx.component), self.address.clone()))
    }

    /// Makes sure there is an open connection (re-preparing statements after a reconnect).
    async fn client_for(&mut self, ctx: &SinkContext) -> Result<(), RuntimeError> {
        if self.client.as_ref().is_some_and(|client| !client.is_closed()) {
            return Ok(());
        }
        let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
        loop {
            let attempt = async {
                let client = open(&self.config, self.tls.as_ref(), &self.address).await?;
                let statements = Statements::prepare(&client, &self.plan, &self.input)
                    .await
                    .map_err(|err| RuntimeError::external("postgres", &self.address, describe_error(&err)))?;
                Ok::<_, RuntimeError>((client, statements))
            };
            match attempt.await {
                Ok((client, statements)) => {
                    self.client = Some(client);
                    self.statements = statements;
                    self.link_for(ctx).up();
                    return Ok(());
                }
                Err(err) => {
                    self.link_for(ctx).down(&err);
                    match delays.next() {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(err),
                    }
                }
            }
        }
    }

    /// Writes the batch in one transaction; `Ok` once the server confirmed the commit.
    async fn write_batch(&self, batch: &RecordBatch) -> Result<(), tokio_postgres::Error> {
        let client = self.client.as_ref().expect("connected");
        client.batch_execute("BEGIN").await?;
        match self.write_statement(client, batch).await {
            Ok(()) => client.batch_execute("COMMIT").await,
            Err(err) => {
                // Leaves the connection usable for the row-by-row retry (it fails as well if
                // the connection is gone, and then the connection is re-opened).
                let _ = client.batch_execute("ROLLBACK").await;
                Err(err)
            }
        }
    }

    async fn write_statement(&self, client: &Client, batch: &RecordBatch) -> Result<(), tokio_postgres::Error> {
        let statements = &self.statements;
        match &statements.batch {
            None => {
                let sink = client.copy_in(&statements.copy).await?;
                let writer = BinaryCopyInWriter::new(sink, &statements.types);
                let mut writer = std::pin::pin!(writer);
                let mut row_values: Vec<PgValue<'_>> = Vec::with_capacity(batch.num_columns());
                for row in 0..batch.num_rows() {
                    row_values.clear();
                    for column in batch.columns() {
                        row_values.push(PgValue(cell(column, row).unwrap_or(Cell::Null)));
                    }
                    writer.as_mut().write_raw(row_values.iter()).await?;
                }
                writer.finish().await?;
            }
            Some(upsert) => {
                let arrays: Vec<Vec<PgValue<'_>>> = batch
                    .columns()
                    .iter()
                    .map(|column| {
                        (0..batch.num_rows()).map(|row| PgValue(cell(column, row).unwrap_or(Cell::Null))).collect()
                    })
                    .collect();
                let params: Vec<&(dyn ToSql + Sync)> = arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                client.execute(upsert, &params).await?;
            }
        }
        Ok(())
    }

    /// The batch was rejected for its data: insert row by row in one transaction (a savepoint
    /// per row), rejected rows to the policy; `Ok` once the server confirmed the commit.
    async fn write_rows(&mut self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let result = self.write_rows_in_transaction(batch, ctx).await;
        if result.is_err() {
            // The transaction may still be open: drop the connection, which rolls it back.
            self.client = None;
        }
        result
    }

    async fn write_rows_in_transaction(&self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let client = self.client.as_ref().expect("connected");
        let failed =
            |err: tokio_postgres::Error| RuntimeError::external("postgres", &self.address, describe_error(&err));
        client.batch_execute("BEGIN").await.map_err(failed)?;
        for row in 0..batch.num_rows() {
            let values: Vec<PgValue<'_>> =
                batch.columns().iter().map(|column| PgValue(cell(column, row).unwrap_or(Cell::Null))).collect();
            let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            client.batch_execute("SAVEPOINT weir_row").await.map_err(failed)?;
            match client.execute(&self.statements.row, &params).await {
                Ok(_) => client.batch_execute("RELEASE SAVEPOINT weir_row").await.map_err(failed)?,
                Err(err) if matches!(classify(&err), Failure::Data) => {
                    client.batch_execute("ROLLBACK TO SAVEPOINT weir_row").await.map_err(failed)?;
                    ctx.errors.handle(BadRecord {
                        position: format!("table {} (row {row} of the batch)", self.plan.table),
                        raw: &row_as_json(batch, row),
                        reason: describe_error(&err),
                    })?;
                }
                // Nothing of the batch is committed; the caller retries it whole.
                Err(err) => return Err(failed(err)),
            }
        }
        client.batch_execute("COMMIT").await.map_err(failed)
    }
}

/// An Arrow cell written as whatever type the target column has.
#[derive(Debug)]
struct PgValue<'a>(Cell<'a>);

/// Microseconds and days between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

impl ToSql for PgValue<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.0, ty) {
            (Cell::Null, _) => return Ok(IsNull::Yes),
            (Cell::Int(v), &Type::INT2) => out.put_i16(i16::try_from(v)?),
            (Cell::Int(v), &Type::INT4) => out.put_i32(i32::try_from(v)?),
            (Cell::Int(v), &Type::INT8) => out.put_i64(v),
            (Cell::Int(v), &Type::FLOAT8) => out.put_f64(v as f64),
            (Cell::Int(v), &Type::FLOAT4) => out.put_f32(v as f32),
            (Cell::Float(v), &Type::FLOAT8) => out.put_f64(v),
            (Cell::Float(v), &Type::FLOAT4) => out.put_f32(v as f32),
            (Cell::Bool(v), &Type::BOOL) => out.put_u8(u8::from(v)),
            (Cell::Bytes(v), &Type::BYTEA) => out.put_slice(v),
            (Cell::TimestampMicros(v), &Type::TIMESTAMP | &Type::TIMESTAMPTZ) => out.put_i64(v - PG_EPOCH_MICROS),
            (Cell::Date(v), &Type::DATE) => out.put_i32(v - PG_EPOCH_DAYS),
            (Cell::Text(v), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(v.as_bytes());
            }
            (Cell::Text(v), &Type::JSON) => out.put_slice(v.as_bytes()),
            (value, &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                out.put_slice(text(value).as_bytes())
            }
            (value, ty) => return Err(format!("cannot write {value:?} into a column of type {ty}").into()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn text(value: Cell<'_>) -> String {
    match value {
        Cell::Null => String::new(),
        Cell::Int(v) => v.to_string(),
        Cell::BigUint(v) => v.to_string(),
        Cell::Float(v) => v.to_string(),
        Cell::Bool(v) => v.to_string(),
        Cell::Text(v) => v.to_owned(),
        Cell::Bytes(v) => String::from_utf8_lossy(v).into_owned(),
        Cell::TimestampMicros(v) => {
            chrono::DateTime::from_timestamp_micros(v).map(|t| t.to_rfc3339()).unwrap_or_default()
        }
        Cell::Date(v) => {
            chrono::NaiveDate::from_num_days_from_ce_opt(v + 719_163).map(|d| d.to_string()).unwrap_or_default()
        }
    }
}
