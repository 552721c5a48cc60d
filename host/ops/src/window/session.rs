//! Session windows: per key, rows closer than `gap` to each other form one window.
//!
//! A new row opens `[time, time + gap)` and merges every session of its key it overlaps, so
//! sessions grow and join as rows arrive, out of order too. Because sessions merge, they keep
//! their rows (the evaluated aggregate arguments of the batches they came from, shared between
//! sessions and freed with the last session using them) and aggregate when they fire: once the
//! watermark reaches `end - 1`. Keys without an open session are dropped from the key table when
//! they are the majority, so state follows the open sessions, not every key ever seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};

use super::{WindowPlan, row_times};
use crate::aggregate_calls::Arguments;
use crate::groups::GroupTable;
use crate::snapshot;
use weir_engine::EventTime;
use weir_engine::checkpoint::KeyedState;
use weir_engine::component::{Emitter, RefusedRow, RuntimeError, StatefulOperator};
use weir_engine::delivery::Delivery;
use weir_engine::errors::RecordErrorHandler;

#[derive(Debug)]
struct Session {
    start: i64,
    /// Last row time + gap.
    end: i64,
    /// (stored batch, row) of every row in the session.
    rows: Vec<(u32, u32)>,
    deliveries: Vec<Delivery>,
}

/// Evaluated arguments of one input batch, kept while sessions use its rows.
#[derive(Debug)]
struct Stored {
    arguments: Arguments,
    users: usize,
}

/// The operator of one subtask.
pub struct SessionWindows {
    plan: Arc<WindowPlan>,
    gap: i64,
    keys: GroupTable,
    /// Open sessions per key index, ordered by start, never overlapping.
    sessions: Vec<Vec<Session>>,
    /// (end, key, start) of every open session: firing order.
    ends: BTreeSet<(i64, usize, i64)>,
    stored: HashMap<u32, Stored>,
    next_batch: u32,
    watermark: EventTime,
    scratch: Vec<usize>,
}

impl SessionWindows {
    /// A subtask with no open sessions.
    pub fn new(plan: Arc<WindowPlan>, gap: i64) -> Self {
        let keys = plan.keys.table();
        Self {
            plan,
            gap,
            keys,
            sessions: Vec::new(),
            ends: BTreeSet::new(),
            stored: HashMap::new(),
            next_batch: 0,
            watermark: EventTime::MIN,
            scratch: Vec::new(),
        }
    }

    /// Whether `[start, end)` overlaps an open session of `key`.
    fn overlaps(&self, key: usize, start: i64, end: i64) -> bool {
        let sessions = &self.sessions[key];
        let first = sessions.partition_point(|s| s.end <= start);
        sessions.get(first).is_some_and(|s| s.start < end)
    }

    /// Adds one row at `time` to its key's sessions, merging those it touches.
    fn add(&mut self, key: usize, time: i64, row: (u32, u32), delivery: &Delivery) {
        let sessions = &mut self.sessions[key];
        let (mut start, mut end) = (time, time + self.gap);
        // Sessions are ordered and disjoint: the ones overlapping [time, time + gap) are adjacent.
        let first = sessions.partition_point(|s| s.end <= start);
        let mut last = first;
        while last < sessions.len() && sessions[last].start < end {
            last += 1;
        }
        let mut rows = vec![row];
        let mut deliveries = Vec::new();
        if self.plan.at_least_once && delivery.is_tracked() {
            deliveries.push(delivery.fork());
        }
        for session in sessions.drain(first..last) {
            self.ends.remove(&(session.end, key, session.start));
            start = start.min(session.start);
            end = end.max(session.end);
            rows.extend(session.rows);
            deliveries.extend(session.deliveries);
        }
        sessions.insert(first, Session { start, end, rows, deliveries });
        self.ends.insert((end, key, start));
    }

