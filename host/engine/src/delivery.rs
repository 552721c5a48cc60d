//! At-least-once delivery before checkpoints: a source learns when every sink has made a batch
//! durable, and only then acknowledges or commits what the batch was made of.
//!
//! A source registers each batch it emits with its [`DeliveryTracker`], keeping what to
//! acknowledge (Kafka offsets, JetStream messages, AMQP delivery tags, Redis stream ids) and getting
//! a [`Delivery`] that travels with the batch. Every hand-off forks the delivery: fan-out to several
//! components, each result batch of an operator, dead-letter rows. Each holder *settles* its fork
//! when it is done with it (an operator after sending its results, a sink once the write is
//! durable); a fork dropped without settling (a failed write, a batch left in a channel when the
//! job fails) marks the whole delivery failed. When the last fork is gone, the tracker hands the
//! batch's acknowledgement back to the source, in the order the batches were registered, with its
//! outcome. A source commits delivered batches and never commits past a failed one.
//!
//! Sources without anything to acknowledge (generators, files) use [`Delivery::untracked`], which
//! costs nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

/// What the last fork of a delivery reports to its tracker.
#[derive(Debug)]
struct Settled {
    id: u64,
    delivered: bool,
}

#[derive(Debug)]
struct Shared {
    id: u64,
    failed: AtomicBool,
    report: mpsc::UnboundedSender<Settled>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The tracker may be gone (source finished or failed): nothing left to acknowledge then.
        let _ = self.report.send(Settled { id: self.id, delivered: !self.failed.load(Ordering::Acquire) });
    }
}

/// One holder's share of a batch's delivery (or, after [`Delivery::merge`], of several
/// batches'). Settle it when done; dropping it unsettled marks the batches failed.
#[derive(Debug, Default)]
pub struct Delivery {
    shares: Shares,
    settled: bool,
}

/// The batches a delivery stands for.
#[derive(Debug, Clone, Default)]
enum Shares {
    /// Nobody waits (generators, files).
    #[default]
    Untracked,
    /// One source batch.
    One(Arc<Shared>),
    /// Several source batches, e.g. every batch whose rows a window aggregated.
    Many(Arc<[Arc<Shared>]>),
}

impl Delivery {
    /// A delivery nobody waits for.
    pub fn untracked() -> Self {
        Self::default()
    }

    /// Whether a source waits for this delivery.
    pub fn is_tracked(&self) -> bool {
        !matches!(self.shares, Shares::Untracked)
    }

    /// Another share of the same delivery, for another holder.
    pub fn fork(&self) -> Self {
        Self { shares: self.shares.clone(), settled: false }
    }

    /// One delivery standing for all of `deliveries` (which are settled into it): a result made
    /// from rows of many batches is delivered when it is, and failed if it fails.
    pub fn merge(deliveries: impl IntoIterator<Item = Delivery>) -> Self {
        let mut shared: Vec<Arc<Shared>> = Vec::new();
        for mut delivery in deliveries {
            match &delivery.shares {
                Shares::Untracked => {}
                Shares::One(one) => shared.push(Arc::clone(one)),
                Shares::Many(many) => shared.extend(many.iter().cloned()),
            }
            delivery.settled = true;
        }
        shared.sort_by_key(|s| Arc::as_ptr(s) as usize);
        shared.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let shares = match shared.len() {
            0 => Shares::Untracked,
            1 => Shares::One(shared.pop().expect("one")),
            _ => Shares::Many(shared.into()),
        };
        Self { shares, settled: false }
    }

    /// This holder is done: the batch (or everything made from it) was handed on or made durable.
    pub fn settle(mut self) {
        self.settled = true;
    }

    /// This holder failed: the source must not acknowledge the batch.
    pub fn fail(self) {
        drop(self);
    }
}

/// Cloning is forking: the clone is another holder that must settle.
impl Clone for Delivery {
    fn clone(&self) -> Self {
        self.fork()
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        match &self.shares {
            Shares::Untracked => {}
            Shares::One(shared) => shared.failed.store(true, Ordering::Release),
            Shares::Many(many) => many.iter().for_each(|shared| shared.failed.store(true, Ordering::Release)),
        }
    }
}

/// The outcome of one registered batch, handed back in registration order.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// Every sink made the batch durable: acknowledge `T`.
    Delivered(T),
    /// Some holder failed or dropped the batch: do not acknowledge `T`.
    Failed(T),
}

/// A source subtask's record of the batches it emitted and not yet acknowledged.
#[derive(Debug)]
pub struct DeliveryTracker<T> {
    next_id: u64,
    pending: BTreeMap<u64, (T, Option<bool>)>,
    report: mpsc::UnboundedSender<Settled>,
    settled: mpsc::UnboundedReceiver<Settled>,
}

