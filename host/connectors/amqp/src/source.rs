//! The `amqp` source: a queue consumer that acknowledges deliveries once their rows are delivered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{LinkState, reconnect_backoff};
use weir_connector_support::pump::{emit, end_and_drain, sleep_until};
use weir_connector_support::secret::Access;
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::payload::{Envelope, MessageDecoder, MessageLayout, MetaType, MetaValue, PayloadOptions};

use crate::Broker;

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

#[async_trait]
impl Source for AmqpSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
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
