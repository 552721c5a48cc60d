//! `redis` source (Redis Streams with a consumer group) and sink (SET, HSET, XADD, PUBLISH).
//!
//! ```yaml
//! sources:
//!   events:
//!     type: redis
//!     url: redis://127.0.0.1:6379
//!     stream: events               # stream key
//!     group: weir                  # consumer group (created at the stream's start if missing)
//!     consumer: weir-1             # consumer name: keep it stable to recover its pending entries
//!     field: payload               # the entry field holding the record (default `payload`)
//!     format: json
//!     schema: { id: int64, kind: string }
//!     metadata: { entry_id: id }
//! sinks:
//!   latest:
//!     type: redis
//!     inputs: [stats]
//!     url: redis://127.0.0.1:6379
//!     command: hset                # set (value: the row as JSON) | hset (fields: the columns)
//!                                  # | xadd (field `payload`: the row as JSON) | publish (message: the row as JSON)
//!     key: "device:{device_id}"    # template: key, stream or channel
//!     ttl: 1h                      # set/hset: expire keys after this long
//! ```
//!
//! Delivery: entries are read with XREADGROUP and acknowledged with XACK only after every sink
//! confirmed the batch they went into. At start the consumer first re-reads its own pending
//! entries (delivered before a crash or restart, never acknowledged), then new ones, so nothing
//! that was read but not confirmed is lost (at-least-once). The sink sends each batch as one
//! pipeline and returns when Redis answered. Connections are re-established with backoff.
//!
//! Authentication and TLS (source, sink and lookup table): `password: { env: REDIS_PASSWORD }`
//! (or `{ file: ... }`, with `username` for an ACL user), and `rediss://` or a `tls:` block
//! (`ca_file`, `cert_file`, `key_file`).

pub mod table;

use std::sync::Arc;
use std::time::Duration;

use ::redis::AsyncCommands;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::{StreamReadOptions, StreamReadReply};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::support::link::{CONNECT_TIMEOUT, LinkState, connect, reconnect_backoff};
use super::support::pump::{emit, end_and_drain};
use super::support::secret::Access;
use super::support::template::Template;
use super::support::tls::plan_tls;
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    BoxFuture, Durability, PlanContext, PlannedSource, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec, Source,
    SourceContext, SourceSpec,
};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::encode::rows_as_json;
use weir_formats::payload::{Envelope, MessageLayout, MetaType, MetaValue, PayloadOptions};

const METADATA: &[(&str, MetaType)] = &[("id", MetaType::Utf8), ("stream", MetaType::Utf8)];

/// How long one XREADGROUP waits for new entries.
const BLOCK: Duration = Duration::from_millis(500);

/// `redis` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSourceConfig {
    /// `redis://host:port/db` (`rediss://` for TLS).
    pub url: Spanned<String>,
    /// Password (with `username` for an ACL user), TLS.
    #[serde(flatten)]
    pub access: Access,
    /// Stream key.
    pub stream: String,
    /// Consumer group.
    pub group: String,
    /// Consumer name within the group.
    #[serde(default = "default_consumer")]
    pub consumer: String,
    /// Entry field with the record.
    #[serde(default = "default_field")]
    pub field: String,
    /// Payload format, schema, metadata columns.
    #[serde(flatten)]
    pub payload: PayloadOptions,
}

fn default_consumer() -> String {
    "weir".into()
}

fn default_field() -> String {
    "payload".into()
}

fn open_client(url: &Spanned<String>, access: &Access, ctx: &PlanContext) -> Result<::redis::Client, SpecIssue> {
    use ::redis::{ConnectionAddr, IntoConnectionInfo};
    let bad = |err: &dyn std::fmt::Display| SpecIssue::at(&url.referenced, format!("bad Redis URL: {err}"));
    let parsed = url::Url::parse(&url.value).map_err(|err| bad(&err))?;
    let mut info = url.value.as_str().into_connection_info().map_err(|err| bad(&err))?;
    let (username, password) = access.resolve(&parsed, ctx)?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = username {
        settings = settings.set_username(username);
    }
    if let Some(password) = password {
        settings = settings.set_password(password.expose());
    }
    info = info.set_redis_settings(settings);
    let Some(tls) = plan_tls(parsed.scheme() == "rediss", access.tls.as_ref(), ctx)? else {
        return ::redis::Client::open(info).map_err(|err| bad(&err));
    };
    if let ConnectionAddr::Tcp(host, port) = info.addr().clone() {
        info = info.set_addr(ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None });
    }
    let certificates = ::redis::TlsCertificates {
        client_tls: tls
            .identity
            .map(|identity| ::redis::ClientTlsConfig { client_cert: identity.cert_pem, client_key: identity.key_pem }),
        root_cert: tls.ca_pem,
    };
    ::redis::Client::build_with_tls(info, certificates).map_err(|err| bad(&err))
}

