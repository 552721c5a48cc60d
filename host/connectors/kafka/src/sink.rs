//! The `kafka` sink: every message of a batch acknowledged by the brokers (`acks=all`) before the batch counts as written.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use indexmap::IndexMap;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::CONNECT_TIMEOUT;
use weir_connector_support::template::Template;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::rows_as_json;

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

#[async_trait]
impl SinkFactory for KafkaSinkFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
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
            let missing =
                topic.filter(|_| metadata.topics().iter().all(|t| t.error().is_some() || t.partitions().is_empty()));
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
    }
}

struct KafkaSink {
    brokers: String,
    producer: FutureProducer,
    topic: Template,
    key: Option<Template>,
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
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
                            rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
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
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || Producer::flush(&producer, Duration::from_secs(30)))
            .await
            .map_err(|err| RuntimeError::external("kafka", &self.brokers, err))?;
        flushed.map_err(|err| RuntimeError::external("kafka", &self.brokers, err))
    }
}
