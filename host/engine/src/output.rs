//! The output side of a task: fan-out to every downstream component and partitioning across
//! the downstream component's subtasks.
//!
//! Batches go to one subtask per downstream edge (forward when both sides have the same
//! parallelism, otherwise round-robin preferring a subtask with free capacity), or, into a keyed
//! operator, are split by a hash of the key columns so each key always reaches the same subtask;
//! control messages
//! (watermarks, barriers, end) go to every subtask of every edge. All channels are bounded, so a
//! slow consumer makes `send` wait.

use std::sync::Arc;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::Message;
use super::delivery::Delivery;
use super::metrics::ComponentMetrics;
use crate::key_group::{key_group, key_hashes, subtask_of};

/// A downstream task went away (it failed or the job is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("downstream of `{component}` closed its input")]
pub struct DownstreamClosed {
    /// The sending component.
    pub component: Arc<str>,
}

/// How batches pick a subtask on one edge.
#[derive(Debug, Clone)]
pub enum Route {
    /// Always the same subtask (upstream subtask i feeds downstream subtask i).
    Forward(usize),
    /// Rotate over subtasks, skipping full ones when another has room.
    RoundRobin(usize),
    /// Rows go to the subtask their key's hash picks (keyed operators: windows, aggregates).
    Hash(Arc<[usize]>),
}

/// Splits `batch` into one batch per subtask by the key group of the `key` columns (empty
/// batches for subtasks that get no rows): each subtask receives the keys of the key groups it
/// owns ([`crate::key_group`]), so state checkpointed by key group restores at any parallelism.
///
/// # Errors
/// Hashing or `take` failures (unsupported key types are refused at planning).
pub fn partition_by_hash(
    batch: &RecordBatch,
    key: &[usize],
    subtasks: usize,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let rows = batch.num_rows();
    let columns: Vec<&arrow::array::ArrayRef> = key.iter().map(|&k| batch.column(k)).collect();
    let hashes = key_hashes(&columns, rows)?;
    let mut indices: Vec<Vec<u32>> = (0..subtasks).map(|_| Vec::with_capacity(rows / subtasks + 1)).collect();
    for (row, hash) in hashes.iter().enumerate() {
        indices[subtask_of(key_group(*hash), subtasks)].push(row as u32);
    }
    indices
        .into_iter()
        .map(|rows| {
            let rows = arrow::array::UInt32Array::from(rows);
            arrow::compute::take_record_batch(batch, &rows)
        })
        .collect()
}

/// One edge to a downstream component: a sender per downstream subtask.
#[derive(Debug, Clone)]
pub struct Edge {
    senders: Vec<mpsc::Sender<Message>>,
    route: Route,
}

impl Edge {
    /// An edge over the downstream subtasks' input channels.
    pub fn new(senders: Vec<mpsc::Sender<Message>>, route: Route) -> Self {
        Self { senders, route }
    }
}

/// Where a task's results go.
#[derive(Debug)]
pub struct Output {
    component: Arc<str>,
    edges: Vec<Edge>,
    metrics: Arc<ComponentMetrics>,
}

impl Output {
    /// An output over these edges; sent rows are counted in `metrics`.
    pub fn new(component: Arc<str>, edges: Vec<Edge>, metrics: Arc<ComponentMetrics>) -> Self {
        Self { component, edges, metrics }
    }

    /// The edges, for a task that takes over this output (the watermark assigner).
    pub fn into_edges(self) -> Vec<Edge> {
        self.edges
    }

