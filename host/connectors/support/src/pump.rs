//! The loop body every acknowledging source shares: decode a run of messages, register it with
//! the delivery tracker, send it on (with its dead letters), and after the output ended, wait for
//! the outstanding deliveries so they can be acknowledged before disconnecting.

use std::time::Duration;

use weir_engine::component::{RuntimeError, SourceContext};
use weir_engine::delivery::{DeliveryTracker, Outcome};
use weir_formats::payload::{Envelope, MessageDecoder};

/// How long a stopping source waits for sinks to confirm what is in flight before it gives up
/// (unacknowledged messages are then redelivered by the broker: at-least-once).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Decodes `messages` and sends the batch downstream as one delivery made of `ack`.
///
/// # Errors
/// A bad payload under `on_error: fail`, or a closed downstream.
pub async fn emit<E: Envelope, T>(
    ctx: &mut SourceContext,
    decoder: &mut MessageDecoder,
    tracker: &mut DeliveryTracker<T>,
    messages: &[E],
    ack: T,
) -> Result<(), RuntimeError> {
    let batch = decoder.decode(messages, &mut ctx.errors)?;
    let delivery = tracker.track(ack);
    ctx.errors.flush_with(&delivery).await?;
    match batch {
        Some(batch) => {
            ctx.metrics.record_received(batch.num_rows());
            ctx.output.deliver(batch, delivery).await?;
        }
        None => delivery.settle(),
    }
    Ok(())
}

/// Ends the output and hands every outstanding outcome to `settle` as sinks confirm them, for at
/// most [`DRAIN_TIMEOUT`].
///
/// # Errors
/// A closed downstream, or what `settle` returns.
pub async fn end_and_drain<T, F>(
    ctx: &mut SourceContext,
    tracker: &mut DeliveryTracker<T>,
    mut settle: impl FnMut(Vec<Outcome<T>>) -> F,
) -> Result<(), RuntimeError>
where
    F: Future<Output = Result<(), RuntimeError>>,
{
    ctx.end().await?;
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while tracker.in_flight() > 0 {
        match tokio::time::timeout_at(deadline, tracker.next_settled()).await {
            Ok(outcomes) => settle(outcomes).await?,
            Err(_) => {
                tracing::warn!(
                    component = %ctx.component,
                    in_flight = tracker.in_flight(),
                    "sinks did not confirm every batch in time; those messages will be redelivered"
                );
                break;
            }
        }
    }
    Ok(())
}

/// Sleeps until `deadline`, or forever when there is none (a `select!` branch for a linger timer).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
