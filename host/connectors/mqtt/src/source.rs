//! The `mqtt` source: a persistent session whose QoS 1/2 messages are acknowledged once their rows are delivered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, Publish, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::pump::{emit, end_and_drain, sleep_until};
use weir_connector_support::secret::Access;
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_engine::errors::BadRecord;
use weir_formats::payload::{Envelope, MessageLayout, MetaType, MetaValue, PayloadOptions};

use crate::{Broker, Incoming, default_qos, drive, options, parse_qos};

const METADATA: &[(&str, MetaType)] = &[("topic", MetaType::Utf8), ("retained", MetaType::Int64)];

/// How long a source waits for more messages before it sends a partial batch.
const LINGER: Duration = Duration::from_millis(20);

/// `mqtt` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// `mqtt://host:port`.
    pub url: Spanned<String>,
    /// Topic filters (`+` and `#` wildcards).
    pub topics: Vec<String>,
    /// Subscription QoS: 0 or 1.
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Client id (default: `weir-<component>` with a persistent session, plus a random suffix
    /// with a clean one, so two jobs never take each other's connection); keep it stable for
    /// persistent sessions.
    pub client_id: Option<String>,
    /// Start a clean session (default true); `false` keeps subscriptions and queued messages.
    #[serde(default = "default_true")]
    pub clean_session: bool,
    /// The broker's in-flight window: holding this many messages unacknowledged for 2 s makes the
    /// source warn that the broker is queuing (and may discard) messages (default 20, Mosquitto's
    /// `max_inflight_messages`).
    #[serde(default = "default_max_unacknowledged")]
    pub max_unacknowledged: u64,
    /// User name, password, TLS (`mqtts://` URLs use TLS with the defaults).
    #[serde(flatten)]
    pub access: Access,
    /// Largest message payload taken (default 16MiB); a larger one is a bad record under
    /// `on_error` (dead letters keep its topic and its first 64 KiB).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: bytesize::ByteSize,
    /// Payload format, schema, metadata columns.
    #[serde(flatten)]
    pub payload: PayloadOptions,
}

fn default_true() -> bool {
    true
}

fn default_max_unacknowledged() -> u64 {
    20
}

fn default_max_message_size() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(16)
}

/// How much of an oversized message a dead letter keeps.
const OVERSIZED_KEPT: usize = 64 << 10;

/// How long the broker's window may stay full before the source warns.
const WINDOW_FULL_WARNING: Duration = Duration::from_secs(2);

impl SourceSpec for MqttSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let broker = Broker::plan(&self.url, &self.access, ctx)?;
        let qos = parse_qos(self.qos, &self.url)?;
        if self.topics.is_empty() {
            return Err(SpecIssue::at(&self.url.referenced, "`topics` needs at least one topic filter"));
        }
        let layout = self.payload.plan(METADATA)?;
        let factory = MqttSource {
            broker,
            topics: self.topics.clone(),
            qos,
            client_id: self.client_id.clone(),
            clean_session: self.clean_session,
            max_unacknowledged: self.max_unacknowledged,
            max_message_size: usize::try_from(self.max_message_size.as_u64()).unwrap_or(usize::MAX),
            layout: layout.clone(),
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema: layout.schema().clone(), parallelism: 1, factory: Arc::new(factory) })
    }
}

#[derive(Debug, Clone)]
struct MqttSource {
    broker: Broker,
    topics: Vec<String>,
    qos: QoS,
    client_id: Option<String>,
    clean_session: bool,
    max_unacknowledged: u64,
    max_message_size: usize,
    layout: MessageLayout,
    batch_size: usize,
}

/// A received message as the message decoder reads it.
struct Received(Publish);

/// Where a message came from, for errors and dead letters.
fn position(publish: &Publish) -> String {
    format!("topic {} (packet {})", publish.topic, publish.pkid)
}

impl Envelope for Received {
    fn payload(&self) -> &[u8] {
        &self.0.payload
    }

    fn position(&self) -> String {
        position(&self.0)
    }

    fn metadata(&self, field: usize) -> MetaValue<'_> {
        match field {
            0 => MetaValue::Utf8(Some(&self.0.topic)),
            _ => MetaValue::Int64(Some(i64::from(self.0.retain))),
        }
    }
}

