//! The `amqp` sink: publishes with publisher confirms, reconnecting with backoff.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{LinkState, reconnect_backoff};
use weir_connector_support::secret::Access;
use weir_connector_support::template::Template;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::rows_as_json;

use crate::Broker;

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

#[async_trait]
impl SinkFactory for AmqpSinkFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let (connection, channel) = self.open().await?;
        Ok(Box::new(AmqpSink { factory: self.clone(), connection: Some((connection, channel)), link: None })
            as Box<dyn Sink>)
    }
}

struct AmqpSink {
    factory: AmqpSinkFactory,
    connection: Option<(Connection, Channel)>,
    link: Option<LinkState>,
}

#[async_trait]
impl Sink for AmqpSink {
    async fn write(&mut self, batch: &RecordBatch, ctx: &mut SinkContext) -> Result<(), RuntimeError> {
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
            self.link.get_or_insert_with(|| LinkState::connected(Arc::clone(&ctx.component), address)).down(&reason);
            let Some(delay) = delays.next() else {
                return Err(RuntimeError::external("amqp", &self.factory.address, reason));
            };
            tokio::time::sleep(delay).await;
        }
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        if let Some((connection, _)) = self.connection.take() {
            let _ = connection.close(200, "weir sink closed".into()).await;
        }
        Ok(())
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
