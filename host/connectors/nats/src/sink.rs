//! The `nats` sink: core publish (confirmed by a round trip) or JetStream publish (confirmed by the stream).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_nats::jetstream;
use async_trait::async_trait;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::template::Template;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};
use weir_formats::encode::rows_as_json;

use crate::{ACKS_IN_FLIGHT, NatsAccess, Server, confirm_processed, open};

/// `nats` sink options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL (`nats://host:4222`; `tls://` for TLS).
    pub url: Spanned<String>,
    /// Authentication and TLS.
    #[serde(flatten)]
    pub access: NatsAccess,
    /// Subject template (`alerts.{device}`).
    pub subject: Spanned<String>,
    /// Publish through JetStream and wait for the stream's acks.
    #[serde(default)]
    pub jetstream: bool,
}

impl SinkSpec for NatsSinkConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        let subject = Template::parse(&self.subject.value, input)
            .map_err(|message| SpecIssue::at(&self.subject.referenced, message))?;
        let server = Server::plan(&self.url, &self.access, ctx)?;
        Ok(Arc::new(NatsSinkFactory { url: server.url.clone(), server, subject, jetstream: self.jetstream }))
    }
}

#[derive(Debug)]
struct NatsSinkFactory {
    url: String,
    server: Server,
    subject: Template,
    jetstream: bool,
}

#[async_trait]
impl SinkFactory for NatsSinkFactory {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        let client = open(&self.server, &Arc::from("nats sink")).await?;
        let jetstream = self.jetstream.then(|| jetstream::new(client.clone()));
        let sync_subject = client.new_inbox();
        Ok(Box::new(NatsSink { url: self.url.clone(), subject: self.subject.clone(), client, jetstream, sync_subject })
            as Box<dyn Sink>)
    }
}

struct NatsSink {
    url: String,
    subject: Template,
    client: async_nats::Client,
    jetstream: Option<jetstream::Context>,
    /// A subject nobody subscribes to, for [`confirm_processed`].
    sync_subject: String,
}

#[async_trait]
impl Sink for NatsSink {
    async fn write(&mut self, batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        let fail = |err: &dyn std::fmt::Display| RuntimeError::external("nats", &self.url, err.to_string());
        let subjects = self.subject.render(batch)?;
        let rows = rows_as_json(batch)?;
        match &self.jetstream {
            None => {
                for (row, subject) in subjects.into_iter().enumerate() {
                    let payload = bytes::Bytes::copy_from_slice(rows.row(row));
                    self.client.publish(subject, payload).await.map_err(|err| fail(&err))?;
                }
                confirm_processed(&self.client, &self.sync_subject).await.map_err(|err| fail(&err))?;
            }
            Some(context) => {
                // The client bounds acks in flight (a permit per unresolved ack): resolve them
                // in chunks, or a large batch waits forever for permits.
                let mut acks = Vec::with_capacity(ACKS_IN_FLIGHT);
                for (row, subject) in subjects.into_iter().enumerate() {
                    let payload = bytes::Bytes::copy_from_slice(rows.row(row));
                    acks.push(context.publish(subject, payload).await.map_err(|err| fail(&err))?);
                    if acks.len() == ACKS_IN_FLIGHT {
                        for ack in acks.drain(..) {
                            ack.await.map_err(|err| fail(&err))?;
                        }
                    }
                }
                for ack in acks {
                    ack.await.map_err(|err| fail(&err))?;
                }
            }
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        confirm_processed(&self.client, &self.sync_subject)
            .await
            .map_err(|err| RuntimeError::external("nats", &self.url, err))
    }
}