    /// Fires every session that ended by the watermark (all of them when `all`).
    fn fire(&mut self, all: bool, out: &mut Emitter) -> Result<(), RuntimeError> {
        let watermark = if all { EventTime::MAX } else { self.watermark };
        let due: Vec<(i64, usize, i64)> =
            self.ends.iter().take_while(|(end, _, _)| end - 1 <= watermark).copied().collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut fired = Vec::with_capacity(due.len());
        for &(end, key, start) in &due {
            self.ends.remove(&(end, key, start));
            let sessions = &mut self.sessions[key];
            let position = sessions.iter().position(|s| s.start == start).expect("indexed session exists");
            fired.push((key, sessions.remove(position)));
        }
        // Gather every fired row's arguments into one batch; group = the session's ordinal.
        let mut batches: Vec<u32> = fired.iter().flat_map(|(_, s)| s.rows.iter().map(|&(b, _)| b)).collect();
        batches.sort_unstable();
        batches.dedup();
        let slot: HashMap<u32, usize> = batches.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let mut picks = Vec::new();
        let mut groups = Vec::new();
        for (ordinal, (_, session)) in fired.iter().enumerate() {
            for &(batch, row) in &session.rows {
                picks.push((slot[&batch], row as usize));
                groups.push(ordinal);
            }
        }
        let aggregates = &self.plan.aggregates;
        let stored: Vec<&Arguments> = batches.iter().map(|b| &self.stored[b].arguments).collect();
        let arguments = gather(&stored, &picks)?;
        let mut accumulators = aggregates.accumulators();
        let refused = accumulators.update(aggregates, &arguments, &groups, fired.len())?;
        let values = accumulators.evaluate(aggregates)?;
        let key_groups: Vec<usize> = fired.iter().map(|(key, _)| *key).collect();
        let keys = self.plan.keys.decode_groups(&self.keys, &key_groups)?;
        let starts = Int64Array::from_iter_values(fired.iter().map(|(_, s)| s.start));
        let ends = Int64Array::from_iter_values(fired.iter().map(|(_, s)| s.end));
        let batch = self.plan.output(starts, ends, keys, values)?;
        // Sessions fold their rows when they fire: a refused row is described by its session.
        for (row, reason) in refused {
            let (_, session) = &fired[groups[row]];
            out.refused.push(RefusedRow {
                position: format!("a row of session [{}, {})", session.start, session.end),
                raw: weir_engine::errors::row_as_json(&batch, groups[row]),
                reason,
            });
        }
        let mut deliveries = Vec::new();
        for (_, session) in fired {
            for (batch, _) in session.rows {
                let stored = self.stored.get_mut(&batch).expect("stored while used");
                stored.users -= 1;
                if stored.users == 0 {
                    self.stored.remove(&batch);
                }
            }
            deliveries.extend(session.deliveries);
        }
        out.emit(batch, Delivery::merge(deliveries));
        self.compact_keys();
        Ok(())
    }

