//! The input side of a task: merges its input channels into one ordered event stream.
//!
//! Keeps the protocol's promises for multi-input tasks (fan-in, several upstream subtasks):
//! - a watermark is emitted only when the minimum over all live, active inputs advances; an input
//!   that said it is idle ([`Message::Idle`]) is left out until it sends a batch or a watermark
//!   again, and when every live input is idle the task reports itself idle downstream;
//! - a barrier is emitted once every live input has delivered it; an input that delivered the
//!   barrier is not read again until alignment completes (Chandy-Lamport / Flink aligned checkpoints);
//! - `End` is emitted once, after every input ended (a closed channel counts as ended, and is
//!   remembered: [`InputGate::lost_input`] tells a natural end from an upstream task that died,
//!   after which a window must not fire what it holds as if its input were complete).
//!
//! Inputs are polled round-robin so one busy input cannot starve the others.

use std::future::poll_fn;
use std::task::Poll;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;

use super::delivery::Delivery;
use super::{EventTime, Message};

/// What a task sees next from its inputs.
#[derive(Debug)]
pub enum GateEvent {
    /// A batch, the index of the input it came from, and its delivery.
    Batch(usize, RecordBatch, Delivery),
    /// The minimum watermark over all inputs advanced to this value.
    Watermark(EventTime),
    /// Every input delivered the barrier for this epoch.
    Barrier(u64),
    /// Every live input is idle: tell downstream not to wait for this task's watermark.
    Idle,
    /// Every input ended.
    End,
}

struct GateInput {
    receiver: mpsc::Receiver<Message>,
    ended: bool,
    watermark: EventTime,
    barrier: Option<u64>,
    idle: bool,
}

/// Merges a task's input channels. Cancel safe: a message is only taken from a channel when
/// it is returned or fully accounted for.
pub struct InputGate {
    inputs: Vec<GateInput>,
    next_input: usize,
    watermark: EventTime,
    end_sent: bool,
    /// Whether `Idle` was reported and no input became active since.
    idle_sent: bool,
    /// Whether an input channel closed without `End` (its task failed or was aborted).
    lost: bool,
}

impl InputGate {
    /// A gate over these receivers; the index of each is the input index reported in batches.
    pub fn new(receivers: Vec<mpsc::Receiver<Message>>) -> Self {
        let inputs = receivers
            .into_iter()
            .map(|receiver| GateInput { receiver, ended: false, watermark: EventTime::MIN, barrier: None, idle: false })
            .collect();
        Self { inputs, next_input: 0, watermark: EventTime::MIN, end_sent: false, idle_sent: false, lost: false }
    }

    /// Whether an input channel closed without sending `End`: its upstream task failed, so the
    /// `End` this gate reports is not the end of the data.
    pub fn lost_input(&self) -> bool {
        self.lost
    }

