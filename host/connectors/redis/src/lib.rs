//! `redis` source (Redis Streams with a consumer group) and sink (SET, HSET, XADD, PUBLISH).
//!
//! ```yaml
//! sources:
//!   events:
//!     type: redis
//!     url: redis://127.0.0.1:6379
//!     stream: events               # stream key
//!     group: weir                  # consumer group (created at the stream's start if missing)
//!     consumer: weir-1             # consumer name: keep it stable to recover its pending entries
//!     field: payload               # the entry field holding the record (default `payload`)
//!     format: json
//!     schema: { id: int64, kind: string }
//!     metadata: { entry_id: id }
//! sinks:
//!   latest:
//!     type: redis
//!     inputs: [stats]
//!     url: redis://127.0.0.1:6379
//!     command: hset                # set (value: the row as JSON) | hset (fields: the columns)
//!                                  # | xadd (field `payload`: the row as JSON) | publish (message: the row as JSON)
//!     key: "device:{device_id}"    # template: key, stream or channel
//!     ttl: 1h                      # set/hset: expire keys after this long
//! ```
//!
//! Delivery: entries are read with XREADGROUP and acknowledged with XACK only after every sink
//! confirmed the batch they went into. At start the consumer first re-reads its own pending
//! entries (delivered before a crash or restart, never acknowledged), then new ones, so nothing
//! that was read but not confirmed is lost (at-least-once). The sink sends each batch as one
//! pipeline and returns when Redis answered. Connections are re-established with backoff.
//!
//! Authentication and TLS (source, sink and lookup table): `password: { env: REDIS_PASSWORD }`
//! (or `{ file: ... }`, with `username` for an ACL user), and `rediss://` or a `tls:` block
//! (`ca_file`, `cert_file`, `key_file`).

mod sink;
mod source;
pub mod table;

pub use sink::{RedisCommand, RedisSinkConfig};
pub use source::RedisSourceConfig;

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::link::{CONNECT_TIMEOUT, connect};
use weir_connector_support::secret::Access;
use weir_connector_support::tls::plan_tls;
use weir_engine::component::{PlanContext, RuntimeError};

fn open_client(url: &Spanned<String>, access: &Access, ctx: &PlanContext) -> Result<::redis::Client, SpecIssue> {
    use ::redis::{ConnectionAddr, IntoConnectionInfo};
    let bad = |err: &dyn std::fmt::Display| SpecIssue::at(&url.referenced, format!("bad Redis URL: {err}"));
    let parsed = url::Url::parse(&url.value).map_err(|err| bad(&err))?;
    let mut info = url.value.as_str().into_connection_info().map_err(|err| bad(&err))?;
    let (username, password) = access.resolve(&parsed, ctx)?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = username {
        settings = settings.set_username(username);
    }
    if let Some(password) = password {
        settings = settings.set_password(password.expose());
    }
    info = info.set_redis_settings(settings);
    let Some(tls) = plan_tls(parsed.scheme() == "rediss", access.tls.as_ref(), ctx)? else {
        return ::redis::Client::open(info).map_err(|err| bad(&err));
    };
    if let ConnectionAddr::Tcp(host, port) = info.addr().clone() {
        info = info.set_addr(ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None });
    }
    let certificates = ::redis::TlsCertificates {
        client_tls: tls
            .identity
            .map(|identity| ::redis::ClientTlsConfig { client_cert: identity.cert_pem, client_key: identity.key_pem }),
        root_cert: tls.ca_pem,
    };
    ::redis::Client::build_with_tls(info, certificates).map_err(|err| bad(&err))
}

fn describe_address(client: &::redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

async fn manager(client: &::redis::Client, address: &str) -> Result<ConnectionManager, RuntimeError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(10)))
        .set_number_of_retries(3);
    connect("redis", address, ConnectionManager::new_with_config(client.clone(), config)).await
}

/// How long one XREADGROUP waits for new entries.
const BLOCK: Duration = Duration::from_millis(500);
