//! The `redis` source: a stream consumer group member, entries acknowledged once their rows are delivered.

use std::sync::Arc;
use std::time::Duration;

use ::redis::AsyncCommands;
use ::redis::aio::ConnectionManager;
use ::redis::streams::{StreamReadOptions, StreamReadReply};
use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::mpsc;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{LinkState, reconnect_backoff};
use weir_connector_support::pump::{emit, end_and_drain};
use weir_connector_support::secret::Access;
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::payload::{Envelope, MessageLayout, MetaType, MetaValue, PayloadOptions};

use crate::{BLOCK, describe_address, manager, open_client};

const METADATA: &[(&str, MetaType)] = &[("id", MetaType::Utf8), ("stream", MetaType::Utf8)];

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

#[async_trait]
impl Source for RedisSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
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
