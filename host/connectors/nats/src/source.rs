//! The `nats` source: a JetStream durable pull consumer, messages acknowledged once their rows are delivered.
//!
//! With checkpoints its position is the next stream sequence after what it emitted. A restored
//! job resumes there, not at the consumer's acknowledgement floor (which runs ahead of the
//! checkpointed state): the durable consumer is recreated to deliver from that sequence.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::pump::{emit, end_and_drain, sleep_until};
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::payload::{Envelope, MessageDecoder, MessageLayout, MetaType, MetaValue, PayloadOptions};

use crate::{NatsAccess, Server, confirm_processed, open};

/// How long a source waits for more messages before it sends a partial batch.
const LINGER: Duration = Duration::from_millis(20);

/// Envelope fields the source offers as `metadata:`.
const METADATA: &[(&str, MetaType)] = &[
    ("subject", MetaType::Utf8),
    ("sequence", MetaType::Int64),
    ("timestamp", MetaType::TimestampMs),
    ("headers", MetaType::Utf8),
];

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliverFrom {
    /// Every message in the stream.
    #[default]
    All,
    /// Only messages published after the consumer was created.
    New,
}

/// `nats` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// Server URL (`nats://host:4222`; `tls://` for TLS).
    pub url: Spanned<String>,
    /// Authentication and TLS.
    #[serde(flatten)]
    pub access: NatsAccess,
    /// JetStream stream name.
    pub stream: String,
    /// Subjects to read (wildcards allowed); empty = the whole stream.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Create the stream (over `subjects`) if it does not exist.
    #[serde(default)]
    pub create_stream: bool,
    /// Durable consumer name.
    pub consumer: String,
    /// Where a new consumer starts.
    #[serde(default)]
    pub deliver: DeliverFrom,
    /// Redelivery timeout for unacknowledged messages (`30s`).
    #[serde(default, with = "weir_config::yaml::duration_opt")]
    pub ack_wait: Option<Duration>,
    /// Payload format, schema, metadata columns.
    #[serde(flatten)]
    pub payload: PayloadOptions,
}

impl SourceSpec for NatsSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        let layout = self.payload.plan(METADATA)?;
        if self.create_stream && self.subjects.is_empty() {
            return Err(SpecIssue::at(&self.url.referenced, "`create_stream: true` needs `subjects`"));
        }
        let server = Server::plan(&self.url, &self.access, ctx)?;
        let factory = NatsSource {
            url: server.url.clone(),
            server,
            stream: self.stream.clone(),
            subjects: self.subjects.clone(),
            create_stream: self.create_stream,
            consumer: self.consumer.clone(),
            deliver: self.deliver,
            ack_wait: self.ack_wait.unwrap_or(Duration::from_secs(30)),
            layout: layout.clone(),
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema: layout.schema().clone(), parallelism: 1, factory: Arc::new(factory) })
    }
}

#[derive(Debug, Clone)]
struct NatsSource {
    /// The server's URL without credentials (in logs and errors).
    url: String,
    server: Server,
    stream: String,
    subjects: Vec<String>,
    create_stream: bool,
    consumer: String,
    deliver: DeliverFrom,
    ack_wait: Duration,
    layout: MessageLayout,
    batch_size: usize,
}

/// A message with its ack handle split off.
struct Received {
    message: async_nats::Message,
    sequence: u64,
    published_ms: i64,
}

impl Envelope for Received {
    fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    fn position(&self) -> String {
        format!("subject {} (stream sequence {})", self.message.subject, self.sequence)
    }

    fn metadata(&self, field: usize) -> MetaValue<'_> {
        match field {
            0 => MetaValue::Utf8(Some(self.message.subject.as_str())),
            1 => MetaValue::Int64(Some(self.sequence as i64)),
            2 => MetaValue::TimestampMs(Some(self.published_ms)),
            _ => MetaValue::Utf8(None),
        }
    }
}

