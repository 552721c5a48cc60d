//! `kafka` source and sink (Apache Kafka and Kafka-protocol brokers: Redpanda, tansu, ...),
//! through librdkafka (rdkafka, built from source).
//!
//! ```yaml
//! sources:
//!   bids:
//!     type: kafka
//!     brokers: 127.0.0.1:9092
//!     topics: [bids]                 # names, or patterns starting with `^` (regular expressions)
//!     group: weir-bids               # consumer group: offsets are committed here
//!     start: committed               # committed (default) | earliest | latest | timestamp
//!     reset: earliest                # committed: where to start when the group has no offset
//!     timestamp: 2026-11-24T00:00:00Z   # start: timestamp
//!     properties: { fetch.min.bytes: "1" }   # any librdkafka option
//!     format: json
//!     schema: { auction: int64, price: int64 }
//!     metadata: { k: key, p: partition, o: offset, ts: timestamp, h: headers, t: topic }
//! sinks:
//!   out:
//!     type: kafka
//!     inputs: [big]
//!     brokers: 127.0.0.1:9092
//!     topic: "bids-{channel}"        # template
//!     key: "{auction}"               # optional template
//! ```
//!
//! Delivery: offsets are tracked per partition and committed only once every sink confirmed the
//! batch, in order (the committed offset of a partition is one past the highest delivered
//! offset). After a failed batch nothing more is committed, so a restart replays from the last
//! confirmed position (at-least-once). `earliest`, `latest` and `timestamp` assign every partition
//! of the listed topics to this consumer (no group rebalancing) and still commit to the group;
//! `committed` subscribes through the group protocol, so several weir processes share the
//! partitions. The sink waits for the broker's acknowledgement (`acks=all`) of every message in a
//! batch before the batch counts as written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use indexmap::IndexMap;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::support::link::CONNECT_TIMEOUT;
use super::support::pump::{emit, end_and_drain, sleep_until};
use super::support::template::Template;
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
    ("key", MetaType::Utf8),
    ("key_bytes", MetaType::Binary),
    ("topic", MetaType::Utf8),
    ("partition", MetaType::Int64),
    ("offset", MetaType::Int64),
    ("timestamp", MetaType::TimestampMs),
    ("headers", MetaType::Utf8),
];

/// Index of `headers` in [`METADATA`].
const HEADERS: usize = 6;

const LINGER: Duration = Duration::from_millis(20);

/// Where a source starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The group's committed offsets (then `reset`).
    #[default]
    Committed,
    /// The oldest retained message.
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// The first message at or after `timestamp`.
    Timestamp,
}

/// Where to start when the group has no committed offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    /// The oldest retained message.
    #[default]
    Earliest,
    /// New messages only.
    Latest,
}

/// `kafka` source options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: Spanned<String>,
    /// Topic names, or patterns starting with `^`.
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group: String,
    /// Where to start.
    #[serde(default)]
    pub start: StartFrom,
    /// Fallback for `start: committed`.
    #[serde(default)]
    pub reset: Reset,
    /// For `start: timestamp`: RFC 3339 time or milliseconds since the epoch.
    pub timestamp: Option<Spanned<String>>,
    /// Extra librdkafka options.
    #[serde(default)]
    pub properties: IndexMap<String, String>,
    /// Payload format, schema, metadata columns.
    #[serde(flatten)]
    pub payload: PayloadOptions,
}

impl SourceSpec for KafkaSourceConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        if self.topics.is_empty() {
            return Err(SpecIssue::at(&self.brokers.referenced, "`topics` needs at least one topic"));
        }
        let timestamp = match (self.start, &self.timestamp) {
            (StartFrom::Timestamp, None) => {
                return Err(SpecIssue::at(&self.brokers.referenced, "`start: timestamp` needs `timestamp`"));
            }
            (StartFrom::Timestamp, Some(text)) => Some(
                parse_timestamp(&text.value)
                    .map_err(|reason| SpecIssue::at(&text.referenced, format!("`timestamp`: {reason}")))?,
            ),
            (_, Some(text)) => {
                return Err(SpecIssue::at(&text.referenced, "`timestamp` is only used with `start: timestamp`"));
            }
            (_, None) => None,
        };
        if self.start != StartFrom::Committed && self.topics.iter().any(|topic| topic.starts_with('^')) {
            return Err(SpecIssue::at(
                &self.brokers.referenced,
                "topic patterns need `start: committed` (they follow the group's subscription)",
            ));
        }
        let layout = self.payload.plan(METADATA)?;
        let factory = KafkaSource {
            brokers: self.brokers.value.clone(),
            topics: self.topics.clone(),
            group: self.group.clone(),
            start: self.start,
            reset: self.reset,
            timestamp,
            properties: self.properties.clone(),
            layout: layout.clone(),
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource { schema: layout.schema().clone(), parallelism: 1, factory: Arc::new(factory) })
    }
}

