//! Typed columns to the byte buffers of `weir:plugin/scalar-buffers` and back.
//!
//! The buffer transport exists for guests whose bindings build one object per element of a
//! typed list (componentize-py); the host keeps one code path (typed [`Column`]s) and converts
//! at the boundary, which costs about a nanosecond per value.

use super::bindings::scalar_buffers::exports::weir::plugin::scalar_buffers::BufferColumn;
use super::bindings::{Column, ColumnValues, DataType, VarData};

fn bytes_of<const N: usize, T: Copy>(values: &[T], to_le: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for value in values {
        out.extend_from_slice(&to_le(*value));
    }
    out
}

fn values_of<const N: usize, T>(bytes: &[u8], rows: usize, from_le: impl Fn([u8; N]) -> T) -> Result<Vec<T>, String> {
    if bytes.len() != rows * N {
        return Err(format!("{} value bytes for {rows} rows of {N}-byte values", bytes.len()));
    }
    Ok(bytes.chunks_exact(N).map(|chunk| from_le(chunk.try_into().expect("exact chunks"))).collect())
}

/// A typed column as buffers; `data_type` is the declared type (it carries timestamp units).
pub fn to_buffer(column: &Column, data_type: &DataType) -> BufferColumn {
    let (offsets, values) = match &column.values {
        ColumnValues::Boolean(bits) | ColumnValues::Decimal128(bits) => (Vec::new(), bits.clone()),
        ColumnValues::Int32(v) | ColumnValues::Date32(v) => (Vec::new(), bytes_of(v, i32::to_le_bytes)),
        ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => (Vec::new(), bytes_of(v, i64::to_le_bytes)),
        ColumnValues::Uint64(v) => (Vec::new(), bytes_of(v, u64::to_le_bytes)),
        ColumnValues::Float32(v) => (Vec::new(), bytes_of(v, f32::to_le_bytes)),
        ColumnValues::Float64(v) => (Vec::new(), bytes_of(v, f64::to_le_bytes)),
        ColumnValues::Utf8(var) | ColumnValues::Binary(var) => {
            let base = var.offsets.first().copied().unwrap_or(0);
            let offsets: Vec<i32> = var.offsets.iter().map(|offset| offset - base).collect();
            let end = var.offsets.last().copied().unwrap_or(0);
            (bytes_of(&offsets, i32::to_le_bytes), var.data[base as usize..end as usize].to_vec())
        }
    };
    BufferColumn { len: column.len, data_type: *data_type, validity: column.validity.clone(), offsets, values }
}

/// Buffers back to a typed column, checking sizes (the host checks types and values later).
///
/// # Errors
/// Buffers whose sizes do not fit the length and type.
pub fn from_buffer(buffer: BufferColumn) -> Result<Column, String> {
    let rows = buffer.len as usize;
    let var = |buffer: BufferColumn| -> Result<VarData, String> {
        let offsets = values_of(&buffer.offsets, rows + 1, i32::from_le_bytes)?;
        Ok(VarData { offsets, data: buffer.values })
    };
    let values = match buffer.data_type {
        DataType::Boolean => {
            if buffer.values.len() < rows.div_ceil(8) {
                return Err(format!("{} bytes of bits for {rows} rows", buffer.values.len()));
            }
            ColumnValues::Boolean(buffer.values.clone())
        }
        DataType::Int32 => ColumnValues::Int32(values_of(&buffer.values, rows, i32::from_le_bytes)?),
        DataType::Date32 => ColumnValues::Date32(values_of(&buffer.values, rows, i32::from_le_bytes)?),
        DataType::Int64 => ColumnValues::Int64(values_of(&buffer.values, rows, i64::from_le_bytes)?),
        DataType::Timestamp(_) => ColumnValues::Timestamp(values_of(&buffer.values, rows, i64::from_le_bytes)?),
        DataType::Uint64 => ColumnValues::Uint64(values_of(&buffer.values, rows, u64::from_le_bytes)?),
        DataType::Float32 => ColumnValues::Float32(values_of(&buffer.values, rows, f32::from_le_bytes)?),
        DataType::Float64 => ColumnValues::Float64(values_of(&buffer.values, rows, f64::from_le_bytes)?),
        DataType::Decimal128(_) => {
            if buffer.values.len() != rows * 16 {
                return Err(format!("{} bytes for {rows} decimal128 values", buffer.values.len()));
            }
            ColumnValues::Decimal128(buffer.values.clone())
        }
        DataType::Utf8 => {
            let validity = buffer.validity.clone();
            return Ok(Column { len: buffer.len, validity, values: ColumnValues::Utf8(var(buffer)?) });
        }
        DataType::Binary => {
            let validity = buffer.validity.clone();
            return Ok(Column { len: buffer.len, validity, values: ColumnValues::Binary(var(buffer)?) });
        }
    };
    Ok(Column { len: buffer.len, validity: buffer.validity, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::TimeUnit;

    #[test]
    fn columns_round_trip_through_buffers() {
        let columns = [
            (
                Column { len: 3, validity: Some(vec![0b101]), values: ColumnValues::Int64(vec![1, 0, -3]) },
                DataType::Int64,
            ),
            (Column { len: 2, validity: None, values: ColumnValues::Float64(vec![0.5, -1e300]) }, DataType::Float64),
            (
                Column { len: 2, validity: None, values: ColumnValues::Timestamp(vec![1, 2]) },
                DataType::Timestamp(TimeUnit::Millisecond),
            ),
            (
                Column {
                    len: 2,
                    validity: None,
                    values: ColumnValues::Utf8(VarData { offsets: vec![3, 5, 9], data: b"xxxabcdef".to_vec() }),
                },
                DataType::Utf8,
            ),
        ];
        for (column, data_type) in columns {
            let back = from_buffer(to_buffer(&column, &data_type)).unwrap();
            assert_eq!(back.len, column.len);
            assert_eq!(back.validity, column.validity);
            match (&back.values, &column.values) {
                (ColumnValues::Utf8(ours), ColumnValues::Utf8(_)) => {
                    assert_eq!(ours.offsets, vec![0, 2, 6], "offsets start at 0");
                    assert_eq!(ours.data, b"abcdef");
                }
                (ours, theirs) => assert_eq!(format!("{ours:?}"), format!("{theirs:?}")),
            }
        }
    }

    #[test]
    fn wrong_sizes_are_refused() {
        let short =
            BufferColumn { len: 2, data_type: DataType::Int64, validity: None, offsets: vec![], values: vec![0; 8] };
        assert!(from_buffer(short).unwrap_err().contains("8 value bytes for 2 rows"));
        let offsets =
            BufferColumn { len: 2, data_type: DataType::Utf8, validity: None, offsets: vec![0; 4], values: vec![] };
        assert!(from_buffer(offsets).is_err());
    }
}