    /// Sends a batch nobody needs to acknowledge; see [`Output::deliver`].
    ///
    /// # Errors
    /// [`DownstreamClosed`] if a downstream task has gone.
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), DownstreamClosed> {
        self.deliver(batch, Delivery::untracked()).await
    }

    /// Sends a batch to each downstream component (one subtask each), each with a fork of
    /// `delivery`; this holder's share is settled once every edge took the batch. Empty batches
    /// are dropped (and count as delivered).
    ///
    /// # Errors
    /// [`DownstreamClosed`] if a downstream task has gone (the delivery then fails).
    pub async fn deliver(&mut self, batch: RecordBatch, delivery: Delivery) -> Result<(), DownstreamClosed> {
        if batch.num_rows() == 0 {
            delivery.settle();
            return Ok(());
        }
        self.metrics.record_sent(batch.num_rows());
        let last = self.edges.len().saturating_sub(1);
        let mut batch = Some(batch);
        // With room downstream the sends return at once, so this is the time spent blocked.
        let started = std::time::Instant::now();
        for index in 0..self.edges.len() {
            let message = if index == last { batch.take() } else { batch.clone() };
            let message = Message::Batch(message.expect("one batch per edge"), delivery.fork());
            self.send_on_edge(index, message).await?;
        }
        self.metrics.record_blocked(started.elapsed());
        delivery.settle();
        Ok(())
    }

    async fn send_on_edge(&mut self, index: usize, message: Message) -> Result<(), DownstreamClosed> {
        let edge = &mut self.edges[index];
        let closed = || DownstreamClosed { component: Arc::clone(&self.component) };
        match &mut edge.route {
            Route::Hash(key) if edge.senders.len() > 1 => {
                let Message::Batch(batch, delivery) = message else { unreachable!("only batches are routed") };
                // Key types are checked when the pipeline is planned, so hashing cannot fail here.
                let parts = partition_by_hash(&batch, key, edge.senders.len()).expect("hashable key columns");
                for (subtask, part) in parts.into_iter().enumerate() {
                    if part.num_rows() > 0 {
                        let message = Message::Batch(part, delivery.fork());
                        edge.senders[subtask].send(message).await.map_err(|_| closed())?;
                    }
                }
                delivery.settle();
                Ok(())
            }
            Route::Hash(_) => edge.senders[0].send(message).await.map_err(|_| closed()),
            Route::Forward(subtask) => edge.senders[*subtask].send(message).await.map_err(|_| closed()),
            Route::RoundRobin(next) => {
                let count = edge.senders.len();
                let mut message = message;
                for step in 0..count {
                    let subtask = (*next + step) % count;
                    match edge.senders[subtask].try_send(message) {
                        Ok(()) => {
                            *next = (subtask + 1) % count;
                            return Ok(());
                        }
                        Err(TrySendError::Full(back)) => message = back,
                        Err(TrySendError::Closed(_)) => return Err(closed()),
                    }
                }
                // Everyone is full: wait on the next one in turn (backpressure).
                let subtask = *next;
                *next = (subtask + 1) % count;
                edge.senders[subtask].send(message).await.map_err(|_| closed())
            }
        }
    }

    /// Sends a control message (watermark, barrier, end) to every downstream subtask.
    ///
    /// # Errors
    /// [`DownstreamClosed`] if a downstream task has gone.
    pub async fn broadcast(&mut self, message: Message) -> Result<(), DownstreamClosed> {
        debug_assert!(!matches!(message, Message::Batch(..)), "batches are routed, not broadcast");
        for edge in &self.edges {
            for sender in &edge.senders {
                sender
                    .send(message.clone())
                    .await
                    .map_err(|_| DownstreamClosed { component: Arc::clone(&self.component) })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn batch(rows: usize) -> RecordBatch {
        let values: Vec<i64> = (0..rows as i64).collect();
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values)) as _)]).unwrap()
    }

    #[tokio::test]
    async fn round_robin_spreads_batches_and_broadcast_reaches_everyone() {
        let (a_tx, mut a_rx) = mpsc::channel(8);
        let (b_tx, mut b_rx) = mpsc::channel(8);
        let (c_tx, mut c_rx) = mpsc::channel(8);
        let metrics = Arc::new(ComponentMetrics::default());
        let edges = vec![Edge::new(vec![a_tx, b_tx], Route::RoundRobin(0)), Edge::new(vec![c_tx], Route::Forward(0))];
        let mut output = Output::new("src".into(), edges, Arc::clone(&metrics));
        output.send(batch(3)).await.unwrap();
        output.send(batch(2)).await.unwrap();
        output.send(batch(0)).await.unwrap();
        output.broadcast(Message::End).await.unwrap();
        assert!(matches!(a_rx.recv().await, Some(Message::Batch(b, _)) if b.num_rows() == 3));
        assert!(matches!(b_rx.recv().await, Some(Message::Batch(b, _)) if b.num_rows() == 2));
        for rx in [&mut a_rx, &mut b_rx] {
            assert!(matches!(rx.recv().await, Some(Message::End)));
        }
        assert!(matches!(c_rx.recv().await, Some(Message::Batch(..))));
        assert!(matches!(c_rx.recv().await, Some(Message::Batch(..))));
        assert!(matches!(c_rx.recv().await, Some(Message::End)));
        assert_eq!(metrics.snapshot().sent_events, 5);
    }

    #[tokio::test]
    async fn hash_routing_sends_each_key_to_one_subtask() {
        let (a_tx, mut a_rx) = mpsc::channel(8);
        let (b_tx, mut b_rx) = mpsc::channel(8);
        let key: Arc<[usize]> = Arc::from(vec![0]);
        let edges = vec![Edge::new(vec![a_tx, b_tx], Route::Hash(key))];
        let mut output = Output::new("src".into(), edges, Arc::default());
        output.send(batch(100)).await.unwrap();
        output.send(batch(100)).await.unwrap();
        drop(output);
        let mut seen: [std::collections::BTreeSet<i64>; 2] = Default::default();
        for (subtask, rx) in [&mut a_rx, &mut b_rx].into_iter().enumerate() {
            while let Some(Message::Batch(batch, _)) = rx.recv().await {
                let values = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                seen[subtask].extend(values.values().iter().copied());
            }
        }
        assert!(seen[0].is_disjoint(&seen[1]), "a key went to both subtasks");
        assert_eq!(seen[0].len() + seen[1].len(), 100);
        assert!(!seen[0].is_empty() && !seen[1].is_empty(), "100 keys all hashed to one subtask");
    }

    #[tokio::test]
    async fn a_full_channel_applies_backpressure() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut output = Output::new("src".into(), vec![Edge::new(vec![tx], Route::Forward(0))], Arc::default());
        output.send(batch(1)).await.unwrap();
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), output.send(batch(1))).await;
        assert!(blocked.is_err(), "second send must wait for the consumer");
        rx.recv().await.unwrap();
        output.send(batch(1)).await.unwrap();
    }
}
