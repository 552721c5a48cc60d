//! `amqp` source and sink (AMQP 0-9-1: RabbitMQ, LavinMQ).
//!
//! ```yaml
//! sources:
//!   orders:
//!     type: amqp
//!     url: amqp://guest:guest@127.0.0.1:5672/%2f
//!     queue: orders
//!     declare: true          # declare the queue (durable) if it does not exist
//!     prefetch: 2000         # unacknowledged deliveries the broker may send ahead
//!     format: json
//!     schema: { id: int64, amount: float64 }
//!     metadata: { key: routing_key, redelivered: redelivered }
//! sinks:
//!   out:
//!     type: amqp
//!     inputs: [big]
//!     url: amqp://guest:guest@127.0.0.1:5672/%2f
//!     exchange: ""             # default exchange: the routing key is the queue name
//!     routing_key: "orders.{region}"
//! ```
//!
//! Delivery: manual acks. A batch's deliveries are acknowledged (`multiple` up to its last tag)
//! once every sink confirmed it; a failed batch is negatively acknowledged with requeue. If the
//! connection drops, the broker requeues everything unacknowledged, the source reconnects with
//! backoff and reads it again (at-least-once; acks for the old channel are dropped, never sent on
//! the new one). The sink publishes persistent messages with publisher confirms and returns once
//! the broker confirmed the whole batch.
//!
//! Authentication and TLS: `username` and `password: { env: AMQP_PASSWORD }` (or `{ file: ... }`;
//! both win over the URL's), and `amqps://` or a `tls:` block (`ca_file`, added to the system's
//! authorities; `cert_file` and `key_file` for a client certificate).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Channel, Connect, Connection, ConnectionProperties};
use serde::Deserialize;

use super::support::link::{LinkState, connect, reconnect_backoff};
use super::support::pump::{emit, end_and_drain, sleep_until};
use super::support::secret::Access;
use super::support::template::Template;
use super::support::tls::{Tls, plan_tls};
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    BoxFuture, Durability, PlanContext, PlannedSource, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec, Source,
    SourceContext, SourceSpec,
};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::encode::rows_as_json;
use weir_formats::payload::{Envelope, MessageDecoder, MessageLayout, MetaType, MetaValue, PayloadOptions};

const METADATA: &[(&str, MetaType)] = &[
    ("routing_key", MetaType::Utf8),
    ("exchange", MetaType::Utf8),
    ("redelivered", MetaType::Int64),
    ("delivery_tag", MetaType::Int64),
];

const LINGER: Duration = Duration::from_millis(20);

/// `amqp` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceConfig {
    /// `amqp://user@host:port/vhost` (`amqps://` for TLS).
    pub url: Spanned<String>,
    /// User name, password, TLS.
    #[serde(flatten)]
    pub access: Access,
    /// Queue to consume.
    pub queue: String,
    /// Declare the queue (durable) if missing.
    #[serde(default)]
    pub declare: bool,
    /// Prefetch count (default: four batches).
    pub prefetch: Option<u16>,
    /// Payload format, schema, metadata columns.
    #[serde(flatten)]
    pub payload: PayloadOptions,
}