fn parse_timestamp(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.timestamp_millis())
        .map_err(|err| format!("`{text}` is neither RFC 3339 nor milliseconds: {err}"))
}

#[derive(Debug, Clone)]
struct KafkaSource {
    brokers: String,
    topics: Vec<String>,
    group: String,
    start: StartFrom,
    reset: Reset,
    timestamp: Option<i64>,
    properties: IndexMap<String, String>,
    layout: MessageLayout,
    batch_size: usize,
}

/// Headers as a JSON object (`{"name": "value"}`; binary values lossily as UTF-8).
fn headers_json(message: &OwnedMessage) -> Option<String> {
    let headers = message.headers()?;
    let mut object = serde_json::Map::new();
    for header in headers.iter() {
        let value = header.value.map(|v| String::from_utf8_lossy(v).into_owned());
        object.insert(header.key.to_owned(), value.map_or(serde_json::Value::Null, serde_json::Value::String));
    }
    Some(serde_json::Value::Object(object).to_string())
}

/// A received message plus its headers rendered once (headers are a metadata column).
struct Received {
    message: OwnedMessage,
    headers: Option<String>,
}

impl Envelope for Received {
    fn payload(&self) -> &[u8] {
        Message::payload(&self.message).unwrap_or_default()
    }

    fn position(&self) -> String {
        let message = &self.message;
        format!("{}/{}@{}", message.topic(), message.partition(), message.offset())
    }

    fn metadata(&self, field: usize) -> MetaValue<'_> {
        let message = &self.message;
        match field {
            0 => MetaValue::Utf8(message.key().map(|key| std::str::from_utf8(key).unwrap_or("<binary key>"))),
            1 => MetaValue::Binary(message.key()),
            2 => MetaValue::Utf8(Some(message.topic())),
            3 => MetaValue::Int64(Some(i64::from(message.partition()))),
            4 => MetaValue::Int64(Some(message.offset())),
            5 => MetaValue::TimestampMs(message.timestamp().to_millis()),
            HEADERS => MetaValue::Utf8(self.headers.as_deref()),
            _ => MetaValue::Utf8(None),
        }
    }
}

/// Highest offset per (topic, partition) in one batch.
type Offsets = HashMap<(String, i32), i64>;

impl KafkaSource {
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match self.reset {
                    Reset::Earliest => "earliest",
                    Reset::Latest => "latest",
                },
            );
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// Creates the consumer and subscribes or assigns; fails within a bounded time if the
    /// brokers cannot be reached.
    async fn open(&self) -> Result<StreamConsumer, RuntimeError> {
        let fail = |reason: String| RuntimeError::external("kafka", &self.brokers, reason);
        let consumer: StreamConsumer = self.client_config().create().map_err(|err| fail(err.to_string()))?;
        let consumer = tokio::task::spawn_blocking(move || {
            // librdkafka retries unreachable brokers forever; a metadata request bounds the start.
            consumer.fetch_metadata(None, CONNECT_TIMEOUT).map(|metadata| (consumer, metadata))
        })
        .await
        .map_err(|err| fail(err.to_string()))?;
        let (consumer, metadata) = consumer.map_err(|err| fail(format!("cannot connect: {err}")))?;
        if self.start == StartFrom::Committed {
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics).map_err(|err| fail(err.to_string()))?;
            return Ok(consumer);
        }
        let mut assignment = TopicPartitionList::new();
        for topic in &self.topics {
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(fail(format!("topic `{topic}` does not exist")));
            };
            for partition in found.partitions() {
                let offset = match self.start {
                    StartFrom::Earliest => Offset::Beginning,
                    StartFrom::Latest => Offset::End,
                    _ => Offset::Offset(self.timestamp.unwrap_or_default()),
                };
                assignment.add_partition_offset(topic, partition.id(), offset).map_err(|err| fail(err.to_string()))?;
            }
        }
        if self.start == StartFrom::Timestamp {
            let lookup =
                consumer.offsets_for_times(assignment, CONNECT_TIMEOUT).map_err(|err| fail(err.to_string()))?;
            assignment = lookup;
        }
        consumer.assign(&assignment).map_err(|err| fail(err.to_string()))?;
        Ok(consumer)
    }
}

