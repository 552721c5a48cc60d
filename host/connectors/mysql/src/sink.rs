//! The `mysql` sink: multi-row INSERT (INSERT ... ON DUPLICATE KEY UPDATE for upserts), statements sized under the placeholder limit.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Params, Value};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{LinkState, connect, reconnect_backoff};
use weir_connector_support::secret::Access;
use weir_connector_support::sql::{
    Cell, TableOptions, TablePlan, WriteMode, cell, check_columns, last_row_per_key, quote_identifier,
};
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_engine::errors::BadRecord;
use weir_engine::errors::row_as_json;

use crate::{describe_address, plan_connection};

/// Placeholders MySQL accepts in one statement.
const MAX_PLACEHOLDERS: usize = 65_535;

/// `mysql` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSinkConfig {
    /// `mysql://user@host:port/database` (`?require_ssl=true` for TLS).
    pub url: Spanned<String>,
    /// User name, password, TLS.
    #[serde(flatten)]
    pub access: Access,
    /// Table, mode, key, create_table.
    #[serde(flatten)]
    pub table: TableOptions,
}

impl SinkSpec for MysqlSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let opts = plan_connection(&self.url, &self.access, ctx)?;
        check_columns(input, &self.table.table)?;
        let plan = self.table.plan(input)?;
        let address = describe_address(&opts);
        Ok(Arc::new(MysqlSinkFactory {
            opts,
            address,
            plan,
            create_table: self.table.create_table,
            input: input.clone(),
        }))
    }
}

#[derive(Debug)]
struct MysqlSinkFactory {
    opts: Opts,
    address: String,
    plan: TablePlan,
    create_table: bool,
    input: SchemaRef,
}

#[async_trait]
impl SinkFactory for MysqlSinkFactory {
    fn ordered_by(&self) -> Option<Vec<usize>> {
        self.plan.ordered_by()
    }

    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let mut conn = connect("mysql", &self.address, Conn::new(self.opts.clone())).await?;
        if self.create_table {
            conn.query_drop(create_table_sql(&self.plan, &self.input))
                .await
                .map_err(|err| RuntimeError::external("mysql", &self.address, err))?;
        }
        let table = quote_identifier(&self.plan.table, '`');
        let columns: Vec<String> = self.input.fields().iter().map(|f| quote_identifier(f.name(), '`')).collect();
        // Fail at start, not at the first batch, if the table or a column is missing.
        conn.query_drop(format!("SELECT {} FROM {table} LIMIT 0", columns.join(", ")))
            .await
            .map_err(|err| RuntimeError::external("mysql", &self.address, err))?;
        let upsert = match self.plan.mode {
            WriteMode::Append => String::new(),
            WriteMode::Upsert => {
                let updates: Vec<String> = (0..columns.len())
                    .filter(|i| !self.plan.key.contains(i))
                    .map(|i| format!("{0} = VALUES({0})", columns[i]))
                    .collect();
                if updates.is_empty() {
                    let key = &columns[self.plan.key[0]];
                    format!(" ON DUPLICATE KEY UPDATE {key} = {key}")
                } else {
                    format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
                }
            }
        };
        let row_placeholder = format!("({})", vec!["?"; columns.len()].join(", "));
        Ok(Box::new(MysqlSink {
            opts: self.opts.clone(),
            address: self.address.clone(),
            plan: self.plan.clone(),
            insert_head: format!("INSERT INTO {table} ({}) VALUES ", columns.join(", ")),
            upsert,
            row_placeholder,
            conn: Some(conn),
            link: None,
        }) as Box<dyn Sink>)
    }
}

fn create_table_sql(plan: &TablePlan, input: &SchemaRef) -> String {
    let mut columns: Vec<String> = input
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            format!("{} {}", quote_identifier(f.name(), '`'), mysql_type(f.data_type(), plan.key.contains(&i)))
        })
        .collect();
    if !plan.key.is_empty() {
        let key: Vec<String> = plan.key.iter().map(|&i| quote_identifier(input.field(i).name(), '`')).collect();
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {} ({})", quote_identifier(&plan.table, '`'), columns.join(", "))
}

fn mysql_type(data_type: &DataType, is_key: bool) -> &'static str {
    match data_type {
        DataType::Int8 => "TINYINT",
        DataType::Int16 | DataType::UInt8 => "SMALLINT",
        DataType::Int32 | DataType::UInt16 => "INT",
        DataType::Int64 | DataType::UInt32 => "BIGINT",
        DataType::UInt64 => "BIGINT UNSIGNED",
        DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Boolean => "BOOLEAN",
        DataType::Binary | DataType::LargeBinary if is_key => "VARBINARY(255)",
        DataType::Binary | DataType::LargeBinary => "LONGBLOB",
        DataType::Date32 => "DATE",
        DataType::Timestamp(_, _) => "DATETIME(6)",
        // A key must have a bounded length in MySQL.
        _ if is_key => "VARCHAR(255)",
        _ => "LONGTEXT",
    }
}

struct MysqlSink {
    opts: Opts,
    address: String,
    plan: TablePlan,
    insert_head: String,
    upsert: String,
    row_placeholder: String,
    conn: Option<Conn>,
    link: Option<LinkState>,
}

enum Failure {
    Transient(String),
    Data,
    Fatal(String),
}

