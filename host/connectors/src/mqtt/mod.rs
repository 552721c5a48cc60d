//! `mqtt` source and sink (MQTT 3.1.1; IoT devices, Mosquitto, EMQX, HiveMQ).
//!
//! ```yaml
//! sources:
//!   readings:
//!     type: mqtt
//!     url: mqtt://127.0.0.1:1883
//!     topics: ["sensors/+/temp", "plant/#"]   # filters with wildcards
//!     qos: 1                                  # 0: at most once; 1: at least once (default)
//!     client_id: weir-readings                # stable id: a persistent session survives restarts
//!     clean_session: false                    # false: the broker keeps subscriptions and queued QoS 1 messages
//!     format: json
//!     schema: { device: string, temp: float64 }
//!     metadata: { topic: topic }
//! sinks:
//!   alerts:
//!     type: mqtt
//!     inputs: [hot]
//!     url: mqtt://127.0.0.1:1883
//!     topic: "alerts/{device}"               # template over input columns
//!     qos: 1                                  # 1: a write returns once the broker acknowledged every message
//!     retain: false
//! ```
//!
//! Delivery: QoS 1 messages are acknowledged to the broker (PUBACK) only after every sink
//! confirmed the batch they went into (manual acks), so unconfirmed messages are redelivered after
//! a reconnect when the session is persistent. QoS 0 is at most once by definition. The
//! connection is driven by its own task, which reconnects with backoff and logs state changes once.
//!
//! Authentication and TLS: `username` with `password: { env: MQTT_PASSWORD }` (or `{ file: ... }`;
//! `mqtt://user:password@host` works too, but puts the password in the pipeline file), and
//! `mqtts://host:8883` or a `tls:` block (`ca_file`, `cert_file`, `key_file`; see
//! `connectors::support::tls`).
//!
//! The broker's window: an MQTT broker sends a client only a few messages it has not
//! acknowledged (Mosquitto: `max_inflight_messages 20`), queues what comes after them
//! (`max_queued_messages 1000`) and *discards* the rest without telling anyone. A sink that
//! confirms late (Parquet files rolled every 10 s, object storage uploads) holds the window full
//! long enough to overflow the queue at a few hundred messages per second. The source reports how
//! many messages it holds unacknowledged (`component_unacknowledged_events`) and warns when it
//! has held `max_unacknowledged` of them (default 20, Mosquitto's in-flight window) for 2 s: the
//! broker is then queuing. Raise the broker's limits (`max_queued_messages`) or make the sinks
//! confirm sooner (a shorter `roll.max_age`, JSON lines).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};

use super::support::link::{CONNECT_TIMEOUT, LinkState, reconnect_backoff};
use super::support::pump::{emit, end_and_drain, sleep_until};
use super::support::secret::{Access, Secret};
use super::support::template::Template;
use super::support::tls::{Tls, plan_tls};
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    BoxFuture, Durability, PlanContext, PlannedSource, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec, Source,
    SourceContext, SourceSpec,
};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_engine::errors::BadRecord;
use weir_formats::encode::rows_as_json;
use weir_formats::payload::{Envelope, MessageLayout, MetaType, MetaValue, PayloadOptions};

const METADATA: &[(&str, MetaType)] = &[("topic", MetaType::Utf8), ("retained", MetaType::Int64)];

/// How long a source waits for more messages before it sends a partial batch.
const LINGER: Duration = Duration::from_millis(20);

/// How long a QoS 1 write waits for the broker's acknowledgements.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(30);

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