#[async_trait]
impl Source for MqttSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let config = &*self;
        let address = config.broker.address();
        // A broker disconnects a client when another connects with its id, so a clean session
        // gets a unique id; a persistent session needs the same id across runs.
        let client_id = config.client_id.clone().unwrap_or_else(|| match config.clean_session {
            true => format!("weir-{}-{:08x}", ctx.component, rand::random::<u32>()),
            false => format!("weir-{}", ctx.component),
        });
        let (client, eventloop) = AsyncClient::new(options(client_id, &config.broker, config.clean_session), 1024);
        let (sender, mut receiver) = mpsc::channel(config.batch_size.max(16));
        let subscriptions = config.topics.iter().map(|topic| (topic.clone(), config.qos)).collect();
        let driver = tokio::spawn(drive(
            eventloop,
            client.clone(),
            subscriptions,
            Some(sender),
            Arc::default(),
            Arc::clone(&ctx.component),
            address.clone(),
        ));
        let mut decoder = config.layout.decoder(config.batch_size)?;
        let mut tracker: DeliveryTracker<Vec<(QoS, u16)>> = DeliveryTracker::new();
        let mut held = Unacknowledged::new(config.max_unacknowledged);
        let mut pending: Vec<Received> = Vec::with_capacity(config.batch_size);
        // Messages the error policy already took (oversized): acknowledged with the next batch.
        let mut handled: Vec<Received> = Vec::new();
        let mut linger: Option<tokio::time::Instant> = None;
        let mut window_check = tokio::time::interval(Duration::from_millis(500));
        let result = async {
            loop {
                tokio::select! {
                    biased;
                    () = ctx.stop.cancelled() => break,
                    _ = window_check.tick() => held.check(ctx),
                    outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => {
                        acknowledge(&client, outcomes, &mut held, ctx).await;
                    }
                    () = sleep_until(linger), if linger.is_some() => {
                        flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut handled, &mut held).await?;
                        linger = None;
                    }
                    incoming = receiver.recv() => match incoming {
                        None => break,
                        Some(Incoming::Failed(reason)) => {
                            return Err(RuntimeError::external("mqtt", &address, format!("cannot connect: {reason}")));
                        }
                        Some(Incoming::Message(publish)) if publish.payload.len() > config.max_message_size => {
                            ctx.errors.handle(BadRecord {
                                position: position(&publish),
                                raw: &publish.payload[..publish.payload.len().min(OVERSIZED_KEPT)],
                                reason: format!(
                                    "the message is {} bytes, above max_message_size ({} bytes); the dead letter keeps its first {} bytes",
                                    publish.payload.len(), config.max_message_size, OVERSIZED_KEPT
                                ),
                            })?;
                            // Acknowledged with the next batch, after its dead letter is out.
                            handled.push(Received(publish));
                            linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                        }
                        Some(Incoming::Message(publish)) => {
                            pending.push(Received(publish));
                            linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                            if pending.len() >= config.batch_size {
                                flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut handled, &mut held).await?;
                                linger = None;
                            }
                        }
                    }
                }
            }
            flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut handled, &mut held).await?;
            let metrics = Arc::clone(&ctx.metrics);
            end_and_drain(ctx, &mut tracker, |outcomes| {
                let client = &client;
                held.settle(&outcomes, &metrics);
                async move {
                    acknowledge_all(client, outcomes).await;
                    Ok(())
                }
            })
            .await
        }
        .await;
        let _ = client.disconnect().await;
        drop(receiver);
        let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
        result
    }
}

async fn flush(
    ctx: &mut SourceContext,
    decoder: &mut weir_formats::payload::MessageDecoder,
    tracker: &mut DeliveryTracker<Vec<(QoS, u16)>>,
    pending: &mut Vec<Received>,
    handled: &mut Vec<Received>,
    held: &mut Unacknowledged,
) -> Result<(), RuntimeError> {
    if pending.is_empty() && handled.is_empty() {
        return Ok(());
    }
    let acks: Vec<(QoS, u16)> = pending
        .iter()
        .chain(handled.iter())
        .filter(|p| p.0.qos != QoS::AtMostOnce)
        .map(|p| (p.0.qos, p.0.pkid))
        .collect();
    held.hold(acks.len() as u64, ctx);
    emit(ctx, decoder, tracker, pending, acks).await?;
    pending.clear();
    handled.clear();
    Ok(())
}

/// Messages taken from the broker and not yet acknowledged to it: the gauge, and the warning
/// when they fill the broker's window for too long (see the module header).
struct Unacknowledged {
    count: u64,
    limit: u64,
    full_since: Option<std::time::Instant>,
    warned_at: Option<std::time::Instant>,
}

impl Unacknowledged {
    fn new(limit: u64) -> Self {
        Self { count: 0, limit, full_since: None, warned_at: None }
    }

    fn hold(&mut self, messages: u64, ctx: &SourceContext) {
        self.count += messages;
        ctx.metrics.set_unacknowledged(self.count);
        self.check(ctx);
    }

    /// Warns (at most every 30 s) once the window has been full for [`WINDOW_FULL_WARNING`].
    fn check(&mut self, ctx: &SourceContext) {
        if self.count < self.limit {
            self.full_since = None;
            return;
        }
        let full_for = self.full_since.get_or_insert_with(std::time::Instant::now).elapsed();
        let due = self.warned_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(30));
        if full_for >= WINDOW_FULL_WARNING && due {
            tracing::warn!(
                component = %ctx.component,
                unacknowledged = self.count,
                full_for_seconds = full_for.as_secs_f64(),
                "the broker's window is full while messages wait for sinks to confirm them, so the broker \
                 queues what follows, and an MQTT broker discards messages beyond its window (Mosquitto: \
                 max_queued_messages 1000): raise its limits or make the sinks confirm sooner"
            );
            self.warned_at = Some(std::time::Instant::now());
        }
    }

    fn settle(&mut self, outcomes: &[Outcome<Vec<(QoS, u16)>>], metrics: &weir_engine::metrics::ComponentMetrics) {
        let settled: usize = outcomes
            .iter()
            .map(|outcome| match outcome {
                Outcome::Delivered(acks) | Outcome::Failed(acks) => acks.len(),
            })
            .sum();
        self.count = self.count.saturating_sub(settled as u64);
        metrics.set_unacknowledged(self.count);
        if self.count < self.limit {
            self.full_since = None;
        }
    }
}

async fn acknowledge(
    client: &AsyncClient,
    outcomes: Vec<Outcome<Vec<(QoS, u16)>>>,
    held: &mut Unacknowledged,
    ctx: &SourceContext,
) {
    held.settle(&outcomes, &ctx.metrics);
    acknowledge_all(client, outcomes).await;
}

async fn acknowledge_all(client: &AsyncClient, outcomes: Vec<Outcome<Vec<(QoS, u16)>>>) {
    for outcome in outcomes {
        // A failed batch is not acknowledged: the broker redelivers it on the next session.
        let Outcome::Delivered(acks) = outcome else { continue };
        for (qos, pkid) in acks {
            let mut publish = Publish::new("", qos, Vec::new());
            publish.pkid = pkid;
            if client.ack(&publish).await.is_err() {
                return; // disconnected: the broker redelivers
            }
        }
    }
}