    /// Every open session's rows as state rows: the key, the session's `start` and `end`, then
    /// the row's evaluated aggregate arguments (`value <call> <arg>`, `filter <call>`).
    fn state_rows(&self) -> Result<RecordBatch, RuntimeError> {
        let mut batches: Vec<u32> = self.stored.keys().copied().collect();
        batches.sort_unstable();
        let slot: HashMap<u32, usize> = batches.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let (mut picks, mut keys, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (key, sessions) in self.sessions.iter().enumerate() {
            for session in sessions {
                for &(batch, row) in &session.rows {
                    picks.push((slot[&batch], row as usize));
                    keys.push(key);
                    starts.push(session.start);
                    ends.push(session.end);
                }
            }
        }
        if picks.is_empty() {
            return snapshot::concat(&[]);
        }
        let stored: Vec<&Arguments> = batches.iter().map(|b| &self.stored[b].arguments).collect();
        let mut arguments = gather(&stored, &picks)?;
        let mut columns = snapshot::key_columns(self.plan.keys.decode_groups(&self.keys, &keys)?);
        columns.push(("start".into(), Arc::new(Int64Array::from(starts))));
        columns.push(("end".into(), Arc::new(Int64Array::from(ends))));
        for (call, values) in arguments.values.into_iter().enumerate() {
            for (arg, value) in values.into_iter().enumerate() {
                columns.push((format!("value {call} {arg}"), value));
            }
            if let Some(filter) = arguments.filters[call].take() {
                columns.push((format!("filter {call}"), Arc::new(filter)));
            }
        }
        snapshot::rows(columns)
    }

    /// Rebuilds the key table without keys that have no open session, when those are most.
    fn compact_keys(&mut self) {
        let live: Vec<usize> = (0..self.sessions.len()).filter(|&k| !self.sessions[k].is_empty()).collect();
        if self.sessions.len() < 4096 || live.len() * 2 > self.sessions.len() {
            return;
        }
        // Live keys keep their order, so key `live[i]` becomes key `i`.
        self.keys = self.keys.retain(&self.plan.keys, &live);
        let mut sessions = Vec::with_capacity(live.len());
        self.ends.clear();
        for (new, &old) in live.iter().enumerate() {
            let kept = std::mem::take(&mut self.sessions[old]);
            for session in &kept {
                self.ends.insert((session.end, new, session.start));
            }
            sessions.push(kept);
        }
        self.sessions = sessions;
    }
}

/// The arguments of the rows at `picks` (stored batch, row), gathered into one batch.
fn gather(stored: &[&Arguments], picks: &[(usize, usize)]) -> Result<Arguments, RuntimeError> {
    let interleave = |pick: &dyn Fn(&Arguments) -> &dyn Array| -> Result<ArrayRef, RuntimeError> {
        let arrays: Vec<&dyn Array> = stored.iter().map(|arguments| pick(arguments)).collect();
        Ok(arrow::compute::interleave(&arrays, picks)?)
    };
    let mut arguments = Arguments { values: Vec::new(), filters: Vec::new() };
    for (call, values) in stored[0].values.iter().enumerate() {
        let mut gathered = Vec::with_capacity(values.len());
        for arg in 0..values.len() {
            gathered.push(interleave(&|arguments: &Arguments| arguments.values[call][arg].as_ref())?);
        }
        arguments.values.push(gathered);
        let filter = match &stored[0].filters[call] {
            None => None,
            Some(_) => {
                let mask = interleave(&|arguments: &Arguments| arguments.filters[call].as_ref().expect("same plan"))?;
                Some(arrow::array::AsArray::as_boolean(&mask).clone())
            }
        };
        arguments.filters.push(filter);
    }
    Ok(arguments)
}

impl StatefulOperator for SessionWindows {
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
        let rows = batch.num_rows();
        let mut groups = std::mem::take(&mut self.scratch);
        self.keys.intern(keys.as_ref(), None, rows, &mut groups);
        if self.sessions.len() < self.keys.len() {
            self.sessions.resize_with(self.keys.len(), Vec::new);
        }
        let id = self.next_batch;
        self.next_batch = self.next_batch.wrapping_add(1);
        let mut users = 0;
        let mut late = Vec::new();
        for (row, &group) in groups.iter().enumerate() {
            if times.is_null(row) {
                super::reject_timeless(&batch, row, errors)?;
                continue;
            }
            let time = times.value(row);
            // Late: its own session would be due already and it joins no open one.
            if time + self.gap - 1 <= self.watermark && !self.overlaps(group, time, time + self.gap) {
                late.push(row as u32);
                continue;
            }
            self.add(group, time, (id, row as u32), &delivery);
            users += 1;
        }
        self.scratch = groups;
        if users > 0 {
            self.stored.insert(id, Stored { arguments: plan.aggregates.arguments(&batch)?, users });
        }
        if !late.is_empty() {
            let late = arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(late))?;
            out.late.push((late, delivery.fork()));
        }
        delivery.settle();
        if plan.time == super::TimeSource::Processing {
            self.watermark = self.watermark.max(super::now_ms() - 1);
            self.fire(false, out)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Emitter) -> Result<(), RuntimeError> {
        if self.plan.time == super::TimeSource::Processing || watermark <= self.watermark {
            return Ok(());
        }
        self.watermark = watermark;
        self.fire(false, out)
    }

    fn timer_interval(&self) -> Option<std::time::Duration> {
        (self.plan.time == super::TimeSource::Processing).then_some(std::time::Duration::from_millis(100))
    }

    fn on_timer(&mut self, out: &mut Emitter) -> Result<(), RuntimeError> {
        self.watermark = self.watermark.max(super::now_ms() - 1);
        self.fire(false, out)
    }

    fn runs_plugins(&self) -> bool {
        self.plan.aggregates.runs_plugins()
    }

