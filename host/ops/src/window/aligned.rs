//! Tumbling, hopping and cumulating windows: per open window, a group table and accumulators
//! that rows are folded into as they arrive.
//!
//! Per input batch the time, key and aggregate-argument columns are evaluated once; rows are
//! spread over the windows they fall in (one for tumble, `size / slide` for hop), and each
//! window's accumulators take their rows in one vectorized call. A window fires once the
//! watermark reaches `end - 1`, emitting one row per key, and is freed when it can no longer
//! change (`end - 1 + allowed_lateness <= watermark`). The deliveries of the batches a window
//! holds travel with its results.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow::row::Rows;

use super::assign::Bounds;
use super::{TimeSource, WindowPlan, now_ms, row_times};
use crate::aggregate_calls::Accumulators;
use crate::groups::GroupTable;
use crate::snapshot;
use weir_engine::EventTime;
use weir_engine::checkpoint::KeyedState;
use weir_engine::component::{Emitter, RefusedRow, RuntimeError, StatefulOperator};
use weir_engine::delivery::Delivery;
use weir_engine::errors::RecordErrorHandler;

/// One open window.
#[derive(Debug)]
struct OpenWindow {
    groups: GroupTable,
    accumulators: Accumulators,
    /// Deliveries of the batches whose rows are in this window and not yet in a fired result.
    deliveries: Vec<Delivery>,
    fired: bool,
    /// After firing: groups changed by late rows, to fire again.
    changed: Vec<bool>,
}

impl OpenWindow {
    /// A window with no groups yet.
    fn new(plan: &WindowPlan) -> Self {
        Self {
            groups: plan.keys.table(),
            accumulators: plan.aggregates.accumulators(),
            deliveries: Vec::new(),
            fired: false,
            changed: Vec::new(),
        }
    }
}

/// The operator of one subtask.
pub struct AlignedWindows {
    plan: Arc<WindowPlan>,
    /// Open windows by (end, start): firing walks them in end order.
    windows: BTreeMap<(i64, i64), OpenWindow>,
    watermark: EventTime,
    scratch_windows: Vec<Bounds>,
    scratch_groups: Vec<usize>,
}

impl AlignedWindows {
    /// A subtask with no open windows.
    pub fn new(plan: Arc<WindowPlan>) -> Self {
        Self {
            plan,
            windows: BTreeMap::new(),
            watermark: EventTime::MIN,
            scratch_windows: Vec::new(),
            scratch_groups: Vec::new(),
        }
    }

    /// Whether a window can no longer take rows.
    fn is_closed(&self, bounds: Bounds) -> bool {
        (bounds.end - 1).saturating_add(self.plan.lateness) <= self.watermark
    }

    /// Folds the rows at `selection` (all rows when `None`) into one window; returns the rows a
    /// plugin aggregate's state limit refused (rows of the batch, with the reason).
    fn fold(
        &mut self,
        bounds: Bounds,
        keys: Option<&Rows>,
        arguments: &crate::aggregate_calls::Arguments,
        selection: Option<&[u32]>,
        row_count: usize,
        delivery: &Delivery,
    ) -> Result<Vec<(usize, String)>, RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let window = self.windows.entry((bounds.end, bounds.start)).or_insert_with(|| OpenWindow::new(&plan));
        let groups = &mut self.scratch_groups;
        window.groups.intern(keys, selection, row_count, groups);
        let taken;
        let arguments = match selection {
            None => arguments,
            Some(selection) => {
                taken = arguments.take(&UInt32Array::from(selection.to_vec()))?;
                &taken
            }
        };
        let refused = window.accumulators.update(&plan.aggregates, arguments, groups, window.groups.len())?;
        if window.fired {
            window.changed.resize(window.groups.len(), false);
            for &group in groups.iter() {
                window.changed[group] = true;
            }
        }
        if plan.at_least_once && delivery.is_tracked() {
            window.deliveries.push(delivery.fork());
        }
        // Refused rows as rows of the input batch.
        Ok(refused
            .into_iter()
            .map(|(row, reason)| (selection.map_or(row, |selection| selection[row] as usize), reason))
            .collect())
    }

    /// Emits the windows that are complete at the current watermark (all of them when `all`),
    /// and frees those that can no longer change.
    fn fire(&mut self, all: bool, out: &mut Emitter) -> Result<(), RuntimeError> {
        let watermark = if all { EventTime::MAX } else { self.watermark };
        let due: Vec<(i64, i64)> = self.windows.keys().take_while(|(end, _)| end - 1 <= watermark).copied().collect();
        for key in due {
            let (end, start) = key;
            if all || (end - 1).saturating_add(self.plan.lateness) <= watermark {
                let mut window = self.windows.remove(&key).expect("listed");
                emit(&self.plan, start, end, &mut window, true, out)?;
            } else {
                let window = self.windows.get_mut(&key).expect("listed");
                emit(&self.plan, start, end, window, false, out)?;
            }
        }
        Ok(())
    }
}

