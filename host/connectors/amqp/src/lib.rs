//! `amqp` source and sink (AMQP 0-9-1: RabbitMQ, LavinMQ).
//!
//! ```yaml
//! sources:
//!   orders:
//!     type: amqp
//!     url: amqp://guest:guest@127.0.0.1:5672/%2f
//!     queue: orders
//!     declare: true          # declare the queue (durable) if it does not exist
//!     prefetch: 2000         # unacknowledged deliveries the broker may send ahead
//!     format: json
//!     schema: { id: int64, amount: float64 }
//!     metadata: { key: routing_key, redelivered: redelivered }
//! sinks:
//!   out:
//!     type: amqp
//!     inputs: [big]
//!     url: amqp://guest:guest@127.0.0.1:5672/%2f
//!     exchange: ""             # default exchange: the routing key is the queue name
//!     routing_key: "orders.{region}"
//! ```
//!
//! Delivery: manual acks. A batch's deliveries are acknowledged (`multiple` up to its last tag)
//! once every sink confirmed it; a failed batch is negatively acknowledged with requeue. If the
//! connection drops, the broker requeues everything unacknowledged, the source reconnects with
//! backoff and reads it again (at-least-once; acks for the old channel are dropped, never sent on
//! the new one). The sink publishes persistent messages with publisher confirms and returns once
//! the broker confirmed the whole batch.
//!
//! Authentication and TLS: `username` and `password: { env: AMQP_PASSWORD }` (or `{ file: ... }`;
//! both win over the URL's), and `amqps://` or a `tls:` block (`ca_file`, added to the system's
//! authorities; `cert_file` and `key_file` for a client certificate).

mod sink;
mod source;

pub use sink::AmqpSinkConfig;
pub use source::AmqpSourceConfig;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connect, Connection, ConnectionProperties};

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::connect;
use weir_connector_support::secret::Access;
use weir_connector_support::tls::{Tls, plan_tls};
use weir_engine::component::{PlanContext, RuntimeError};

/// A broker and how to reach it: the parsed URL with the options' user name and password
/// applied, and TLS (`amqps://`, or a `tls:` block). `Debug` shows only the address.
#[derive(Clone)]
struct Broker {
    uri: AMQPUri,
    tls: Option<Tls>,
    /// `host:port/vhost`, without credentials.
    address: String,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("address", &self.address).field("tls", &self.tls).finish_non_exhaustive()
    }
}

impl Broker {
    fn plan(url: &Spanned<String>, access: &Access, ctx: &PlanContext) -> Result<Self, SpecIssue> {
        let bad = |err: &dyn std::fmt::Display| SpecIssue::at(&url.referenced, format!("bad URL: {err}"));
        url::Url::parse(&url.value).map_err(|err| bad(&err))?;
        let mut uri: AMQPUri = url.value.parse().map_err(|err: String| bad(&err))?;
        let (username, password) = access.read(ctx)?;
        if let Some(username) = username {
            uri.authority.userinfo.username = username;
        }
        if let Some(password) = password {
            uri.authority.userinfo.password = password.expose().to_owned();
        }
        let tls = plan_tls(uri.scheme == AMQPScheme::AMQPS, access.tls.as_ref(), ctx)?;
        if tls.is_some() {
            uri.scheme = AMQPScheme::AMQPS;
        }
        let address = format!("{}:{}/{}", uri.authority.host, uri.authority.port, uri.vhost);
        Ok(Self { uri, tls, address })
    }

    /// Connects with a bounded timeout.
    async fn connect(&self) -> Result<Connection, RuntimeError> {
        let config = match &self.tls {
            None => OwnedTLSConfig::default(),
            Some(tls) => OwnedTLSConfig {
                identity: tls.identity.as_ref().map(|identity| OwnedIdentity::PKCS8 {
                    pem: identity.cert_pem.clone(),
                    key: identity.key_pem.clone(),
                }),
                cert_chain: tls.ca_pem.as_ref().map(|pem| String::from_utf8_lossy(pem).into_owned()),
            },
        };
        let runtime =
            lapin::runtime::default_runtime().map_err(|err| RuntimeError::external("amqp", &self.address, err))?;
        let uri = self.uri.clone();
        connect("amqp", &self.address, uri.connect_with_config(ConnectionProperties::default(), config, runtime)).await
    }
}