/// A broker and how to reach it: the parsed URL with the options' user name and password
/// applied, and TLS (`amqps://`, or a `tls:` block). `Debug` shows only the address.
#[derive(Clone)]
struct Broker {
    uri: AMQPUri,
    tls: Option<Tls>,
    /// `host:port/vhost`, without credentials.
    address: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("address", &self.address).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl Broker {
    fn plan(url: &Spanned<String>, access: &Access, ctx: &PlanContext) -> Result<Self, SpecIssue> {
        let bad = |err: &dyn std::fmt::Display| SpecIssue::at(&url.referenced, format!("bad URL: {err}"));
        url::Url::parse(&url.value).map_err(|err| bad(&err))?;
        let mut uri: AMQPUri = url.value.parse().map_err(|err: String| bad(&err))?;
        let (username, password) = access.read(ctx)?;
        if let Some(username) = username {
            uri.authority.userinfo.username = username;
        }
        if let Some(password) = password {
            uri.authority.userinfo.password = password.expose().to_owned();
        }
        let tls = plan_tls(uri.scheme == AMQPScheme::AMQPS, access.tls.as_ref(), ctx)?;
        if tls.is_some() {
            uri.scheme = AMQPScheme::AMQPS;
        }
        let address = format!("{}:{}/{}", uri.authority.host, uri.authority.port, uri.vhost);
        Ok(Self { uri, tls, address })
    }

    /// Connects with a bounded timeout.
    async fn connect(&self) -> Result<Connection, RuntimeError> {
        let config = match &self.tls {
            None => OwnedTLSConfig::default(),
            Some(tls) => OwnedTLSConfig {
                identity: tls.identity.as_ref().map(|identity| OwnedIdentity::PKCS8 {
                    pem: identity.cert_pem.clone(),
                    key: identity.key_pem.clone(),
                }),
                cert_chain: tls.ca_pem.as_ref().map(|pem| String::from_utf8_lossy(pem).into_owned()),
            },
        };
        let runtime =
            lapin::runtime::default_runtime().map_err(|err| RuntimeError::external("amqp", &self.address, err))?;
        let uri = self.uri.clone();
        connect("amqp", &self.address, uri.connect_with_config(ConnectionProperties::default(), config, runtime)).await
    }
}

impl SourceSpec for AmqpSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let broker = Broker::plan(&self.url, &self.access, ctx)?;
        let layout = self.payload.plan(METADATA)?;
        let prefetch = self.prefetch.unwrap_or_else(|| (ctx.batch_size * 4).min(usize::from(u16::MAX)) as u16);
        let factory = AmqpSource {
            address: broker.address.clone(),
            broker,
            queue: self.queue.clone(),
            declare: self.declare,
            prefetch,
            layout: layout.clone(),
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema: layout.schema().clone(), parallelism: 1, factory: Arc::new(factory) })
    }
}

#[derive(Debug, Clone)]
struct AmqpSource {
    broker: Broker,
    address: String,
    queue: String,
    declare: bool,
    prefetch: u16,
    layout: MessageLayout,
    batch_size: usize,
}

/// A delivery as the message decoder reads it.
struct Received(Delivery);

impl Envelope for Received {
    fn payload(&self) -> &[u8] {
        &self.0.data
    }

    fn position(&self) -> String {
        format!("routing key {} (delivery tag {})", self.0.routing_key, self.0.delivery_tag)
    }

    fn metadata(&self, field: usize) -> MetaValue<'_> {
        let delivery = &self.0;
        match field {
            0 => MetaValue::Utf8(Some(delivery.routing_key.as_str())),
            1 => MetaValue::Utf8(Some(delivery.exchange.as_str())),
            2 => MetaValue::Int64(Some(i64::from(delivery.redelivered))),
            _ => MetaValue::Int64(Some(delivery.delivery_tag as i64)),
        }
    }
}

/// What to acknowledge for one batch: the channel it came from and its delivery tags.
struct Tags {
    generation: u64,
    tags: Vec<u64>,
}

impl AmqpSource {
    async fn open_consumer(&self) -> Result<(Connection, Channel, lapin::Consumer), RuntimeError> {
        let fail = |err: lapin::Error| RuntimeError::external("amqp", &self.address, err);
        let connection = self.broker.connect().await?;
        let channel = connection.create_channel().await.map_err(fail)?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(fail)?;
        let options = QueueDeclareOptions { durable: true, passive: !self.declare, ..Default::default() };
        channel
            .queue_declare(self.queue.as_str().into(), options, FieldTable::default())
            .await
            .map_err(|err| RuntimeError::external("amqp", &self.address, format!("queue `{}`: {err}", self.queue)))?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "weir".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail)?;
        Ok((connection, channel, consumer))
    }
}