fn describe_address(client: &::redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

async fn manager(client: &::redis::Client, address: &str) -> Result<ConnectionManager, RuntimeError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(10)))
        .set_number_of_retries(3);
    connect("redis", address, ConnectionManager::new_with_config(client.clone(), config)).await
}

impl SourceSpec for RedisSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let client = open_client(&self.url, &self.access, ctx)?;
        let layout = self.payload.plan(METADATA)?;
        let factory = RedisSource {
            address: describe_address(&client),
            client,
            stream: self.stream.clone(),
            group: self.group.clone(),
            consumer: self.consumer.clone(),
            field: self.field.clone(),
            layout: layout.clone(),
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema: layout.schema().clone(), parallelism: 1, factory: Arc::new(factory) })
    }
}

#[derive(Debug, Clone)]
struct RedisSource {
    client: ::redis::Client,
    address: String,
    stream: String,
    group: String,
    consumer: String,
    field: String,
    layout: MessageLayout,
    batch_size: usize,
}

/// One stream entry.
struct Entry {
    stream: Arc<str>,
    id: String,
    payload: Vec<u8>,
}

impl Envelope for Entry {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn position(&self) -> String {
        format!("stream {} entry {}", self.stream, self.id)
    }

    fn metadata(&self, field: usize) -> MetaValue<'_> {
        match field {
            0 => MetaValue::Utf8(Some(&self.id)),
            _ => MetaValue::Utf8(Some(&self.stream)),
        }
    }
}

/// Reads entries in its own task (an XREADGROUP cannot be cancelled halfway without losing its
/// answer): first this consumer's pending entries, then new ones.
async fn read_entries(
    config: RedisSource,
    mut connection: ConnectionManager,
    entries: mpsc::Sender<Vec<Entry>>,
    component: Arc<str>,
) {
    let stream: Arc<str> = Arc::from(config.stream.as_str());
    let mut link = LinkState::connected(component, config.address.clone());
    // `Some(id)`: still replaying pending entries after `id`; `None`: reading new entries.
    let mut pending_after: Option<String> = Some("0".into());
    let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
    loop {
        let mut options = StreamReadOptions::default().group(&config.group, &config.consumer).count(config.batch_size);
        let start = match &pending_after {
            Some(after) => after.clone(),
            None => {
                options = options.block(BLOCK.as_millis() as usize);
                ">".to_owned()
            }
        };
        let reply: Result<Option<StreamReadReply>, _> =
            connection.xread_options(&[config.stream.as_str()], &[start.as_str()], &options).await;
        let reply = match reply {
            Ok(reply) => {
                link.up();
                delays = backon::BackoffBuilder::build(reconnect_backoff());
                reply
            }
            Err(err) => {
                link.down(&err);
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
                continue;
            }
        };
        let ids =
            reply.map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect::<Vec<_>>()).unwrap_or_default();
        if ids.is_empty() {
            pending_after = None; // pending entries replayed (or none): read new ones
            if entries.is_closed() {
                return;
            }
            continue;
        }
        if let Some(after) = &mut pending_after {
            after.clone_from(&ids.last().expect("not empty").id);
        }
        let batch: Vec<Entry> = ids
            .into_iter()
            .map(|entry| {
                let payload = match entry.map.get(&config.field) {
                    Some(value) => ::redis::from_redis_value_ref::<Vec<u8>>(value).unwrap_or_default(),
                    None => Vec::new(),
                };
                Entry { stream: Arc::clone(&stream), id: entry.id, payload }
            })
            .collect();
        if entries.send(batch).await.is_err() {
            return;
        }
    }
}

