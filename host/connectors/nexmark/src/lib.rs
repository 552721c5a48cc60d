//! `nexmark`: the Nexmark benchmark's event generator (persons, auctions, bids).
//!
//! ```yaml
//! bids: { type: nexmark, kind: bid, events: 1000000 }
//! ```
//! Options: `kind` (`bid`, `auction` or `person`; required), `events` (how many generator events,
//! counting all three kinds, as Nexmark does; omit for unbounded), `rate` (events per second of
//! event time, default 10 000, the Nexmark default), `base_time` (event time of event 0, default
//! 2015-07-15T00:00:00Z), `throttle` (emit in real time at `rate`, default false: as fast as
//! possible), `parallelism` (subtasks; each generates every n-th epoch of 50 events).

mod model;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

pub use model::{EventKind, Generator, PROPORTION_TOTAL};
use weir_config::SpecIssue;
use weir_config::yaml::{Spanned, unspanned};
use weir_engine::component::{PlanContext, PlannedSource, RuntimeError, Source, SourceContext, SourceSpec};

/// `nexmark` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NexmarkConfig {
    /// Which stream.
    pub kind: EventKind,
    /// Total generator events (all kinds); unbounded when absent.
    pub events: Option<u64>,
    /// Events per second of event time.
    #[serde(default = "default_rate")]
    pub rate: Spanned<u64>,
    /// Event time of the first event (RFC 3339).
    pub base_time: Option<Spanned<String>>,
    /// Pace emission to `rate` in wall-clock time.
    #[serde(default)]
    pub throttle: bool,
}

fn default_rate() -> Spanned<u64> {
    unspanned(10_000)
}

/// Event time of event 0 unless configured: the date used by the Nexmark reference runs.
pub const DEFAULT_BASE_TIME_MS: i64 = 1_436_918_400_000; // 2015-07-15T00:00:00Z

impl SourceSpec for NexmarkConfig {
    fn plan(&self, ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
        if self.rate.value == 0 {
            return Err(SpecIssue::at(&self.rate.referenced, "`rate` must be at least 1 event per second"));
        }
        let base_time_ms = match &self.base_time {
            None => DEFAULT_BASE_TIME_MS,
            Some(text) => chrono::DateTime::parse_from_rfc3339(&text.value)
                .map_err(|err| SpecIssue::at(&text.referenced, format!("`base_time` is not an RFC 3339 time: {err}")))?
                .timestamp_millis(),
        };
        let factory = NexmarkSource {
            kind: self.kind,
            events: self.events,
            rate: self.rate.value,
            base_time_ms,
            throttle: self.throttle,
            batch_size: ctx.batch_size,
        };
        Ok(PlannedSource {
            schema: self.kind.schema(),
            parallelism: ctx.parallelism.unwrap_or(1),
            factory: Arc::new(factory),
        })
    }
}

#[derive(Debug, Clone)]
struct NexmarkSource {
    kind: EventKind,
    events: Option<u64>,
    rate: u64,
    base_time_ms: i64,
    throttle: bool,
    batch_size: usize,
}

impl NexmarkSource {
    /// Event numbers of this subtask and kind from `from` on, in order: epochs `subtask,
    /// subtask + n, ...`.
    fn event_numbers(&self, subtask: u64, parallelism: u64, from: u64) -> impl Iterator<Item = u64> + use<> {
        let limit = self.events.unwrap_or(u64::MAX);
        let offsets = self.kind.offsets();
        let first = (from / PROPORTION_TOTAL).saturating_sub(subtask) / parallelism;
        (first..)
            .map(move |i| subtask + i * parallelism)
            .flat_map(move |epoch| offsets.clone().map(move |offset| epoch * PROPORTION_TOTAL + offset))
            .skip_while(move |&number| number < from)
            .take_while(move |&number| number < limit)
    }
}

#[async_trait]
impl Source for NexmarkSource {
    async fn run(self: Box<Self>, ctx: &mut SourceContext) -> Result<(), RuntimeError> {
        let config = &*self;
        let generator = Generator::new(config.base_time_ms, config.rate);
        // The position is the next event number (events are a function of their number).
        let from = match ctx.restored_position() {
            Some(position) => position.parse::<u64>().map_err(|_| {
                RuntimeError::Checkpoint(format!("nexmark position `{position}` is not an event number"))
            })?,
            None => 0,
        };
        let mut numbers = self.event_numbers(ctx.subtask as u64, ctx.parallelism as u64, from).peekable();
        let started = Instant::now();
        while numbers.peek().is_some() && !ctx.stop.is_cancelled() {
            if config.throttle {
                let next = *numbers.peek().expect("peeked");
                let due = started + Duration::from_micros((next - from).saturating_mul(1_000_000) / config.rate);
                if !ctx.wait_until(due).await {
                    break;
                }
            }
            let batch = if config.throttle {
                // In real time a batch holds only what is due now, so latency stays low.
                let due_until = from + started.elapsed().as_micros() as u64 * config.rate / 1_000_000;
                let mut due = Vec::with_capacity(config.batch_size);
                while due.len() < config.batch_size {
                    match numbers.next_if(|&number| number <= due_until) {
                        Some(number) => due.push(number),
                        None => break,
                    }
                }
                generator.batch(config.kind, due.into_iter())
            } else {
                generator.batch(config.kind, numbers.by_ref().take(config.batch_size))
            };
            ctx.metrics.record_received(batch.num_rows());
            ctx.output.send(batch).await?;
            let next = numbers.peek().copied().unwrap_or(config.events.unwrap_or(u64::MAX));
            ctx.offer_barrier(|| Some(next.to_string())).await?;
        }
        Ok(())
    }

    fn checkpointable(&self) -> bool {
        true
    }
}
