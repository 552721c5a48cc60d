//! Whole columns as arrow-rs arrays inside the guest (feature `arrow`), for plugins that work on
//! columns with Arrow kernels instead of row by row.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
    UInt64Array,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;

use crate::ColumnView;
use crate::types::{Column, ColumnValues, VarData};

impl ColumnView<'_> {
    /// The column as an arrow-rs array (copies the buffers). Timestamps, dates and decimals are
    /// not converted yet.
    ///
    /// # Errors
    /// Unsupported types and invalid strings.
    pub fn to_arrow(&self) -> Result<ArrayRef, String> {
        let rows = self.len();
        let nulls =
            self.validity().map(|bits| NullBuffer::new(BooleanBuffer::new(Buffer::from_slice_ref(bits), 0, rows)));
        Ok(match self.values() {
            ColumnValues::Boolean(bits) => {
                Arc::new(BooleanArray::new(BooleanBuffer::new(Buffer::from_slice_ref(bits), 0, rows), nulls))
            }
            ColumnValues::Int32(v) => Arc::new(Int32Array::new(ScalarBuffer::from(v.clone()), nulls)),
            ColumnValues::Int64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(v.clone()), nulls)),
            ColumnValues::Uint64(v) => Arc::new(UInt64Array::new(ScalarBuffer::from(v.clone()), nulls)),
            ColumnValues::Float32(v) => Arc::new(Float32Array::new(ScalarBuffer::from(v.clone()), nulls)),
            ColumnValues::Float64(v) => Arc::new(Float64Array::new(ScalarBuffer::from(v.clone()), nulls)),
            ColumnValues::Utf8(data) => Arc::new(
                StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(data.offsets.clone())),
                    Buffer::from_slice_ref(&data.data),
                    nulls,
                )
                .map_err(|err| err.to_string())?,
            ),
            ColumnValues::Binary(data) => Arc::new(
                BinaryArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(data.offsets.clone())),
                    Buffer::from_slice_ref(&data.data),
                    nulls,
                )
                .map_err(|err| err.to_string())?,
            ),
            _ => return Err("timestamp, date and decimal columns are not converted to arrow-rs yet".into()),
        })
    }
}

/// A result column from an arrow-rs array (booleans, integers, floats, strings, binary).
///
/// # Errors
/// Unsupported types.
pub fn column_from_arrow(array: &dyn Array) -> Result<Column, String> {
    let validity = array.logical_nulls().filter(|n| n.null_count() > 0).map(|n| n.inner().sliced().as_slice().to_vec());
    let values = match array.data_type() {
        DataType::Boolean => ColumnValues::Boolean(array.as_boolean().values().sliced().as_slice().to_vec()),
        DataType::Int32 => ColumnValues::Int32(array.as_primitive::<Int32Type>().values().to_vec()),
        DataType::Int64 => ColumnValues::Int64(array.as_primitive::<Int64Type>().values().to_vec()),
        DataType::UInt64 => ColumnValues::Uint64(array.as_primitive::<UInt64Type>().values().to_vec()),
        DataType::Float32 => ColumnValues::Float32(array.as_primitive::<Float32Type>().values().to_vec()),
        DataType::Float64 => ColumnValues::Float64(array.as_primitive::<Float64Type>().values().to_vec()),
        DataType::Utf8 => {
            let strings = array.as_string::<i32>();
            ColumnValues::Utf8(var_data(strings.value_offsets(), strings.values()))
        }
        DataType::Binary => {
            let binary = array.as_binary::<i32>();
            ColumnValues::Binary(var_data(binary.value_offsets(), binary.values()))
        }
        other => return Err(format!("cannot return a {other} column")),
    };
    Ok(Column { len: array.len() as u32, validity, values })
}

fn var_data(offsets: &[i32], data: &[u8]) -> VarData {
    let first = offsets.first().copied().unwrap_or(0);
    let last = offsets.last().copied().unwrap_or(0);
    VarData { offsets: offsets.iter().map(|o| o - first).collect(), data: data[first as usize..last as usize].to_vec() }
}