/// Emits one window's rows: all groups on its first firing, the changed ones after that. `last`:
/// the window is being freed, so its accumulators may be emptied.
fn emit(
    plan: &WindowPlan,
    start: i64,
    end: i64,
    window: &mut OpenWindow,
    last: bool,
    out: &mut Emitter,
) -> Result<(), RuntimeError> {
    let refire = window.fired;
    if refire && !window.changed.iter().any(|&changed| changed) {
        return Ok(());
    }
    let count = window.groups.len();
    let values = if last {
        window.accumulators.evaluate(&plan.aggregates)?
    } else {
        window.accumulators.evaluate_keeping(&plan.aggregates, count)?
    };
    let keys = plan.keys.decode(&window.groups)?;
    let mut batch =
        plan.output(Int64Array::from_value(start, count), Int64Array::from_value(end, count), keys, values)?;
    if refire {
        let mut changed = std::mem::take(&mut window.changed);
        changed.resize(count, false);
        batch = arrow::compute::filter_record_batch(&batch, &arrow::array::BooleanArray::from(changed))?;
    }
    window.fired = true;
    out.emit(batch, Delivery::merge(window.deliveries.drain(..)));
    Ok(())
}

impl StatefulOperator for AlignedWindows {
    fn process(
        &mut self,
        batch: RecordBatch,
        delivery: Delivery,
        out: &mut Emitter,
        errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let times = row_times(plan.time, &batch)?;
        let keys = plan.keys.encode(&batch)?;
        let arguments = plan.aggregates.arguments(&batch)?;
        let rows = batch.num_rows();

        // Spread rows over windows; most batches touch one or two.
        let mut by_window: BTreeMap<Bounds, Vec<u32>> = BTreeMap::new();
        let mut late: Vec<u32> = Vec::new();
        for row in 0..rows {
            if times.is_null(row) {
                super::reject_timeless(&batch, row, errors)?;
                continue;
            }
            let time = times.value(row);
            self.scratch_windows.clear();
            plan.kind.windows_of(time, &mut self.scratch_windows);
            let mut placed = false;
            for &bounds in &self.scratch_windows {
                if !self.is_closed(bounds) {
                    by_window.entry(bounds).or_default().push(row as u32);
                    placed = true;
                }
            }
            if !placed {
                late.push(row as u32);
            }
        }
        for (bounds, selection) in &by_window {
            let selection = (selection.len() != rows).then_some(selection.as_slice());
            let refused = self.fold(*bounds, keys.as_ref(), &arguments, selection, rows, &delivery)?;
            for (row, reason) in refused {
                out.refused.push(RefusedRow {
                    position: format!("input row {row}, window [{}, {})", bounds.start, bounds.end),
                    raw: weir_engine::errors::row_as_json(&batch, row),
                    reason,
                });
            }
        }
        if !late.is_empty() {
            let late = arrow::compute::take_record_batch(&batch, &UInt32Array::from(late))?;
            out.late.push((late, delivery.fork()));
        }
        delivery.settle();
        if plan.time == TimeSource::Processing {
            // Arrival time is the watermark: windows that ended fire without waiting for a tick.
            self.watermark = self.watermark.max(now_ms() - 1);
            self.fire(false, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<(), RuntimeError> {
        if self.plan.time == TimeSource::Processing || watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.fire(false, out)
    }

    fn timer_interval(&self) -> Option<std::time::Duration> {
        match (self.plan.time, self.plan.early_fire) {
            (TimeSource::Processing, Some(every)) => Some(every.min(std::time::Duration::from_millis(100))),
            (TimeSource::Processing, None) => Some(std::time::Duration::from_millis(100)),
            (_, every) => every,
        }
    }

    fn on_timer(&mut self, out: &mut Emitter) -> Result<(), RuntimeError> {
        if self.plan.time == TimeSource::Processing {
            self.watermark = self.watermark.max(now_ms() - 1);
            self.fire(false, out)?;
        }
        if self.plan.early_fire.is_some() {
            // Partial results of every open window that has not fired; its state is kept.
            let keys: Vec<(i64, i64)> =
                self.windows.iter().filter(|(_, window)| !window.fired).map(|(key, _)| *key).collect();
            for (end, start) in keys {
                let window = self.windows.get_mut(&(end, start)).expect("listed");
                let count = window.groups.len();
                let values = window.accumulators.evaluate_keeping(&self.plan.aggregates, count)?;
                let keys = self.plan.keys.decode(&window.groups)?;
                let (starts, ends) = (Int64Array::from_value(start, count), Int64Array::from_value(end, count));
                out.emit(self.plan.output(starts, ends, keys, values)?, Delivery::untracked());
            }
        }
        Ok(())
    }

    fn runs_plugins(&self) -> bool {
        self.plan.aggregates.runs_plugins()
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), RuntimeError> {
        self.fire(true, out)
    }

    fn state_groups(&self) -> usize {
        self.windows.values().map(|window| window.groups.len()).sum()
    }

    fn state_bytes(&self) -> usize {
        self.windows.values().map(|window| window.groups.size() + window.accumulators.size()).sum()
    }

    fn checkpointable(&self) -> bool {
        true
    }

    /// One row per open (window, key): the key, `start`, `end`, `fired`, `changed`, then the
    /// accumulators' partial states. Deliveries are not part of it: with checkpoints the
    /// checkpoint, not the window, stands for the rows' acknowledgement.
    fn snapshot(&mut self) -> Result<KeyedState, RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let mut batches = Vec::with_capacity(self.windows.len());
        for (&(end, start), window) in &mut self.windows {
            let count = window.groups.len();
            let mut columns = snapshot::key_columns(plan.keys.decode(&window.groups)?);
            let mut changed = window.changed.clone();
            changed.resize(count, false);
            columns.push(("start".into(), Arc::new(Int64Array::from_value(start, count))));
            columns.push(("end".into(), Arc::new(Int64Array::from_value(end, count))));
            columns.push(("fired".into(), Arc::new(BooleanArray::from(vec![window.fired; count]))));
            columns.push(("changed".into(), Arc::new(BooleanArray::from(changed))));
            let states = window.accumulators.states(&plan.aggregates, count)?;
            columns.extend(states.into_iter().flatten().map(|state| ("state".to_owned(), state)));
            batches.push(snapshot::rows(columns)?);
        }
        snapshot::write(
            &plan.state_shape(),
            self.watermark,
            &snapshot::concat(&batches)?,
            &snapshot::leading(plan.keys.columns.len()),
        )
    }

    fn restore(&mut self, state: KeyedState) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let restored = snapshot::read(&plan.state_shape(), state)?;
        if let Some(watermark) = restored.watermark {
            self.watermark = self.watermark.max(watermark);
        }
        let keys = plan.keys.columns.len();
        for batch in restored.batches.iter().filter(|batch| batch.num_rows() > 0) {
            let starts = snapshot::column::<Int64Array>(batch, keys)?;
            let ends = snapshot::column::<Int64Array>(batch, keys + 1)?;
            snapshot::column::<BooleanArray>(batch, keys + 2)?;
            snapshot::column::<BooleanArray>(batch, keys + 3)?;
            let mut rows_of: BTreeMap<(i64, i64), Vec<u32>> = BTreeMap::new();
            for row in 0..batch.num_rows() {
                rows_of.entry((ends.value(row), starts.value(row))).or_default().push(row as u32);
            }
            for (bounds, selection) in rows_of {
                let taken = arrow::compute::take_record_batch(batch, &UInt32Array::from(selection))?;
                let key_rows = plan.keys.encode_columns(&taken.columns()[..keys])?;
                let window = self.windows.entry(bounds).or_insert_with(|| OpenWindow::new(&plan));
                let groups = &mut self.scratch_groups;
                window.groups.intern(key_rows.as_ref(), None, taken.num_rows(), groups);
                window.accumulators.merge_states(
                    &plan.aggregates,
                    &taken.columns()[keys + 4..],
                    groups,
                    window.groups.len(),
                )?;
                let (fired, changed) = (taken.column(keys + 2).as_boolean(), taken.column(keys + 3).as_boolean());
                window.fired |= fired.value(0);
                if window.fired {
                    window.changed.resize(window.groups.len(), false);
                    for (row, &group) in groups.iter().enumerate() {
                        window.changed[group] |= changed.value(row);
                    }
                }
            }
        }
        Ok(())
    }
}