    /// The current (minimum) watermark.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// Waits for the next event. After [`GateEvent::End`] it keeps returning `End`.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses no message.
    pub async fn next(&mut self) -> GateEvent {
        poll_fn(|cx| {
            loop {
                if self.end_sent || self.inputs.iter().all(|input| input.ended) {
                    self.end_sent = true;
                    return Poll::Ready(GateEvent::End);
                }
                let count = self.inputs.len();
                let mut progressed = false;
                for step in 0..count {
                    let index = (self.next_input + step) % count;
                    let input = &mut self.inputs[index];
                    if input.ended || input.barrier.is_some() {
                        continue;
                    }
                    let message = match input.receiver.poll_recv(cx) {
                        Poll::Pending => continue,
                        Poll::Ready(Some(message)) => message,
                        Poll::Ready(None) => {
                            self.lost = true;
                            Message::End
                        }
                    };
                    self.next_input = (index + 1) % count;
                    progressed = true;
                    if let Some(event) = self.accept(index, message) {
                        return Poll::Ready(event);
                    }
                    break;
                }
                if !progressed {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// Updates bookkeeping for one message; returns the event to surface, if any.
    fn accept(&mut self, index: usize, message: Message) -> Option<GateEvent> {
        match message {
            Message::Batch(batch, delivery) => {
                self.activate(index);
                Some(GateEvent::Batch(index, batch, delivery))
            }
            Message::Watermark(time) => {
                self.activate(index);
                let input = &mut self.inputs[index];
                input.watermark = input.watermark.max(time);
                self.advance_watermark()
            }
            Message::Idle => {
                self.inputs[index].idle = true;
                // The others may now be ahead of the idle one: the minimum can move.
                self.advance_watermark().or_else(|| self.report_idle())
            }
            Message::Barrier(epoch) => {
                self.inputs[index].barrier = Some(epoch);
                self.complete_barrier()
            }
            Message::End => {
                self.inputs[index].ended = true;
                self.inputs[index].barrier = None;
                if self.inputs.iter().all(|input| input.ended) {
                    return None; // the loop reports End
                }
                // An ended input no longer holds back the watermark or an alignment.
                self.complete_barrier().or_else(|| self.advance_watermark()).or_else(|| self.report_idle())
            }
        }
    }

    fn activate(&mut self, index: usize) {
        self.inputs[index].idle = false;
        self.idle_sent = false;
    }

    /// `Idle` once, when every live input is idle.
    fn report_idle(&mut self) -> Option<GateEvent> {
        let mut live = self.inputs.iter().filter(|input| !input.ended).peekable();
        if !self.idle_sent && live.peek().is_some() && live.all(|input| input.idle) {
            self.idle_sent = true;
            return Some(GateEvent::Idle);
        }
        None
    }

    fn advance_watermark(&mut self) -> Option<GateEvent> {
        let minimum =
            self.inputs.iter().filter(|input| !input.ended && !input.idle).map(|input| input.watermark).min()?;
        if minimum > self.watermark {
            self.watermark = minimum;
            Some(GateEvent::Watermark(minimum))
        } else {
            None
        }
    }

    fn complete_barrier(&mut self) -> Option<GateEvent> {
        let mut live = self.inputs.iter().filter(|input| !input.ended);
        let epoch = live.next()?.barrier?;
        if live.all(|input| input.barrier == Some(epoch)) {
            for input in &mut self.inputs {
                input.barrier = None;
            }
            Some(GateEvent::Barrier(epoch))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn batch(value: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![value])) as _)]).unwrap()
    }

    fn value(event: &GateEvent) -> i64 {
        match event {
            GateEvent::Batch(_, batch, _) => batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0),
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn watermark_is_the_minimum_of_live_inputs() {
        let (a_tx, a_rx) = mpsc::channel(8);
        let (b_tx, b_rx) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![a_rx, b_rx]);
        a_tx.send(Message::Watermark(10)).await.unwrap();
        b_tx.send(Message::Watermark(5)).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Watermark(5)));
        b_tx.send(Message::Watermark(20)).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Watermark(10)));
        // When `a` ends, only `b` holds the watermark back.
        a_tx.send(Message::End).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Watermark(20)));
        b_tx.send(Message::End).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::End));
        assert!(matches!(gate.next().await, GateEvent::End));
    }

    #[tokio::test]
    async fn an_idle_input_does_not_hold_back_the_watermark() {
        let (a_tx, a_rx) = mpsc::channel(8);
        let (b_tx, b_rx) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![a_rx, b_rx]);
        a_tx.send(Message::Watermark(10)).await.unwrap();
        b_tx.send(Message::Watermark(5)).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Watermark(5)));
        // `b` goes quiet: `a` alone decides.
        b_tx.send(Message::Idle).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Watermark(10)));
        a_tx.send(Message::Watermark(30)).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Watermark(30)));
        // Both idle: reported once.
        a_tx.send(Message::Idle).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::Idle));
        // `b` comes back with data: it counts again, from its own watermark (the gate never goes back).
        b_tx.send(Message::Batch(batch(1), Delivery::untracked())).await.unwrap();
        assert_eq!(value(&gate.next().await), 1);
        b_tx.send(Message::Watermark(40)).await.unwrap();
        a_tx.send(Message::Watermark(35)).await.unwrap();
        // `a` is active again at 35, `b` at 40.
        assert!(matches!(gate.next().await, GateEvent::Watermark(35)));
    }

    #[tokio::test]
    async fn barrier_aligns_and_blocks_the_early_input() {
        let (a_tx, a_rx) = mpsc::channel(8);
        let (b_tx, b_rx) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![a_rx, b_rx]);
        a_tx.send(Message::Barrier(1)).await.unwrap();
        a_tx.send(Message::Batch(batch(2), Delivery::untracked())).await.unwrap(); // after the barrier: must wait
        b_tx.send(Message::Batch(batch(1), Delivery::untracked())).await.unwrap();
        b_tx.send(Message::Barrier(1)).await.unwrap();
        assert_eq!(value(&gate.next().await), 1);
        assert!(matches!(gate.next().await, GateEvent::Barrier(1)));
        assert_eq!(value(&gate.next().await), 2);
    }

    #[tokio::test]
    async fn closed_channels_count_as_ended() {
        let (a_tx, a_rx) = mpsc::channel(8);
        let mut gate = InputGate::new(vec![a_rx]);
        a_tx.send(Message::Batch(batch(7), Delivery::untracked())).await.unwrap();
        drop(a_tx);
        assert_eq!(value(&gate.next().await), 7);
        assert!(matches!(gate.next().await, GateEvent::End));
    }

    #[tokio::test]
    async fn an_input_closed_without_end_is_reported_as_lost() {
        let (ended, ended_rx) = mpsc::channel(4);
        let (dying, dying_rx) = mpsc::channel(4);
        let mut gate = InputGate::new(vec![ended_rx, dying_rx]);
        ended.send(Message::End).await.unwrap();
        drop(dying); // the upstream task failed: its channel closes without End
        assert!(matches!(gate.next().await, GateEvent::End));
        assert!(gate.lost_input(), "a closed channel is not the end of the data");

        let (clean, clean_rx) = mpsc::channel(4);
        let mut gate = InputGate::new(vec![clean_rx]);
        clean.send(Message::End).await.unwrap();
        assert!(matches!(gate.next().await, GateEvent::End));
        assert!(!gate.lost_input());
    }
}
