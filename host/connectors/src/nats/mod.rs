//! `nats` source (JetStream durable pull consumer) and sink (core publish or JetStream publish).
//!
//! ```yaml
//! sources:
//!   readings:
//!     type: nats
//!     url: nats://127.0.0.1:4222
//!     stream: SENSORS                 # JetStream stream
//!     subjects: ["sensors.>"]         # filter subjects (wildcards); also the stream's subjects
//!     create_stream: true             #   when it has to be created
//!     consumer: weir-readings         # durable consumer name: progress survives restarts
//!     deliver: all                    # all (default) | new: where a new consumer starts
//!     format: json
//!     schema: { device: string, temp: float64 }
//!     metadata: { subject: subject, seq: sequence, published: timestamp }
//! sinks:
//!   alerts:
//!     type: nats
//!     inputs: [hot]
//!     url: nats://127.0.0.1:4222
//!     subject: "alerts.{device}"     # template over input columns
//!     jetstream: true                 # wait for the stream's ack per message (default: core publish, one round trip per batch)
//! ```
//!
//! Delivery: the consumer uses the explicit ack policy; a message is acknowledged only after
//! every sink confirmed the batch it went into, and negatively acknowledged (redelivered) if the
//! batch failed. Messages never confirmed are redelivered after `ack_wait` (at-least-once).
//! The client reconnects by itself; connection changes are logged once each.
//!
//! Authentication: `username` with `password: { env: NATS_PASSWORD }`, or `token: { env: ... }`,
//! or `credentials: { file: user.creds }` (secrets from the environment or a file, never
//! logged). TLS: `tls://host:4222` or a `tls:` block (`ca_file`, `cert_file`, `key_file`).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use serde::Deserialize;

use super::support::link::{CONNECT_TIMEOUT, connect};
use super::support::pump::{emit, end_and_drain, sleep_until};
use super::support::secret::{Access, Secret, SecretSource, read_secret};
use super::support::template::Template;
use super::support::tls::{Tls, TlsOptions, plan_tls};
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    BoxFuture, Durability, PlanContext, PlannedSource, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec, Source,
    SourceContext, SourceSpec,
};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::encode::rows_as_json;
use weir_formats::payload::{Envelope, MessageLayout, MetaType, MetaValue, PayloadOptions};

/// JetStream publishes awaiting their ack at once, per sink.
const ACKS_IN_FLIGHT: usize = 1024;

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

/// How a source or sink authenticates: a user name and password, a token, or a credentials
/// file (NATS's `.creds`: a user JWT and its key seed), each secret from the environment or a
/// file; and TLS (`tls://` URLs use it with the defaults).
#[derive(Debug, Default, Deserialize)]
pub struct NatsAccess {
    /// User name (with `password`).
    pub username: Option<String>,
    /// Password: `{ env: NAME }` or `{ file: path }`.
    pub password: Option<Spanned<SecretSource>>,
    /// An authentication token: `{ env: NAME }` or `{ file: path }`.
    pub token: Option<Spanned<SecretSource>>,
    /// A `.creds` file's contents: `{ file: path }` or `{ env: NAME }`.
    pub credentials: Option<Spanned<SecretSource>>,
    /// TLS options.
    pub tls: Option<Spanned<TlsOptions>>,
}

/// A server and how to authenticate to it.
#[derive(Debug, Clone)]
struct Server {
    /// The URL without user information, to connect to and to name in logs.
    url: String,
    login: Option<(String, Secret)>,
    token: Option<Secret>,
    credentials: Option<Secret>,
    tls: Option<Tls>,
}

impl Server {
    fn plan(url: &Spanned<String>, access: &NatsAccess, ctx: &PlanContext) -> Result<Self, SpecIssue> {
        let mut parsed =
            url::Url::parse(&url.value).map_err(|err| SpecIssue::at(&url.referenced, format!("bad URL: {err}")))?;
        let secure = match parsed.scheme() {
            "nats" => false,
            "tls" => true,
            other => {
                return Err(SpecIssue::at(
                    &url.referenced,
                    format!("unsupported scheme `{other}`: use `nats://host:4222` or `tls://host:4222`"),
                ));
            }
        };
        let login = Access { username: access.username.clone(), password: access.password.clone(), tls: None };
        let login = match login.resolve(&parsed, ctx)? {
            (Some(username), password) => Some((username, password.unwrap_or_else(|| Secret::from_url("")))),
            (None, Some(_)) => return Err(SpecIssue::at(&url.referenced, "a password needs a `username`")),
            (None, None) => None,
        };
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let token = access.token.as_ref().map(|source| read_secret(source, ctx)).transpose()?;
        let credentials = access.credentials.as_ref().map(|source| read_secret(source, ctx)).transpose()?;
        if [login.is_some(), token.is_some(), credentials.is_some()].iter().filter(|given| **given).count() > 1 {
            return Err(SpecIssue::at(
                &url.referenced,
                "authenticate one way: a `username` and `password`, a `token`, or `credentials`",
            ));
        }
        if let (Some(creds), Some(at)) = (&credentials, &access.credentials) {
            async_nats::ConnectOptions::new()
                .credentials(creds.expose())
                .map_err(|err| SpecIssue::at(&at.referenced, format!("not a NATS credentials file: {err}")))?;
        }
        let tls = plan_tls(secure, access.tls.as_ref(), ctx)?;
        Ok(Self { url: parsed.to_string(), login, token, credentials, tls })
    }
}

