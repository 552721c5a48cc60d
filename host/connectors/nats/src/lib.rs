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

mod sink;
mod source;

pub use sink::NatsSinkConfig;
pub use source::{DeliverFrom, NatsSourceConfig};

use std::sync::Arc;

use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{CONNECT_TIMEOUT, connect};
use weir_connector_support::secret::{Access, Secret, SecretSource, read_secret};
use weir_connector_support::tls::{Tls, TlsOptions, plan_tls};
use weir_engine::component::{PlanContext, RuntimeError};

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

/// JetStream publishes awaiting their ack at once, per sink.
const ACKS_IN_FLIGHT: usize = 1024;