#[async_trait]
impl Source for NatsSource {
    fn checkpointable(&self) -> bool {
        true
    }

    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let config = &*self;
        let address = config.url.as_str();
        let fail = |reason: String| RuntimeError::external("nats", address, reason);
        let client = open(&config.server, &ctx.component).await?;
        let context = jetstream::new(client.clone());
        let stream = if config.create_stream {
            context
                .get_or_create_stream(jetstream::stream::Config {
                    name: config.stream.clone(),
                    subjects: config.subjects.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|err| fail(format!("stream `{}`: {err}", config.stream)))?
        } else {
            context
                .get_stream(&config.stream)
                .await
                .map_err(|err| fail(format!("stream `{}`: {err}", config.stream)))?
        };
        let restored: Option<u64> = ctx
            .restored_position()
            .map(|text| {
                text.parse()
                    .map_err(|_| RuntimeError::Checkpoint(format!("nats position `{text}` is not a stream sequence")))
            })
            .transpose()?;
        if restored.is_some() {
            // Recreated below at the checkpoint's sequence; a missing consumer is fine.
            if let Err(err) = stream.delete_consumer(&config.consumer).await {
                tracing::debug!(consumer = %config.consumer, error = %err, "no consumer to reset");
            }
        }
        let mut next_sequence = restored;
        let consumer = stream
            .get_or_create_consumer(
                &config.consumer,
                consumer::pull::Config {
                    durable_name: Some(config.consumer.clone()),
                    filter_subjects: config.subjects.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    deliver_policy: match (restored, config.deliver) {
                        (Some(start_sequence), _) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
                        (None, DeliverFrom::All) => consumer::DeliverPolicy::All,
                        (None, DeliverFrom::New) => consumer::DeliverPolicy::New,
                    },
                    max_ack_pending: (config.batch_size * 16) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| fail(format!("consumer `{}`: {err}", config.consumer)))?;
        let mut messages = consumer.messages().await.map_err(|err| fail(err.to_string()))?;
        let mut decoder = config.layout.decoder(config.batch_size)?;
        let mut tracker: DeliveryTracker<Vec<jetstream::message::Acker>> = DeliveryTracker::new();
        let mut pending: Vec<Received> = Vec::with_capacity(config.batch_size);
        let mut ackers = Vec::with_capacity(config.batch_size);
        let mut linger: Option<tokio::time::Instant> = None;
        let stop = ctx.stop.clone();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => acknowledge(outcomes).await,
                () = sleep_until(linger), if linger.is_some() => {
                    flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut ackers, &mut next_sequence).await?;
                    linger = None;
                }
                () = ctx.barrier_requested() => {
                    flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut ackers, &mut next_sequence).await?;
                    linger = None;
                }
                next = messages.next() => {
                    let Some(next) = next else { break };
                    let message = match next {
                        Ok(message) => message,
                        Err(err) => {
                            // Heartbeat misses and the like: the stream recovers by itself.
                            tracing::warn!(component = %ctx.component, error = %err, "pull consumer error");
                            continue;
                        }
                    };
                    let (sequence, published_ms) = match message.info() {
                        Ok(info) => (info.stream_sequence, (info.published.unix_timestamp_nanos() / 1_000_000) as i64),
                        Err(_) => (0, 0),
                    };
                    let (message, acker) = message.split();
                    pending.push(Received { message, sequence, published_ms });
                    ackers.push(acker);
                    linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                    if pending.len() >= config.batch_size {
                        flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut ackers, &mut next_sequence).await?;
                        linger = None;
                    }
                }
            }
        }
        flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut ackers, &mut next_sequence).await?;
        end_and_drain(ctx, &mut tracker, |outcomes| async move {
            acknowledge(outcomes).await;
            Ok(())
        })
        .await?;
        // Acks are publishes: make sure the server has them before the connection goes (a lost
        // ack only means a redelivery, so a failure here is logged, not raised).
        if let Err(error) = confirm_processed(&client, &client.new_inbox()).await {
            tracing::warn!(%error, "nats source: final acknowledgements not confirmed");
        }
        Ok(())
    }
}

/// Emits what is pending, then offers a checkpoint barrier at the next stream sequence.
async fn flush(
    ctx: &mut SourceContext,
    decoder: &mut MessageDecoder,
    tracker: &mut DeliveryTracker<Vec<jetstream::message::Acker>>,
    pending: &mut Vec<Received>,
    ackers: &mut Vec<jetstream::message::Acker>,
    next_sequence: &mut Option<u64>,
) -> Result<(), RuntimeError> {
    if !pending.is_empty() {
        if let Some(last) = pending.iter().map(|received| received.sequence).max() {
            *next_sequence = Some(next_sequence.unwrap_or(0).max(last + 1));
        }
        emit(ctx, decoder, tracker, pending, std::mem::take(ackers)).await?;
        pending.clear();
    }
    let position = *next_sequence;
    ctx.offer_barrier(|| position.map(|next| next.to_string())).await
}

async fn acknowledge(outcomes: Vec<Outcome<Vec<jetstream::message::Acker>>>) {
    for outcome in outcomes {
        let (ackers, kind) = match outcome {
            Outcome::Delivered(ackers) => (ackers, AckKind::Ack),
            Outcome::Failed(ackers) => (ackers, AckKind::Nak(None)),
        };
        for acker in ackers {
            // A lost ack means a redelivery later, which at-least-once allows.
            if let Err(err) = acker.ack_with(kind).await {
                tracing::debug!(error = %err, "ack failed; the message will be redelivered");
            }
        }
    }
}