fn default_qos() -> u8 {
    1
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

/// Where and how to reach the broker.
#[derive(Debug, Clone)]
struct Broker {
    host: String,
    port: u16,
    /// A user name and its password.
    credentials: Option<(String, Secret)>,
    tls: Option<Tls>,
}

impl Broker {
    /// The broker of an `mqtt://` or `mqtts://` URL (TLS also with a `tls:` block), with the
    /// credentials the URL carries or the options name (`username`, `password: { env | file }`;
    /// those win over the URL's).
    fn plan(url: &Spanned<String>, access: &Access, ctx: &PlanContext) -> Result<Self, SpecIssue> {
        let parsed =
            url::Url::parse(&url.value).map_err(|err| SpecIssue::at(&url.referenced, format!("bad URL: {err}")))?;
        let secure = match parsed.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(SpecIssue::at(
                    &url.referenced,
                    format!("unsupported scheme `{other}`: use `mqtt://host:port` or `mqtts://host:port`"),
                ));
            }
        };
        let host = parsed.host_str().ok_or_else(|| SpecIssue::at(&url.referenced, "the URL has no host"))?;
        let tls = plan_tls(secure, access.tls.as_ref(), ctx)?;
        let credentials = match access.resolve(&parsed, ctx)? {
            (Some(username), password) => Some((username, password.unwrap_or_else(|| Secret::from_url("")))),
            (None, Some(_)) => return Err(SpecIssue::at(&url.referenced, "a password needs a `username`")),
            (None, None) => None,
        };
        let port = parsed.port().unwrap_or(if tls.is_some() { 8883 } else { 1883 });
        Ok(Self { host: host.trim_matches(['[', ']']).to_owned(), port, credentials, tls })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn parse_qos(qos: u8, at: &Spanned<String>) -> Result<QoS, SpecIssue> {
    match qos {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(SpecIssue::at(&at.referenced, "`qos` must be 0 or 1")),
    }
}

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

/// What the connection task reports.
enum Incoming {
    Message(Publish),
    /// The first connection failed (at start).
    Failed(String),
}

/// Drives the MQTT connection: forwards publishes, resubscribes after each CONNACK, reconnects
/// with backoff and logs state changes once. Ends when `client` disconnects or the receiver goes.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<(String, QoS)>,
    messages: Option<mpsc::Sender<Incoming>>,
    acked: Arc<(AtomicU64, Notify)>,
    component: Arc<str>,
    address: String,
) {
    let mut link: Option<LinkState> = None;
    let mut delays = backon::BackoffBuilder::build(reconnect_backoff());
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                match &mut link {
                    None => link = Some(LinkState::connected(Arc::clone(&component), address.clone())),
                    Some(link) => link.up(),
                }
                delays = backon::BackoffBuilder::build(reconnect_backoff());
                for (topic, qos) in &subscriptions {
                    let _ = client.try_subscribe(topic.clone(), *qos);
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if let Some(messages) = &messages
                    && messages.send(Incoming::Message(publish)).await.is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                acked.0.fetch_add(1, Ordering::AcqRel);
                acked.1.notify_waiters();
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(err) => {
                let Some(state) = &mut link else {
                    if let Some(messages) = &messages {
                        let _ = messages.send(Incoming::Failed(err.to_string())).await;
                    }
                    return;
                };
                state.down(&err);
                if messages.as_ref().is_some_and(mpsc::Sender::is_closed) {
                    return;
                }
                // Keep trying; the backoff stays at its maximum once exhausted.
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The largest packet MQTT 3.1.1 can carry (its remaining-length field's maximum, plus header).
/// The client accepts any packet the protocol allows: a packet it refused would break the
/// connection, and a persistent session would then get the same message again forever. The
/// source applies its own `max_message_size` to what arrives.
const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

fn options(client_id: String, broker: &Broker, clean_session: bool) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, &broker.host, broker.port);
    options.set_clean_session(clean_session).set_keep_alive(Duration::from_secs(30)).set_manual_acks(true);
    options.set_max_packet_size(MQTT_MAX_PACKET, MQTT_MAX_PACKET);
    if let Some((username, password)) = &broker.credentials {
        options.set_credentials(username.clone(), password.expose());
    }
    if let Some(tls) = &broker.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::clone(&tls.config))));
    }
    options
}

impl Source for MqttSource {
    fn run<'a>(self: Box<Self>, ctx: &'a mut SourceContext) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
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
        })
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

impl SinkFactory for MqttSinkFactory {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async move {
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
            connected
                .map_err(|reason| RuntimeError::external("mqtt", &address, format!("cannot connect: {reason}")))?;
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
        })
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

impl Sink for MqttSink {
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
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async move {
            let _ = self.client.disconnect().await;
            Ok(())
        })
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
