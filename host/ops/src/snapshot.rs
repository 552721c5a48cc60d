//! Operator state in checkpoints: a stateful step writes its state as Arrow rows (key columns,
//! then whatever the step keeps per key: window bounds, accumulator states, ranked rows), and this
//! module splits them by key group into [`KeyedState`] and reads them back.
//!
//! Each key group's bytes (or the unkeyed bytes of a step without `group_by`) are one blob:
//! `WOS1`, the length and text of the step's *shape*, the step's watermark (i64, little-endian),
//! then an Arrow IPC stream of the rows. The shape says what the rows mean (key types, the
//! aggregate calls, plugin state versions); a restore into a step of another shape is refused
//! with both shapes in the message rather than merging states of another layout.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use weir_engine::EventTime;
use weir_engine::checkpoint::KeyedState;
use weir_engine::component::RuntimeError;
use weir_engine::key_group::{key_group, key_hashes};

const MAGIC: &[u8; 4] = b"WOS1";

/// Writes `rows` as keyed state; `key` are the columns of `rows` that hold the step's key, in
/// the order the step's input is partitioned by (so that a row lands in the key group its key is
/// routed to). Without a key, the rows are the step's unkeyed state.
///
/// # Errors
/// Arrow failures.
pub fn write(shape: &str, watermark: EventTime, rows: &RecordBatch, key: &[usize]) -> Result<KeyedState, RuntimeError> {
    let mut state = KeyedState::default();
    if key.is_empty() {
        state.unkeyed = Some(blob(shape, watermark, rows)?);
        return Ok(state);
    }
    if rows.num_rows() == 0 {
        return Ok(state);
    }
    let keys: Vec<&ArrayRef> = key.iter().map(|&column| rows.column(column)).collect();
    let hashes = key_hashes(&keys, rows.num_rows())?;
    let mut by_group: std::collections::BTreeMap<u16, Vec<u32>> = std::collections::BTreeMap::new();
    for (row, hash) in hashes.into_iter().enumerate() {
        by_group.entry(key_group(hash)).or_default().push(row as u32);
    }
    for (group, selection) in by_group {
        let taken = arrow::compute::take_record_batch(rows, &UInt32Array::from(selection))?;
        state.groups.insert(group, blob(shape, watermark, &taken)?);
    }
    Ok(state)
}

fn blob(shape: &str, watermark: EventTime, rows: &RecordBatch) -> Result<Vec<u8>, RuntimeError> {
    let mut out = Vec::with_capacity(rows.get_array_memory_size() + shape.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
    out.extend_from_slice(shape.as_bytes());
    out.extend_from_slice(&watermark.to_le_bytes());
    let mut writer = StreamWriter::try_new(&mut out, &rows.schema())?;
    writer.write(rows)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// What a subtask restores: the rows of every key group it owns (and the unkeyed rows), and the
/// lowest watermark they were written at (`None` when there were none).
#[derive(Debug, Default)]
pub struct Restored {
    /// The rows, one batch per key group.
    pub batches: Vec<RecordBatch>,
    /// The lowest watermark of the subtasks that wrote them: rows later than this were not late
    /// for any of them.
    pub watermark: Option<EventTime>,
}

/// Reads what [`write`] wrote, checking that it was written by a step of the same `shape`.
///
/// # Errors
/// Bytes that do not decode, or state of another shape (naming both).
pub fn read(shape: &str, state: KeyedState) -> Result<Restored, RuntimeError> {
    let mut restored = Restored::default();
    for bytes in state.unkeyed.iter().chain(state.groups.values()) {
        let (written_shape, watermark, batches) = read_blob(bytes)?;
        if written_shape != shape {
            return Err(RuntimeError::Checkpoint(format!(
                "the checkpoint holds state of a step shaped `{written_shape}`, and this step is `{shape}`"
            )));
        }
        restored.watermark = Some(restored.watermark.map_or(watermark, |lowest: EventTime| lowest.min(watermark)));
        restored.batches.extend(batches);
    }
    Ok(restored)
}

fn read_blob(bytes: &[u8]) -> Result<(&str, EventTime, Vec<RecordBatch>), RuntimeError> {
    let bad = |reason: &str| RuntimeError::Checkpoint(format!("operator state does not decode: {reason}"));
    if bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(bad("bad magic"));
    }
    let len = bytes.get(4..8).ok_or_else(|| bad("truncated"))?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let shape = bytes.get(8..8 + len).ok_or_else(|| bad("truncated shape"))?;
    let shape = std::str::from_utf8(shape).map_err(|_| bad("shape is not UTF-8"))?;
    let watermark = bytes.get(8 + len..16 + len).ok_or_else(|| bad("truncated watermark"))?;
    let watermark = EventTime::from_le_bytes(watermark.try_into().expect("8 bytes"));
    let reader =
        StreamReader::try_new(std::io::Cursor::new(&bytes[16 + len..]), None).map_err(|err| bad(&err.to_string()))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|err| bad(&err.to_string()))?;
    Ok((shape, watermark, batches))
}