impl Source for RedisSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let config = &*self;
            let fail = |err: ::redis::RedisError| RuntimeError::external("redis", &config.address, err);
            let mut acks = manager(&config.client, &config.address).await?;
            let created: Result<(), _> = acks.xgroup_create_mkstream(&config.stream, &config.group, "0").await;
            if let Err(err) = created
                && err.code() != Some("BUSYGROUP")
            {
                return Err(fail(err));
            }
            let reader = manager(&config.client, &config.address).await?;
            let (sender, mut receiver) = mpsc::channel(4);
            let reading = tokio::spawn(read_entries(config.clone(), reader, sender, Arc::clone(&ctx.component)));
            let mut decoder = config.layout.decoder(config.batch_size)?;
            let mut tracker: DeliveryTracker<Vec<String>> = DeliveryTracker::new();
            loop {
                tokio::select! {
                    biased;
                    () = ctx.stop.cancelled() => break,
                    outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => {
                        acknowledge(&mut acks, config, outcomes).await?;
                    }
                    batch = receiver.recv() => {
                        let Some(batch) = batch else { break };
                        let ids = batch.iter().map(|entry| entry.id.clone()).collect();
                        emit(ctx, &mut decoder, &mut tracker, &batch, ids).await?;
                    }
                }
            }
            reading.abort();
            end_and_drain(ctx, &mut tracker, |outcomes| {
                let mut acks = acks.clone();
                async move { acknowledge(&mut acks, config, outcomes).await }
            })
            .await
        })
    }
}

async fn acknowledge(
    connection: &mut ConnectionManager,
    config: &RedisSource,
    outcomes: Vec<Outcome<Vec<String>>>,
) -> Result<(), RuntimeError> {
    let delivered: Vec<String> = outcomes
        .into_iter()
        .filter_map(|outcome| match outcome {
            Outcome::Delivered(ids) => Some(ids),
            // Not acknowledged: stays pending and is replayed on the next start.
            Outcome::Failed(_) => None,
        })
        .flatten()
        .collect();
    if delivered.is_empty() {
        return Ok(());
    }
    let acked: Result<usize, _> = connection.xack(&config.stream, &config.group, &delivered).await;
    if let Err(err) = acked {
        // The entries stay pending and are replayed after a restart (at-least-once).
        tracing::warn!(stream = %config.stream, error = %err, "XACK failed; entries stay pending");
    }
    Ok(())
}

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

#[derive(Debug)]
struct RedisSinkFactory {
    client: ::redis::Client,
    address: String,
    command: RedisCommand,
    key: Template,
    ttl: Option<Duration>,
    columns: Vec<String>,
}

impl SinkFactory for RedisSinkFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async move {
            let connection = manager(&self.client, &self.address).await?;
            Ok(Box::new(RedisSink {
                connection,
                address: self.address.clone(),
                command: self.command,
                key: self.key.clone(),
                ttl: self.ttl,
                columns: self.columns.clone(),
            }) as Box<dyn Sink>)
        })
    }
}

struct RedisSink {
    connection: ConnectionManager,
    address: String,
    command: RedisCommand,
    key: Template,
    ttl: Option<Duration>,
    columns: Vec<String>,
}

impl Sink for RedisSink {
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        _ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let keys = self.key.render(batch)?;
            let mut pipe = ::redis::pipe();
            match self.command {
                RedisCommand::Hset => {
                    let options = FormatOptions::default().with_null("");
                    let formatters = batch
                        .columns()
                        .iter()
                        .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
                        .collect::<Result<Vec<_>, _>>()?;
                    for (row, key) in keys.iter().enumerate() {
                        let fields: Vec<(&str, String)> = self
                            .columns
                            .iter()
                            .zip(&formatters)
                            .enumerate()
                            .filter(|(column, _)| batch.column(*column).is_valid(row))
                            .map(|(_, (name, formatter))| (name.as_str(), formatter.value(row).to_string()))
                            .collect();
                        pipe.hset_multiple(key, &fields).ignore();
                        if let Some(ttl) = self.ttl {
                            pipe.expire(key, ttl.as_secs() as i64).ignore();
                        }
                    }
                }
                command => {
                    let rows = rows_as_json(batch)?;
                    for (row, key) in keys.iter().enumerate() {
                        let value = rows.row(row);
                        match command {
                            RedisCommand::Set => match self.ttl {
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
                            None => return Err(RuntimeError::external("redis", &self.address, err)),
                        }
                    }
                    Err(err) => return Err(RuntimeError::external("redis", &self.address, err)),
                }
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
}