/// Connects with a bounded timeout and logs connection state changes once each.
async fn open(server: &Server, component: &Arc<str>) -> Result<async_nats::Client, RuntimeError> {
    let component = Arc::clone(component);
    let address = server.url.clone();
    let mut options =
        async_nats::ConnectOptions::new().connection_timeout(CONNECT_TIMEOUT).event_callback(move |event| {
            let component = Arc::clone(&component);
            let address = address.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%component, %address, "connection lost; the client reconnects with backoff");
                    }
                    async_nats::Event::Connected => tracing::info!(%component, %address, "connected"),
                    other => tracing::debug!(%component, %address, event = %other, "nats event"),
                }
            }
        });
    if let Some((username, password)) = &server.login {
        options = options.user_and_password(username.clone(), password.expose().to_owned());
    }
    if let Some(token) = &server.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(creds) = &server.credentials {
        options = options.credentials(creds.expose()).map_err(|err| {
            RuntimeError::external("nats", &server.url, format!("not a NATS credentials file: {err}"))
        })?;
    }
    if let Some(tls) = &server.tls {
        options = options.require_tls(true).tls_client_config((*tls.config).clone());
    }
    connect("nats", &server.url, options.connect(server.url.as_str())).await
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

impl Source for NatsSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
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
            let consumer = stream
                .get_or_create_consumer(
                    &config.consumer,
                    consumer::pull::Config {
                        durable_name: Some(config.consumer.clone()),
                        filter_subjects: config.subjects.clone(),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: config.ack_wait,
                        deliver_policy: match config.deliver {
                            DeliverFrom::All => consumer::DeliverPolicy::All,
                            DeliverFrom::New => consumer::DeliverPolicy::New,
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
            loop {
                tokio::select! {
                    biased;
                    () = ctx.stop.cancelled() => break,
                    outcomes = tracker.next_settled(), if tracker.in_flight() > 0 => acknowledge(outcomes).await,
                    () = sleep_until(linger), if linger.is_some() => {
                        let acks = std::mem::take(&mut ackers);
                        emit(ctx, &mut decoder, &mut tracker, &pending, acks).await?;
                        pending.clear();
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
                            let acks = std::mem::take(&mut ackers);
                            emit(ctx, &mut decoder, &mut tracker, &pending, acks).await?;
                            pending.clear();
                            linger = None;
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let acks = std::mem::take(&mut ackers);
                emit(ctx, &mut decoder, &mut tracker, &pending, acks).await?;
            }
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
        })
    }
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

impl SinkFactory for NatsSinkFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async move {
            let client = open(&self.server, &Arc::from("nats sink")).await?;
            let jetstream = self.jetstream.then(|| jetstream::new(client.clone()));
            let sync_subject = client.new_inbox();
            Ok(Box::new(NatsSink {
                url: self.url.clone(),
                subject: self.subject.clone(),
                client,
                jetstream,
                sync_subject,
            }) as Box<dyn Sink>)
        })
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

/// Waits until the server has processed everything this connection published so far.
///
/// Core NATS has no acks, and the client's `flush` only hands the bytes to the socket: a
/// connection closed right after it can lose the tail of a batch (seen once in the test suite: a
/// subscriber got only the first 2149 of 3000 messages, and the server logged no slow consumer,
/// which fits a connection closed before the server had read all it was sent). A request to
/// a subject nobody serves is answered "no responders" by the server itself, and the server
/// handles one connection's messages in order, so that answer means every earlier publish was
/// routed (what the Go client's `Flush` does with PING/PONG, which async-nats does not expose).
/// One round trip per batch; needs nats-server >= 2.2 (headers, no-responders).
async fn confirm_processed(client: &async_nats::Client, sync_subject: &str) -> Result<(), String> {
    match client.request(sync_subject.to_owned(), bytes::Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Err(err) => Err(format!("confirming the published messages: {err}")),
    }
}

impl Sink for NatsSink {
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    fn write<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        _ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
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
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            confirm_processed(&self.client, &self.sync_subject)
                .await
                .map_err(|err| RuntimeError::external("nats", &self.url, err))
        })
    }
}