/// A batch of state rows from named columns (names only need to mean something to the step
/// that reads them back; they may repeat).
///
/// # Errors
/// Columns of different lengths.
pub fn rows(columns: Vec<(String, ArrayRef)>) -> Result<RecordBatch, RuntimeError> {
    let row_count = columns.first().map_or(0, |(_, column)| column.len());
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) =
        columns.into_iter().map(|(name, column)| (Field::new(name, column.data_type().clone(), true), column)).unzip();
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(row_count));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
}

/// The first `count` columns: the key of state rows that start with their key columns.
pub fn leading(count: usize) -> Vec<usize> {
    (0..count).collect()
}

/// The key columns of a step's state rows, named `key0`, `key1`, ...
pub fn key_columns(keys: Vec<ArrayRef>) -> Vec<(String, ArrayRef)> {
    keys.into_iter().enumerate().map(|(index, key)| (format!("key{index}"), key)).collect()
}

/// Concatenates state rows (all of one layout); no rows when there are none.
///
/// # Errors
/// Batches of different layouts.
pub fn concat(batches: &[RecordBatch]) -> Result<RecordBatch, RuntimeError> {
    Ok(match batches.first() {
        Some(first) => arrow::compute::concat_batches(&first.schema(), batches)?,
        None => RecordBatch::new_empty(Arc::new(Schema::empty())),
    })
}

/// A column of restored state rows by position, checked to be of type `T`.
///
/// # Errors
/// A missing column or another type (state of another layout).
pub fn column<T: arrow::array::Array + 'static>(batch: &RecordBatch, index: usize) -> Result<&T, RuntimeError> {
    batch
        .columns()
        .get(index)
        .and_then(|column| column.as_any().downcast_ref::<T>())
        .ok_or_else(|| RuntimeError::Checkpoint(format!("state column {index} is missing or of another type")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn state_rows() -> RecordBatch {
        rows(vec![
            ("key0".into(), Arc::new(StringArray::from(vec!["a", "b", "c", "a"]))),
            ("n".into(), Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
        ])
        .unwrap()
    }

    #[test]
    fn keyed_rows_split_by_key_group_and_come_back() {
        let state = write("keys=utf8", 42, &state_rows(), &[0]).unwrap();
        assert!(state.unkeyed.is_none());
        let groups: usize = state.groups.len();
        assert!((1..=3).contains(&groups), "{groups} key groups for three keys");
        let restored = read("keys=utf8", state.clone()).unwrap();
        assert_eq!(restored.watermark, Some(42));
        let rows: usize = restored.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 4, "every row restored once");
        let err = read("keys=int64", state).unwrap_err().to_string();
        assert!(err.contains("`keys=utf8`") && err.contains("`keys=int64`"), "{err}");
    }

    #[test]
    fn unkeyed_rows_stay_together_and_damage_is_reported() {
        let mut state = write("global", 7, &state_rows(), &[]).unwrap();
        assert!(state.groups.is_empty());
        assert_eq!(read("global", state.clone()).unwrap().batches[0].num_rows(), 4);
        let bytes = state.unkeyed.as_mut().unwrap();
        bytes.truncate(bytes.len() - 9);
        let err = read("global", state).unwrap_err().to_string();
        assert!(err.contains("does not decode"), "{err}");
    }
}
