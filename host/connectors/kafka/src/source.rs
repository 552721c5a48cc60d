//! The `kafka` source: a consumer group member whose offsets are committed once the rows they cover are delivered.
//!
//! With checkpoints its position is the next offset of every partition it read
//! (`{"topic": {"0": 42}}`), and that, not the group's committed offset, is where a restored job
//! resumes: the consumer is then assigned every partition of its topics at the checkpoint's
//! offsets (partitions the checkpoint does not list start as `start` says). Committed offsets are
//! still kept up to date, for monitoring. Topic patterns cannot be restored (they follow the
//! group's subscription), which is said when such a job restores.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::CONNECT_TIMEOUT;
use weir_connector_support::pump::{emit, end_and_drain, sleep_until};
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{DeliveryTracker, Outcome};
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

/// A checkpointed position: the next offset to read per topic and partition.
type Positions = BTreeMap<String, BTreeMap<i32, i64>>;

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

    /// Creates the consumer and subscribes or assigns (at `restored` offsets, when the job
    /// restored a checkpoint); fails within a bounded time if the brokers cannot be reached.
    async fn open(&self, restored: Option<&Positions>) -> Result<StreamConsumer, RuntimeError> {
        let fail = |reason: String| RuntimeError::external("kafka", &self.brokers, reason);
        let consumer: StreamConsumer = self.client_config().create().map_err(|err| fail(err.to_string()))?;
        let consumer = tokio::task::spawn_blocking(move || {
            // librdkafka retries unreachable brokers forever; a metadata request bounds the start.
            consumer.fetch_metadata(None, CONNECT_TIMEOUT).map(|metadata| (consumer, metadata))
        })
        .await
        .map_err(|err| fail(err.to_string()))?;
        let (consumer, metadata) = consumer.map_err(|err| fail(format!("cannot connect: {err}")))?;
        if self.start == StartFrom::Committed && restored.is_none() {
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            consumer.subscribe(&topics).map_err(|err| fail(err.to_string()))?;
            return Ok(consumer);
        }
        if let Some(pattern) = self.topics.iter().find(|topic| topic.starts_with('^')).filter(|_| restored.is_some()) {
            return Err(RuntimeError::Checkpoint(format!(
                "the topic pattern `{pattern}` cannot be restored from a checkpoint (name the topics)"
            )));
        }
        let mut assignment = TopicPartitionList::new();
        for topic in &self.topics {
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(fail(format!("topic `{topic}` does not exist")));
            };
            for partition in found.partitions() {
                let offset = match self.start {
                    StartFrom::Committed => Offset::Stored,
                    StartFrom::Earliest => Offset::Beginning,
                    StartFrom::Latest => Offset::End,
                    StartFrom::Timestamp => Offset::Offset(self.timestamp.unwrap_or_default()),
                };
                assignment.add_partition_offset(topic, partition.id(), offset).map_err(|err| fail(err.to_string()))?;
            }
        }
        if self.start == StartFrom::Timestamp {
            let lookup =
                consumer.offsets_for_times(assignment, CONNECT_TIMEOUT).map_err(|err| fail(err.to_string()))?;
            assignment = lookup;
        }
        for (topic, partitions) in restored.into_iter().flatten() {
            for (partition, next) in partitions {
                assignment
                    .set_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(|err| fail(err.to_string()))?;
            }
        }
        consumer.assign(&assignment).map_err(|err| fail(err.to_string()))?;
        Ok(consumer)
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn checkpointable(&self) -> bool {
        true
    }

    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let config = &*self;
        let restored: Option<Positions> = ctx
            .restored_position()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|err| RuntimeError::Checkpoint(format!("kafka position `{text}` does not parse: {err}")))
            })
            .transpose()?;
        let consumer = config.open(restored.as_ref()).await?;
        // The next offset per partition of everything emitted: the checkpointed position.
        let mut positions = restored.unwrap_or_default();
        let stop = ctx.stop.clone();
        let mut decoder = config.layout.decoder(config.batch_size)?;
        let wants_headers = config.layout.uses(HEADERS);
        let mut tracker: DeliveryTracker<Offsets> = DeliveryTracker::new();
        let mut committer = Committer { poisoned: false, brokers: config.brokers.clone(), committed: Offsets::new() };
        let mut pending: Vec<Received> = Vec::with_capacity(config.batch_size);
        let mut linger: Option<tokio::time::Instant> = None;
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => committer.commit(&consumer, outcomes),
                () = sleep_until(linger), if linger.is_some() => {
                    flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut positions).await?;
                    linger = None;
                }
                () = ctx.barrier_requested() => {
                    flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut positions).await?;
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
                            flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut positions).await?;
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
        flush(ctx, &mut decoder, &mut tracker, &mut pending, &mut positions).await?;
        end_and_drain(ctx, &mut tracker, |outcomes| {
            committer.commit(&consumer, outcomes);
            std::future::ready(Ok(()))
        })
        .await?;
        // Repeat the last commits synchronously before the consumer leaves the group.
        committer.commit_all_sync(&consumer);
        Ok(())
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

/// Emits what is pending, then offers a checkpoint barrier at the position after it.
async fn flush(
    ctx: &mut SourceContext,
    decoder: &mut MessageDecoder,
    tracker: &mut DeliveryTracker<Offsets>,
    pending: &mut Vec<Received>,
    positions: &mut Positions,
) -> Result<(), RuntimeError> {
    if !pending.is_empty() {
        let mut offsets: Offsets = HashMap::new();
        for received in pending.iter() {
            let message = &received.message;
            let entry = offsets.entry((message.topic().to_owned(), message.partition())).or_insert(message.offset());
            *entry = (*entry).max(message.offset());
        }
        for ((topic, partition), offset) in &offsets {
            let next = positions.entry(topic.clone()).or_default().entry(*partition).or_insert(0);
            *next = (*next).max(offset + 1);
        }
        emit(ctx, decoder, tracker, pending, offsets).await?;
        pending.clear();
    }
    ctx.offer_barrier(|| serde_json::to_string(positions).ok()).await
}