impl Source for KafkaSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let config = &*self;
            let consumer = config.open().await?;
            let mut decoder = config.layout.decoder(config.batch_size)?;
            let wants_headers = config.layout.uses(HEADERS);
            let mut tracker: DeliveryTracker<Offsets> = DeliveryTracker::new();
            let mut committer =
                Committer { poisoned: false, brokers: config.brokers.clone(), committed: Offsets::new() };
            let mut pending: Vec<Received> = Vec::with_capacity(config.batch_size);
            let mut linger: Option<tokio::time::Instant> = None;
            let mut last_error: Option<String> = None;
            loop {
                tokio::select! {
                    biased;
                    () = ctx.stop.cancelled() => break,
                    outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => committer.commit(&consumer, outcomes),
                    () = sleep_until(linger), if linger.is_some() => {
                        flush(ctx, &mut decoder, &mut tracker, &mut pending).await?;
                        linger = None;
                    }
                    received = consumer.recv() => match received {
                        Ok(message) => {
                            if last_error.take().is_some() {
                                tracing::info!(component = %ctx.component, brokers = %config.brokers, "consuming again");
                            }
                            let message = message.detach();
                            let headers = if wants_headers { headers_json(&message) } else { None };
                            pending.push(Received { message, headers });
                            linger.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                            if pending.len() >= config.batch_size {
                                flush(ctx, &mut decoder, &mut tracker, &mut pending).await?;
                                linger = None;
                            }
                        }
                        Err(err) => {
                            // librdkafka reconnects by itself; log each new kind of error once.
                            let text = err.to_string();
                            if last_error.as_deref() != Some(text.as_str()) {
                                tracing::warn!(component = %ctx.component, brokers = %config.brokers, error = %text, "consumer error; librdkafka retries");
                                last_error = Some(text);
                            }
                        }
                    }
                }
            }
            flush(ctx, &mut decoder, &mut tracker, &mut pending).await?;
            end_and_drain(ctx, &mut tracker, |outcomes| {
                committer.commit(&consumer, outcomes);
                std::future::ready(Ok(()))
            })
            .await?;
            // Repeat the last commits synchronously before the consumer leaves the group.
            committer.commit_all_sync(&consumer);
            Ok(())
        })
    }
}

struct Committer {
    /// A batch failed: nothing after it may be committed.
    poisoned: bool,
    brokers: String,
    /// The next offset to read per partition, as committed so far.
    committed: Offsets,
}

impl Committer {
    fn commit(&mut self, consumer: &StreamConsumer, outcomes: Vec<Outcome<Offsets>>) {
        let mut highest: Offsets = HashMap::new();
        for outcome in outcomes {
            match outcome {
                Outcome::Delivered(offsets) if !self.poisoned => {
                    for (partition, offset) in offsets {
                        let entry = highest.entry(partition).or_insert(offset);
                        *entry = (*entry).max(offset);
                    }
                }
                Outcome::Delivered(_) => {}
                Outcome::Failed(_) => self.poisoned = true,
            }
        }
        if highest.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in highest {
            // The committed offset is the next one to read.
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(offset + 1));
            self.committed.insert((topic, partition), offset + 1);
        }
        if let Err(err) = consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(brokers = %self.brokers, error = %err, "offset commit failed; a restart may replay these messages");
        }
    }

    fn commit_all_sync(&self, consumer: &StreamConsumer) {
        if self.committed.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in &self.committed {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*next));
        }
        if let Err(err) = consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(brokers = %self.brokers, error = %err, "final offset commit failed; a restart may replay messages");
        }
    }
}

async fn flush(
    ctx: &mut SourceContext,
    decoder: &mut MessageDecoder,
    tracker: &mut DeliveryTracker<Offsets>,
    pending: &mut Vec<Received>,
) -> Result<(), RuntimeError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut offsets: Offsets = HashMap::new();
    for received in pending.iter() {
        let message = &received.message;
        let entry = offsets.entry((message.topic().to_owned(), message.partition())).or_insert(message.offset());
        *entry = (*entry).max(message.offset());
    }
    emit(ctx, decoder, tracker, pending, offsets).await?;
    pending.clear();
    Ok(())
}

