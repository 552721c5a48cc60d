//! `postgres` sink: rows into a PostgreSQL table.
//!
//! ```yaml
//! sinks:
//!   db:
//!     type: postgres
//!     inputs: [stats]
//!     url: "postgres://postgres@127.0.0.1:5432/test"   # or "host=... user=... dbname=..."
//!     table: device_stats          # or schema.table
//!     mode: upsert                 # append (default: binary COPY) | upsert (INSERT ... ON CONFLICT)
//!     key: [device_id, window_start]
//!     create_table: true           # CREATE TABLE IF NOT EXISTS from the input schema
//!     on_error: dead-letter        # rows the database rejects, with its error
//!     dead_letter: rejected
//! ```
//!
//! Each batch is one statement (COPY, or `INSERT ... SELECT * FROM UNNEST(...) ON CONFLICT (key)
//! DO UPDATE` for upserts, last row per key wins within a batch) in an explicit transaction, and
//! `write` returns once the server confirmed the `COMMIT`. (In autocommit a statement's
//! completion message comes before its implicit commit: a backend terminated in between lost
//! batches the sink had already counted.) If the database rejects the batch for its data
//! (SQLSTATE classes 22 and 23: a bad value, a constraint), it is written again row by row in one
//! transaction, a savepoint per row, and only the rejected rows go to the error policy with the
//! database's message. A lost connection is re-opened with backoff and the batch retried
//! (at-least-once: `upsert` makes retries idempotent, `append` may repeat a batch whose `COMMIT`
//! answer was lost with the connection).
//!
//! Authentication and TLS (sink and lookup table): `username`, `password: { env: PGPASSWORD }`
//! (or `{ file: ... }`; both win over the connection string's), and `sslmode=require` or a `tls:`
//! block (`ca_file`, `cert_file`, `key_file`): the server's certificate is always verified.

mod sink;
pub mod table;

pub use sink::PostgresSinkConfig;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::secret::Access;
use weir_connector_support::tls::{Tls, plan_tls};
use weir_engine::component::PlanContext;

/// The connection string with the options' user name, password and TLS applied, and the TLS
/// setting: TLS when the string says `sslmode=require` or a `tls:` block is given (then
/// required); otherwise none (`sslmode=prefer`, the default, connects in plain text). The server's
/// certificate is always verified, so `require` means what libpq calls `verify-full`.
///
/// # Errors
/// A malformed connection string, an unreadable secret or certificate.
pub fn plan_connection(
    url: &Spanned<String>,
    access: &Access,
    ctx: &PlanContext,
) -> Result<(tokio_postgres::Config, Option<Tls>), SpecIssue> {
    let mut config: tokio_postgres::Config = url
        .value
        .parse()
        .map_err(|err| SpecIssue::at(&url.referenced, format!("bad PostgreSQL connection string: {err}")))?;
    let (username, password) = access.read(ctx)?;
    if let Some(username) = username {
        config.user(username);
    }
    if let Some(password) = password {
        config.password(password.expose());
    }
    let required = config.get_ssl_mode() == tokio_postgres::config::SslMode::Require;
    let tls = plan_tls(required, access.tls.as_ref(), ctx)?;
    if tls.is_some() {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    Ok((config, tls))
}

/// `host:port/dbname`, without credentials.
pub fn describe_address(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}
