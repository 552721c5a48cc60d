//! The `mqtt` sink: publishes each row, waiting for the broker to acknowledge QoS 1/2 messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use serde::Deserialize;
use tokio::sync::Notify;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::CONNECT_TIMEOUT;
use weir_connector_support::secret::Access;
use weir_connector_support::template::Template;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::rows_as_json;

use crate::{Broker, PUBACK_TIMEOUT, default_qos, drive, options, parse_qos};

/// `mqtt` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// `mqtt://host:port`.
    pub url: Spanned<String>,
    /// Topic template (`alerts/{device}`).
    pub topic: Spanned<String>,
    /// 0 or 1 (default).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Set the retain flag.
    #[serde(default)]
    pub retain: bool,
    /// Client id (default: random per run).
    pub client_id: Option<String>,
    /// User name, password, TLS (`mqtts://` URLs use TLS with the defaults).
    #[serde(flatten)]
    pub access: Access,
}

impl SinkSpec for MqttSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let broker = Broker::plan(&self.url, &self.access, ctx)?;
        let qos = parse_qos(self.qos, &self.url)?;
        let topic = Template::parse(&self.topic.value, input)
            .map_err(|message| SpecIssue::at(&self.topic.referenced, message))?;
        Ok(Arc::new(MqttSinkFactory { broker, topic, qos, retain: self.retain, client_id: self.client_id.clone() }))
    }
}

#[derive(Debug)]
struct MqttSinkFactory {
    broker: Broker,
    topic: Template,
    qos: QoS,
    retain: bool,
    client_id: Option<String>,
}

#[async_trait]
impl SinkFactory for MqttSinkFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let address = self.broker.address();
        let client_id = self.client_id.clone().unwrap_or_else(|| format!("weir-sink-{}", rand::random::<u32>()));
        let mut options = options(client_id, &self.broker, true);
        options.set_manual_acks(false).set_inflight(1024);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        // Connect now so an unreachable broker fails the job at start.
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(err) => return Err(err.to_string()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("no CONNACK within {}s", CONNECT_TIMEOUT.as_secs())));
        connected.map_err(|reason| RuntimeError::external("mqtt", &address, format!("cannot connect: {reason}")))?;
        let acked = Arc::new((AtomicU64::new(0), Notify::new()));
        tokio::spawn(drive(
            eventloop,
            client.clone(),
            Vec::new(),
            None,
            Arc::clone(&acked),
            Arc::from("mqtt sink"),
            address.clone(),
        ));
        Ok(Box::new(MqttSink {
            address,
            client,
            topic: self.topic.clone(),
            qos: self.qos,
            retain: self.retain,
            acked,
            published: 0,
        }) as Box<dyn Sink>)
    }
}

struct MqttSink {
    address: String,
    client: AsyncClient,
    topic: Template,
    qos: QoS,
    retain: bool,
    /// PUBACKs received so far, and a signal when more arrive.
    acked: Arc<(AtomicU64, Notify)>,
    /// QoS 1 messages published so far.
    published: u64,
}

#[async_trait]
impl Sink for MqttSink {
    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let topics = self.topic.render(batch)?;
        let rows = rows_as_json(batch)?;
        for (row, topic) in topics.into_iter().enumerate() {
            self.client
                .publish(topic, self.qos, self.retain, rows.row(row).to_vec())
                .await
                .map_err(|err| RuntimeError::external("mqtt", &self.address, err))?;
        }
        if self.qos == QoS::AtLeastOnce {
            self.published += batch.num_rows() as u64;
            self.wait_for_acks().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        let _ = self.client.disconnect().await;
        Ok(())
    }
}

impl MqttSink {
    /// Waits until the broker acknowledged every QoS 1 message published so far.
    async fn wait_for_acks(&self) -> Result<(), RuntimeError> {
        let (acked, notify) = &*self.acked;
        let wait = async {
            loop {
                let notified = notify.notified();
                if acked.load(Ordering::Acquire) >= self.published {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(PUBACK_TIMEOUT, wait).await.map_err(|_| {
            RuntimeError::external("mqtt", &self.address, format!("no PUBACK within {}s", PUBACK_TIMEOUT.as_secs()))
        })
    }
}