/// `kafka` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers.
    pub brokers: Spanned<String>,
    /// Topic template.
    pub topic: Spanned<String>,
    /// Message key template (no key when absent).
    pub key: Option<Spanned<String>>,
    /// Extra librdkafka options.
    #[serde(default)]
    pub properties: IndexMap<String, String>,
}

impl SinkSpec for KafkaSinkConfig {
    fn plan(&self, input: &SchemaRef, _ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let topic = Template::parse(&self.topic.value, input)
            .map_err(|message| SpecIssue::at(&self.topic.referenced, message))?;
        let key = match &self.key {
            None => None,
            Some(key) => {
                Some(Template::parse(&key.value, input).map_err(|message| SpecIssue::at(&key.referenced, message))?)
            }
        };
        Ok(Arc::new(KafkaSinkFactory {
            brokers: self.brokers.value.clone(),
            topic,
            key,
            properties: self.properties.clone(),
        }))
    }
}

#[derive(Debug)]
struct KafkaSinkFactory {
    brokers: String,
    topic: Template,
    key: Option<Template>,
    properties: IndexMap<String, String>,
}

impl SinkFactory for KafkaSinkFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async move {
            let fail = |reason: String| RuntimeError::external("kafka", &self.brokers, reason);
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &self.brokers)
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "60000");
            for (key, value) in &self.properties {
                config.set(key, value);
            }
            let producer: FutureProducer = config.create().map_err(|err| fail(err.to_string()))?;
            // A fixed topic must exist (or be auto-created by this request) at start: a missing
            // one was silent for 30 s and then failed the job.
            let topic = self.topic.constant().map(str::to_owned);
            let (producer, missing) = tokio::task::spawn_blocking(move || {
                let metadata = producer.client().fetch_metadata(topic.as_deref(), CONNECT_TIMEOUT)?;
                let missing = topic
                    .filter(|_| metadata.topics().iter().all(|t| t.error().is_some() || t.partitions().is_empty()));
                Ok::<_, rdkafka::error::KafkaError>((producer, missing))
            })
            .await
            .map_err(|err| fail(err.to_string()))?
            .map_err(|err| fail(format!("cannot connect: {err}")))?;
            if let Some(topic) = missing {
                return Err(fail(format!(
                    "topic `{topic}` does not exist (create it, or let the broker create topics on first use)"
                )));
            }
            Ok(Box::new(KafkaSink {
                brokers: self.brokers.clone(),
                producer,
                topic: self.topic.clone(),
                key: self.key.clone(),
            }) as Box<dyn Sink>)
        })
    }
}

struct KafkaSink {
    brokers: String,
    producer: FutureProducer,
    topic: Template,
    key: Option<Template>,
}

impl Sink for KafkaSink {
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        _ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let topics = self.topic.render(batch)?;
            let keys = match &self.key {
                Some(key) => Some(key.render(batch)?),
                None => None,
            };
            let rows = rows_as_json(batch)?;
            let mut deliveries = Vec::with_capacity(topics.len());
            for (row, topic) in topics.iter().enumerate() {
                let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).payload(rows.row(row));
                if let Some(keys) = &keys {
                    record = record.key(keys[row].as_str());
                }
                // `send_result` queues without waiting; a full local queue waits briefly and retries.
                let mut record = record;
                loop {
                    match self.producer.send_result(record) {
                        Ok(delivery) => {
                            deliveries.push(delivery);
                            break;
                        }
                        Err((err, back)) => {
                            if !matches!(
                                err,
                                rdkafka::error::KafkaError::MessageProduction(
                                    rdkafka::types::RDKafkaErrorCode::QueueFull
                                )
                            ) {
                                return Err(RuntimeError::external("kafka", &self.brokers, err));
                            }
                            record = back;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((err, _))) => return Err(RuntimeError::external("kafka", &self.brokers, err)),
                    Err(_) => return Err(RuntimeError::external("kafka", &self.brokers, "delivery cancelled")),
                }
            }
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let producer = self.producer.clone();
            let flushed = tokio::task::spawn_blocking(move || Producer::flush(&producer, Duration::from_secs(30)))
                .await
                .map_err(|err| RuntimeError::external("kafka", &self.brokers, err))?;
            flushed.map_err(|err| RuntimeError::external("kafka", &self.brokers, err))
        })
    }
}