impl<T> Default for DeliveryTracker<T> {
    fn default() -> Self {
        let (report, settled) = mpsc::unbounded_channel();
        Self { next_id: 0, pending: BTreeMap::new(), report, settled }
    }
}

impl<T> DeliveryTracker<T> {
    /// A tracker with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a batch made of `ack` and returns the delivery to send with it.
    pub fn track(&mut self, ack: T) -> Delivery {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, (ack, None));
        let shared = Arc::new(Shared { id, failed: AtomicBool::new(false), report: self.report.clone() });
        Delivery { shares: Shares::One(shared), settled: false }
    }

    /// Batches emitted and not yet handed back.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Waits until at least one batch at the head of the order is settled and returns every
    /// settled batch at the head, in order. Returns an empty list at once when nothing is pending.
    ///
    /// # Cancel safety
    /// Cancel safe: outcomes that arrive are kept until returned.
    pub async fn next_settled(&mut self) -> Vec<Outcome<T>> {
        loop {
            let ready = self.take_ready();
            if !ready.is_empty() || self.pending.is_empty() {
                return ready;
            }
            let settled = self.settled.recv().await.expect("the tracker holds a sender");
            self.record(settled);
        }
    }

    /// The settled batches at the head of the order, without waiting.
    pub fn try_settled(&mut self) -> Vec<Outcome<T>> {
        while let Ok(settled) = self.settled.try_recv() {
            self.record(settled);
        }
        self.take_ready()
    }

    fn record(&mut self, settled: Settled) {
        if let Some(entry) = self.pending.get_mut(&settled.id) {
            entry.1 = Some(settled.delivered);
        }
    }

    fn take_ready(&mut self) -> Vec<Outcome<T>> {
        while let Ok(settled) = self.settled.try_recv() {
            self.record(settled);
        }
        let mut ready = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            let Some(delivered) = entry.get().1 else { break };
            let (ack, _) = entry.remove();
            ready.push(if delivered { Outcome::Delivered(ack) } else { Outcome::Failed(ack) });
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_delivered_when_every_fork_settles() {
        let mut tracker = DeliveryTracker::new();
        let delivery = tracker.track("a");
        let to_sink_1 = delivery.fork();
        let to_sink_2 = delivery.fork();
        delivery.settle();
        to_sink_1.settle();
        assert!(tracker.try_settled().is_empty(), "one sink still holds the batch");
        to_sink_2.settle();
        assert_eq!(tracker.next_settled().await, vec![Outcome::Delivered("a")]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[tokio::test]
    async fn one_unsettled_fork_fails_the_batch() {
        let mut tracker = DeliveryTracker::new();
        let delivery = tracker.track(1);
        let lost_in_channel = delivery.fork();
        delivery.settle();
        drop(lost_in_channel);
        assert_eq!(tracker.next_settled().await, vec![Outcome::Failed(1)]);
    }

    #[tokio::test]
    async fn outcomes_come_back_in_registration_order() {
        let mut tracker = DeliveryTracker::new();
        let first = tracker.track(1);
        let second = tracker.track(2);
        let third = tracker.track(3);
        third.settle();
        second.settle();
        assert!(tracker.try_settled().is_empty(), "the first batch is still out");
        first.settle();
        let outcomes = tracker.next_settled().await;
        assert_eq!(outcomes, vec![Outcome::Delivered(1), Outcome::Delivered(2), Outcome::Delivered(3)]);
        assert!(tracker.next_settled().await.is_empty());
    }

    #[tokio::test]
    async fn a_merged_delivery_settles_or_fails_every_batch_in_it() {
        let mut tracker = DeliveryTracker::new();
        let (first, second, third) = (tracker.track(1), tracker.track(2), tracker.track(3));
        let window = Delivery::merge([first, second.fork(), Delivery::untracked()]);
        second.settle();
        assert!(tracker.try_settled().is_empty(), "the window's result is not out yet");
        window.fork().settle();
        window.settle();
        let failed_window = Delivery::merge([third]);
        drop(failed_window);
        assert_eq!(
            tracker.next_settled().await,
            vec![Outcome::Delivered(1), Outcome::Delivered(2), Outcome::Failed(3)]
        );
    }

    #[test]
    fn untracked_deliveries_cost_nothing_and_report_nowhere() {
        let delivery = Delivery::untracked();
        assert!(!delivery.is_tracked());
        delivery.fork().settle();
        drop(delivery);
    }
}
