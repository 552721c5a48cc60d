//! The `redis` sink: SET, HSET, XADD or PUBLISH per row, pipelined per batch.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::reconnect_backoff;
use weir_connector_support::secret::Access;
use weir_connector_support::template::Template;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::rows_as_json;

use crate::{describe_address, manager, open_client};

/// What the sink does per row.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RedisCommand {
    /// `SET key <row as JSON>`.
    Set,
    /// `HSET key column value ...`.
    Hset,
    /// `XADD key * payload <row as JSON>`.
    Xadd,
    /// `PUBLISH channel <row as JSON>`.
    Publish,
}

/// `redis` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://host:port/db` (`rediss://` for TLS).
    pub url: Spanned<String>,
    /// Password (with `username` for an ACL user), TLS.
    #[serde(flatten)]
    pub access: Access,
    /// What to do per row.
    pub command: RedisCommand,
    /// Key / stream / channel template.
    pub key: Spanned<String>,
    /// Expiry for `set` and `hset` (`1h`).
    pub ttl: Option<Spanned<String>>,
}

impl SinkSpec for RedisSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let client = open_client(&self.url, &self.access, ctx)?;
        let key =
            Template::parse(&self.key.value, input).map_err(|message| SpecIssue::at(&self.key.referenced, message))?;
        let ttl = match &self.ttl {
            None => None,
            Some(text) if matches!(self.command, RedisCommand::Set | RedisCommand::Hset) => Some(
                humantime::parse_duration(&text.value)
                    .map_err(|err| SpecIssue::at(&text.referenced, format!("`ttl`: {err}")))?,
            ),
            Some(text) => return Err(SpecIssue::at(&text.referenced, "`ttl` applies to `set` and `hset` only")),
        };
        Ok(Arc::new(RedisSinkFactory {
            address: describe_address(&client),
            client,
            command: self.command,
            key,
            ttl,
            columns: input.fields().iter().map(|f| f.name().clone()).collect(),
        }))
    }
}

#[derive(Debug, Clone)]
struct RedisSinkFactory {
    client: ::redis::Client,
    address: String,
    command: RedisCommand,
    key: Template,
    ttl: Option<Duration>,
    columns: Vec<String>,
}

#[async_trait]
impl SinkFactory for RedisSinkFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let connection = manager(&self.client, &self.address).await?;
        Ok(Box::new(RedisSink { connection, plan: self.clone() }) as Box<dyn Sink>)
    }
}

/// A connected sink: its connection and what was planned.
struct RedisSink {
    connection: ConnectionManager,
    plan: RedisSinkFactory,
}

#[async_trait]
impl Sink for RedisSink {
    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let keys = self.plan.key.render(batch)?;
        let mut pipe = ::redis::pipe();
        match self.plan.command {
            RedisCommand::Hset => {
                let options = FormatOptions::default().with_null("");
                let formatters = batch
                    .columns()
                    .iter()
                    .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
                    .collect::<Result<Vec<_>, _>>()?;
                for (row, key) in keys.iter().enumerate() {
                    let fields: Vec<(&str, String)> = self
                        .plan
                        .columns
                        .iter()
                        .zip(&formatters)
                        .enumerate()
                        .filter(|(column, _)| batch.column(*column).is_valid(row))
                        .map(|(_, (name, formatter))| (name.as_str(), formatter.value(row).to_string()))
                        .collect();
                    pipe.hset_multiple(key, &fields).ignore();
                    if let Some(ttl) = self.plan.ttl {
                        pipe.expire(key, ttl.as_secs() as i64).ignore();
                    }
                }
            }
            command => {
                let rows = rows_as_json(batch)?;
                for (row, key) in keys.iter().enumerate() {
                    let value = rows.row(row);
                    match command {
                        RedisCommand::Set => match self.plan.ttl {
                            Some(ttl) => pipe.set_ex(key, value, ttl.as_secs()).ignore(),
                            None => pipe.set(key, value).ignore(),
                        },
                        RedisCommand::Xadd => pipe.xadd(key, "*", &[("payload", value)]).ignore(),
                        _ => pipe.publish(key, value).ignore(),
                    };
                }
            }
        }
        let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
        loop {
            let result: Result<(), ::redis::RedisError> = pipe.query_async(&mut self.connection).await;
            match result {
                Ok(()) => return Ok(()),
                // The manager reconnects by itself; errors from Redis about the data (wrong
                // type for the key) are not worth retrying.
                Err(err) if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() => {
                    match delays.next() {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(RuntimeError::external("redis", &self.plan.address, err)),
                    }
                }
                Err(err) => return Err(RuntimeError::external("redis", &self.plan.address, err)),
            }
        }
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}
