//! `mysql` sink: rows into a MySQL or MariaDB table.
//!
//! ```yaml
//! sinks:
//!   db:
//!     type: mysql
//!     inputs: [stats]
//!     url: "mysql://root@127.0.0.1:3306/test"
//!     table: device_stats
//!     mode: upsert            # append (default) | upsert (INSERT ... ON DUPLICATE KEY UPDATE)
//!     key: [device_id]        # upsert: deduplicates within a batch; create_table: the primary key
//!     create_table: true
//!     on_error: dead-letter
//!     dead_letter: rejected
//! ```
//!
//! Batches are written as multi-row `INSERT`s (up to 65,535 placeholders per statement) in
//! autocommit, so a batch is durable when `write` returns. Rejections for the data (SQLSTATE
//! classes 22 and 23, e.g. a value out of range in strict mode, a duplicate key in `append`) make
//! the batch go again row by row, and only rejected rows reach the error policy with the server's
//! message. Lost connections are re-opened with backoff and the statement retried
//! (at-least-once; `upsert` makes retries idempotent).
//!
//! Authentication and TLS (sink and lookup table): `username`, `password: { env: MYSQL_PASSWORD }`
//! (or `{ file: ... }`; both win over the URL's), and `require_ssl=true` in the URL or a `tls:`
//! block (`ca_file`, `cert_file`, `key_file`).

mod sink;
pub mod table;

pub use sink::MysqlSinkConfig;

use mysql_async::{ClientIdentity, Opts, OptsBuilder};

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_connector_support::secret::Access;
use weir_connector_support::tls::plan_tls;
use weir_engine::component::PlanContext;

/// The URL's options with the options' user name, password and TLS applied. TLS when the URL
/// says `require_ssl=true` or a `tls:` block is given; a `ca_file` replaces the built-in
/// authorities. The server's certificate and name are verified.
///
/// # Errors
/// A malformed URL, an unreadable secret or certificate.
pub fn plan_connection(url: &Spanned<String>, access: &Access, ctx: &PlanContext) -> Result<Opts, SpecIssue> {
    let opts =
        Opts::from_url(&url.value).map_err(|err| SpecIssue::at(&url.referenced, format!("bad MySQL URL: {err}")))?;
    let mut builder = OptsBuilder::from_opts(opts.clone());
    let (username, password) = access.read(ctx)?;
    if username.is_some() {
        builder = builder.user(username);
    }
    if let Some(password) = password {
        builder = builder.pass(Some(password.expose()));
    }
    if let Some(tls) = plan_tls(opts.ssl_opts().is_some(), access.tls.as_ref(), ctx)? {
        let mut ssl = opts.ssl_opts().cloned().unwrap_or_default();
        if let Some(ca) = tls.ca_pem {
            ssl = ssl.with_root_certs(vec![ca.into()]).with_disable_built_in_roots(true);
        }
        if let Some(identity) = tls.identity {
            ssl =
                ssl.with_client_identity(Some(ClientIdentity::new(identity.cert_pem.into(), identity.key_pem.into())));
        }
        builder = builder.ssl_opts(ssl);
    }
    Ok(builder.into())
}

/// `host:port/database`, without credentials.
pub fn describe_address(opts: &Opts) -> String {
    format!("{}:{}/{}", opts.ip_or_hostname(), opts.tcp_port(), opts.db_name().unwrap_or(""))
}
