//! The connection discipline every network connector follows:
//! - connecting at start gives up after a bounded time ([`CONNECT_TIMEOUT`]) with an error that
//!   names the connector, the address and the cause;
//! - a connection lost mid-run is re-established with exponential backoff ([`reconnect_backoff`]),
//!   and the state is logged once per change ([`LinkState`]), not once per retry;
//! - writes that fail transiently are retried with the same backoff before the job fails.

use std::time::Duration;

use backon::ExponentialBuilder;

use weir_engine::component::RuntimeError;

/// How long a connector may take to connect when the job starts.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Backoff between reconnect or retry attempts: 100 ms doubling to 5 s, with jitter, for about
/// a minute in all before the job fails.
pub fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(16)
        .with_jitter()
}

/// Runs `connect` with [`CONNECT_TIMEOUT`]; any failure becomes a [`RuntimeError::External`].
///
/// # Errors
/// The client's error, or a timeout.
pub async fn connect<T, E: std::fmt::Display>(
    system: &'static str,
    address: &str,
    connect: impl Future<Output = Result<T, E>>,
) -> Result<T, RuntimeError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(RuntimeError::external(system, address, format!("cannot connect: {err}"))),
        Err(_) => Err(RuntimeError::external(
            system,
            address,
            format!("cannot connect: no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        )),
    }
}

/// Whether a connector's link is up; logs transitions only.
#[derive(Debug)]
pub struct LinkState {
    component: std::sync::Arc<str>,
    address: String,
    up: bool,
    failures: u64,
}

impl LinkState {
    /// A link that was just established.
    pub fn connected(component: std::sync::Arc<str>, address: impl Into<String>) -> Self {
        Self { component, address: address.into(), up: true, failures: 0 }
    }

    /// Records a failure; logs only when the link goes from up to down.
    pub fn down(&mut self, reason: &dyn std::fmt::Display) {
        self.failures += 1;
        if self.up {
            self.up = false;
            tracing::warn!(component = %self.component, address = %self.address, error = %reason, "connection lost; reconnecting with backoff");
        }
    }

    /// Records success; logs only when the link comes back.
    pub fn up(&mut self) {
        if !self.up {
            self.up = true;
            tracing::info!(component = %self.component, address = %self.address, attempts = self.failures, "connection re-established");
            self.failures = 0;
        }
    }

    /// Whether the link is currently up.
    pub fn is_up(&self) -> bool {
        self.up
    }
}