impl Source for AmqpSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let config = &*self;
            let (mut connection, mut channel, mut consumer) = config.open_consumer().await?;
            let mut link = LinkState::connected(Arc::clone(&ctx.component), config.address.clone());
            let mut generation = 0u64;
            let mut decoder = config.layout.decoder(config.batch_size)?;
            let mut tracker: DeliveryTracker<Tags> = DeliveryTracker::new();
            let mut pending: Vec<Received> = Vec::with_capacity(config.batch_size);
            let mut linger: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    biased;
                    () = ctx.stop.cancelled() => break,
                    outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => {
                        acknowledge(&channel, generation, outcomes).await;
                    }
                    () = sleep_until(linger), if linger.is_some() => {
                        flush(ctx, &mut decoder, &mut tracker, &mut pending, generation).await?;
                        linger = None;
                    }
                    next = consumer.next() => {
                        match next {
                            Some(Ok(delivery)) => {
                                pending.push(Received(delivery));
                                linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                                if pending.len() >= config.batch_size {
                                    flush(ctx, &mut decoder, &mut tracker, &mut pending, generation).await?;
                                    linger = None;
                                }
                            }
                            failure => {
                                let reason = match failure {
                                    Some(Err(err)) => err.to_string(),
                                    _ => "consumer cancelled by the broker".to_owned(),
                                };
                                // Deliveries of the lost channel are requeued by the broker; drop them here.
                                pending.clear();
                                linger = None;
                                link.down(&reason);
                                let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
                                loop {
                                    let Some(delay) = delays.next() else {
                                        return Err(RuntimeError::external("amqp", &config.address, reason));
                                    };
                                    tokio::select! {
                                        () = tokio::time::sleep(delay) => {}
                                        () = ctx.stop.cancelled() => break,
                                    }
                                    match config.open_consumer().await {
                                        Ok(opened) => {
                                            (connection, channel, consumer) = opened;
                                            generation += 1;
                                            link.up();
                                            break;
                                        }
                                        Err(err) => link.down(&err),
                                    }
                                }
                            }
                        }
                    }
                }
            }
            flush(ctx, &mut decoder, &mut tracker, &mut pending, generation).await?;
            let acks_channel = channel.clone();
            end_and_drain(ctx, &mut tracker, |outcomes| {
                let channel = &acks_channel;
                async move {
                    acknowledge(channel, generation, outcomes).await;
                    Ok(())
                }
            })
            .await?;
            let _ = channel.close(200, "weir source stopped".into()).await;
            let _ = connection.close(200, "weir source stopped".into()).await;
            Ok(())
        })
    }
}

async fn flush(
    ctx: &mut SourceContext,
    decoder: &mut MessageDecoder,
    tracker: &mut DeliveryTracker<Tags>,
    pending: &mut Vec<Received>,
    generation: u64,
) -> Result<(), RuntimeError> {
    if pending.is_empty() {
        return Ok(());
    }
    let tags = Tags { generation, tags: pending.iter().map(|d| d.0.delivery_tag).collect() };
    emit(ctx, decoder, tracker, pending, tags).await?;
    pending.clear();
    Ok(())
}

async fn acknowledge(channel: &Channel, generation: u64, outcomes: Vec<Outcome<Tags>>) {
    for outcome in outcomes {
        let result = match outcome {
            Outcome::Delivered(Tags { generation: g, .. }) | Outcome::Failed(Tags { generation: g, .. })
                if g != generation =>
            {
                continue; // that channel is gone; the broker requeued its deliveries
            }
            Outcome::Delivered(Tags { tags, .. }) => match tags.iter().max() {
                // Everything before this batch was acknowledged or rejected already, in order.
                Some(&last) => channel.basic_ack(last, BasicAckOptions { multiple: true }).await,
                None => Ok(()),
            },
            Outcome::Failed(Tags { tags, .. }) => {
                let mut result = Ok(());
                for tag in tags {
                    result = channel.basic_nack(tag, BasicNackOptions { multiple: false, requeue: true }).await;
                }
                result
            }
        };
        if let Err(err) = result {
            tracing::debug!(error = %err, "ack failed; the broker will redeliver");
        }
    }
}

/// `amqp` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSinkConfig {
    /// `amqp://user@host:port/vhost` (`amqps://` for TLS).
    pub url: Spanned<String>,
    /// User name, password, TLS.
    #[serde(flatten)]
    pub access: Access,
    /// Exchange (default: the default exchange, `""`).
    #[serde(default)]
    pub exchange: String,
    /// Routing key template.
    pub routing_key: Spanned<String>,
}