    fn finish(&mut self, out: &mut Emitter) -> Result<(), RuntimeError> {
        self.fire(true, out)?;
        self.keys = self.plan.keys.table();
        self.sessions.clear();
        Ok(())
    }

    fn state_groups(&self) -> usize {
        self.ends.len()
    }

    fn state_bytes(&self) -> usize {
        let arguments: usize = self
            .stored
            .values()
            .map(|stored| {
                let values: usize =
                    stored.arguments.values.iter().flatten().map(|array| array.get_array_memory_size()).sum();
                let filters: usize =
                    stored.arguments.filters.iter().flatten().map(BooleanArray::get_array_memory_size).sum();
                values + filters
            })
            .sum();
        if self.ends.is_empty() && self.stored.is_empty() {
            return 0;
        }
        let rows: usize = self.sessions.iter().flatten().map(|s| s.rows.capacity() * 8 + 64).sum();
        arguments + rows + self.keys.size() + self.ends.len() * 40
    }

    fn checkpointable(&self) -> bool {
        true
    }

    fn snapshot(&mut self) -> Result<KeyedState, RuntimeError> {
        let rows = self.state_rows()?;
        snapshot::write(
            &self.plan.state_shape(),
            self.watermark,
            &rows,
            &snapshot::leading(self.plan.keys.columns.len()),
        )
    }

    fn restore(&mut self, state: KeyedState) -> Result<(), RuntimeError> {
        let plan = Arc::clone(&self.plan);
        let restored = snapshot::read(&plan.state_shape(), state)?;
        if let Some(watermark) = restored.watermark {
            self.watermark = self.watermark.max(watermark);
        }
        let key_count = plan.keys.columns.len();
        for batch in restored.batches.iter().filter(|batch| batch.num_rows() > 0) {
            let starts = snapshot::column::<Int64Array>(batch, key_count)?;
            let ends = snapshot::column::<Int64Array>(batch, key_count + 1)?;
            let mut arguments = Arguments {
                values: vec![Vec::new(); plan.aggregates.calls.len()],
                filters: vec![None; plan.aggregates.calls.len()],
            };
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()).skip(key_count + 2) {
                let words: Vec<&str> = field.name().split(' ').collect();
                let call = words
                    .get(1)
                    .and_then(|call| call.parse::<usize>().ok())
                    .filter(|&call| call < arguments.values.len());
                match (words.first(), call) {
                    (Some(&"value"), Some(call)) => arguments.values[call].push(Arc::clone(column)),
                    (Some(&"filter"), Some(call)) => {
                        arguments.filters[call] =
                            Some(arrow::array::AsArray::as_boolean_opt(column.as_ref()).cloned().ok_or_else(|| {
                                RuntimeError::Checkpoint(format!(
                                    "session state column `{}` is not boolean",
                                    field.name()
                                ))
                            })?);
                    }
                    _ => {
                        return Err(RuntimeError::Checkpoint(format!(
                            "unexpected session state column `{}`",
                            field.name()
                        )));
                    }
                }
            }
            let key_rows = plan.keys.encode_columns(&batch.columns()[..key_count])?;
            let mut groups = std::mem::take(&mut self.scratch);
            self.keys.intern(key_rows.as_ref(), None, batch.num_rows(), &mut groups);
            if self.sessions.len() < self.keys.len() {
                self.sessions.resize_with(self.keys.len(), Vec::new);
            }
            let id = self.next_batch;
            self.next_batch = self.next_batch.wrapping_add(1);
            let mut restored: std::collections::BTreeMap<(usize, i64, i64), Vec<(u32, u32)>> = Default::default();
            for (row, &key) in groups.iter().enumerate() {
                restored.entry((key, starts.value(row), ends.value(row))).or_default().push((id, row as u32));
            }
            self.scratch = groups;
            for ((key, start, end), rows) in restored {
                let sessions = &mut self.sessions[key];
                let at = sessions.partition_point(|s| s.start < start);
                sessions.insert(at, Session { start, end, rows, deliveries: Vec::new() });
                self.ends.insert((end, key, start));
            }
            self.stored.insert(id, Stored { arguments, users: batch.num_rows() });
        }
        Ok(())
    }
}
