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

mod sink;
mod source;

pub use sink::MqttSinkConfig;
pub use source::MqttSourceConfig;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use tokio::sync::{Notify, mpsc};

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{LinkState, reconnect_backoff};
use weir_connector_support::secret::{Access, Secret};
use weir_connector_support::tls::{Tls, plan_tls};
use weir_engine::component::PlanContext;

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

/// How long a QoS 1 write waits for the broker's acknowledgements.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(30);

fn default_qos() -> u8 {
    1
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