impl SinkSpec for AmqpSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let broker = Broker::plan(&self.url, &self.access, ctx)?;
        let routing_key = Template::parse(&self.routing_key.value, input)
            .map_err(|message| SpecIssue::at(&self.routing_key.referenced, message))?;
        Ok(Arc::new(AmqpSinkFactory {
            address: broker.address.clone(),
            broker,
            exchange: self.exchange.clone(),
            routing_key,
        }))
    }
}

#[derive(Debug, Clone)]
struct AmqpSinkFactory {
    broker: Broker,
    address: String,
    exchange: String,
    routing_key: Template,
}

impl AmqpSinkFactory {
    async fn open(&self) -> Result<(Connection, Channel), RuntimeError> {
        let connection = self.broker.connect().await?;
        let fail = |err: lapin::Error| RuntimeError::external("amqp", &self.address, err);
        let channel = connection.create_channel().await.map_err(fail)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(fail)?;
        Ok((connection, channel))
    }
}

impl SinkFactory for AmqpSinkFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async move {
            let (connection, channel) = self.open().await?;
            Ok(Box::new(AmqpSink { factory: self.clone(), connection: Some((connection, channel)), link: None })
                as Box<dyn Sink>)
        })
    }
}

struct AmqpSink {
    factory: AmqpSinkFactory,
    connection: Option<(Connection, Channel)>,
    link: Option<LinkState>,
}

impl Sink for AmqpSink {
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let keys = self.factory.routing_key.render(batch)?;
            let rows = rows_as_json(batch)?;
            let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
            loop {
                let reason = match self.publish(&keys, &rows).await {
                    Ok(()) => {
                        if let Some(link) = &mut self.link {
                            link.up();
                        }
                        return Ok(());
                    }
                    Err(PublishError::Refused(reason)) => {
                        return Err(RuntimeError::external("amqp", &self.factory.address, reason));
                    }
                    Err(PublishError::Transient(reason)) => reason,
                };
                self.connection = None;
                let address = self.factory.address.clone();
                self.link
                    .get_or_insert_with(|| LinkState::connected(Arc::clone(&ctx.component), address))
                    .down(&reason);
                let Some(delay) = delays.next() else {
                    return Err(RuntimeError::external("amqp", &self.factory.address, reason));
                };
                tokio::time::sleep(delay).await;
            }
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            if let Some((connection, _)) = self.connection.take() {
                let _ = connection.close(200, "weir sink closed".into()).await;
            }
            Ok(())
        })
    }
}

impl AmqpSink {
    /// Publishes every row and waits for the broker's confirms; the whole batch again on failure.
    async fn publish(&mut self, keys: &[String], rows: &weir_formats::encode::JsonRows) -> Result<(), PublishError> {
        let transient = |err: &dyn std::fmt::Display| PublishError::Transient(err.to_string());
        if self.connection.is_none() {
            self.connection = Some(self.factory.open().await.map_err(|err| transient(&err))?);
        }
        let (_, channel) = self.connection.as_ref().expect("connected");
        let properties = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into());
        let mut confirms = Vec::with_capacity(keys.len());
        for (row, key) in keys.iter().enumerate() {
            let confirm = channel
                .basic_publish(
                    self.factory.exchange.as_str().into(),
                    key.as_str().into(),
                    // Unroutable messages come back instead of vanishing.
                    BasicPublishOptions { mandatory: true, immediate: false },
                    rows.row(row),
                    properties.clone(),
                )
                .await
                .map_err(|err| transient(&err))?;
            confirms.push(confirm);
        }
        for (row, confirm) in confirms.into_iter().enumerate() {
            match confirm.await.map_err(|err| transient(&err))? {
                lapin::Confirmation::Ack(None) => {}
                lapin::Confirmation::Ack(Some(_)) => {
                    return Err(PublishError::Refused(format!(
                        "no queue is bound to exchange `{}` with routing key `{}`",
                        self.factory.exchange, keys[row]
                    )));
                }
                _ => return Err(PublishError::Transient("the broker did not confirm a message (nack)".into())),
            }
        }
        Ok(())
    }
}

enum PublishError {
    /// Worth retrying on a fresh connection.
    Transient(String),
    /// Retrying cannot help (unroutable).
    Refused(String),
}