fn classify(err: &mysql_async::Error) -> Failure {
    match err {
        mysql_async::Error::Server(server) => match &server.state[..2.min(server.state.len())] {
            "22" | "23" => Failure::Data,
            // Deadlock / lock wait timeout: retry.
            "40" => Failure::Transient(err.to_string()),
            _ if server.code == 1213 || server.code == 1205 => Failure::Transient(err.to_string()),
            _ => Failure::Fatal(err.to_string()),
        },
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => Failure::Transient(err.to_string()),
        other => Failure::Fatal(other.to_string()),
    }
}

fn value(cell: Cell<'_>) -> Value {
    match cell {
        Cell::Null => Value::NULL,
        Cell::Int(v) => Value::Int(v),
        Cell::BigUint(v) => Value::UInt(v),
        Cell::Float(v) => Value::Double(v),
        Cell::Bool(v) => Value::Int(i64::from(v)),
        Cell::Text(v) => Value::Bytes(v.as_bytes().to_vec()),
        Cell::Bytes(v) => Value::Bytes(v.to_vec()),
        Cell::TimestampMicros(v) => match chrono::DateTime::from_timestamp_micros(v) {
            Some(t) => {
                use chrono::{Datelike, Timelike};
                let t = t.naive_utc();
                Value::Date(
                    t.year() as u16,
                    t.month() as u8,
                    t.day() as u8,
                    t.hour() as u8,
                    t.minute() as u8,
                    t.second() as u8,
                    t.and_utc().timestamp_subsec_micros(),
                )
            }
            None => Value::NULL,
        },
        Cell::Date(v) => match chrono::NaiveDate::from_num_days_from_ce_opt(v + 719_163) {
            Some(d) => {
                use chrono::Datelike;
                Value::Date(d.year() as u16, d.month() as u8, d.day() as u8, 0, 0, 0, 0)
            }
            None => Value::NULL,
        },
    }
}

fn row_values(batch: &RecordBatch, row: usize, out: &mut Vec<Value>) {
    for column in batch.columns() {
        out.push(value(cell(column, row).unwrap_or(Cell::Null)));
    }
}

#[async_trait]
impl Sink for MysqlSink {
    async fn write(&mut self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let batch = match self.plan.mode {
            WriteMode::Append => batch.clone(),
            WriteMode::Upsert => last_row_per_key(batch, &self.plan.key)?,
        };
        let rows_per_statement = (MAX_PLACEHOLDERS / batch.num_columns().max(1)).max(1);
        let mut start = 0;
        while start < batch.num_rows() {
            let len = rows_per_statement.min(batch.num_rows() - start);
            self.write_chunk(&batch.slice(start, len), ctx).await?;
            start += len;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        if let Some(conn) = self.conn.take() {
            let _ = conn.disconnect().await;
        }
        Ok(())
    }
}

impl MysqlSink {
    fn statement(&self, rows: usize) -> String {
        let mut sql = self.insert_head.clone();
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&self.row_placeholder);
        }
        sql.push_str(&self.upsert);
        sql
    }

    fn link_for(&mut self, ctx: &SinkContext) -> &mut LinkState {
        self.link.get_or_insert_with(|| LinkState::connected(Arc::clone(&ctx.component), self.address.clone()))
    }

    async fn write_chunk(&mut self, chunk: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let sql = self.statement(chunk.num_rows());
        let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
        loop {
            if self.conn.is_none() {
                match Conn::new(self.opts.clone()).await {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        self.link_for(ctx).up();
                    }
                    Err(err) => {
                        self.link_for(ctx).down(&err);
                        match delays.next() {
                            Some(delay) => {
                                tokio::time::sleep(delay).await;
                                continue;
                            }
                            None => return Err(RuntimeError::external("mysql", &self.address, err)),
                        }
                    }
                }
            }
            let conn = self.conn.as_mut().expect("connected");
            // Built per attempt (retries are rare) rather than cloned for every attempt.
            let mut params = Vec::with_capacity(chunk.num_rows() * chunk.num_columns());
            for row in 0..chunk.num_rows() {
                row_values(chunk, row, &mut params);
            }
            let failure = match conn.exec_drop(&sql, Params::Positional(params)).await {
                Ok(()) => return Ok(()),
                Err(err) => classify(&err),
            };
            match failure {
                Failure::Data => return self.write_rows(chunk, ctx).await,
                Failure::Fatal(reason) => return Err(RuntimeError::external("mysql", &self.address, reason)),
                Failure::Transient(reason) => {
                    self.conn = None;
                    self.link_for(ctx).down(&reason);
                    match delays.next() {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(RuntimeError::external("mysql", &self.address, reason)),
                    }
                }
            }
        }
    }

    async fn write_rows(&mut self, chunk: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let sql = self.statement(1);
        let conn = self.conn.as_mut().expect("connected");
        for row in 0..chunk.num_rows() {
            let mut params = Vec::with_capacity(chunk.num_columns());
            row_values(chunk, row, &mut params);
            if let Err(err) = conn.exec_drop(&sql, Params::Positional(params)).await {
                match classify(&err) {
                    Failure::Data => ctx.errors.handle(BadRecord {
                        position: format!("table {} (row {row} of the batch)", self.plan.table),
                        raw: &row_as_json(chunk, row),
                        reason: err.to_string(),
                    })?,
                    Failure::Transient(reason) | Failure::Fatal(reason) => {
                        self.conn = None;
                        return Err(RuntimeError::external("mysql", &self.address, reason));
                    }
                }
            }
        }
        Ok(())
    }
}
