//! Arrow arrays to and from the WIT columnar layout. Values cross as whole buffers; columns
//! coming back from a guest are validated (lengths, offsets, UTF-8) before Arrow sees them.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int32Array, Int64Array, PrimitiveArray, StringArray, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{self as adt, ArrowPrimitiveType, DataType as ArrowType};

use super::bindings::{Column, ColumnValues, DataType, DecimalType, Field, TimeUnit, VarData};

/// The Arrow type of a WIT data type.
pub fn to_arrow_type(data_type: &DataType) -> ArrowType {
    match data_type {
        DataType::Boolean => ArrowType::Boolean,
        DataType::Int32 => ArrowType::Int32,
        DataType::Int64 => ArrowType::Int64,
        DataType::Uint64 => ArrowType::UInt64,
        DataType::Float32 => ArrowType::Float32,
        DataType::Float64 => ArrowType::Float64,
        DataType::Utf8 => ArrowType::Utf8,
        DataType::Binary => ArrowType::Binary,
        DataType::Timestamp(unit) => ArrowType::Timestamp(
            match unit {
                TimeUnit::Second => adt::TimeUnit::Second,
                TimeUnit::Millisecond => adt::TimeUnit::Millisecond,
                TimeUnit::Microsecond => adt::TimeUnit::Microsecond,
                TimeUnit::Nanosecond => adt::TimeUnit::Nanosecond,
            },
            None,
        ),
        DataType::Date32 => ArrowType::Date32,
        DataType::Decimal128(decimal) => ArrowType::Decimal128(decimal.precision, decimal.scale),
    }
}

/// The WIT type of an Arrow type, when plugins can take it.
pub fn from_arrow_type(data_type: &ArrowType) -> Option<DataType> {
    Some(match data_type {
        ArrowType::Boolean => DataType::Boolean,
        ArrowType::Int32 => DataType::Int32,
        ArrowType::Int64 => DataType::Int64,
        ArrowType::UInt64 => DataType::Uint64,
        ArrowType::Float32 => DataType::Float32,
        ArrowType::Float64 => DataType::Float64,
        ArrowType::Utf8 => DataType::Utf8,
        ArrowType::Binary => DataType::Binary,
        ArrowType::Timestamp(unit, None) => DataType::Timestamp(match unit {
            adt::TimeUnit::Second => TimeUnit::Second,
            adt::TimeUnit::Millisecond => TimeUnit::Millisecond,
            adt::TimeUnit::Microsecond => TimeUnit::Microsecond,
            adt::TimeUnit::Nanosecond => TimeUnit::Nanosecond,
        }),
        ArrowType::Date32 => DataType::Date32,
        ArrowType::Decimal128(precision, scale) => {
            DataType::Decimal128(DecimalType { precision: *precision, scale: *scale })
        }
        _ => return None,
    })
}

/// Display of a WIT type in the pipeline's type names.
pub fn type_name(data_type: &DataType) -> String {
    to_arrow_type(data_type).to_string()
}

/// Argument types as written in signatures: `Int64, Utf8`.
pub fn type_list(types: &[DataType]) -> String {
    types.iter().map(type_name).collect::<Vec<_>>().join(", ")
}

/// A column of an array, or `None` for types plugins cannot take.
pub fn to_column(array: &ArrayRef) -> Option<Column> {
    let len = array.len() as u32;
    let validity = array.logical_nulls().filter(|nulls| nulls.null_count() > 0).map(|nulls| bitmap(nulls.inner()));
    let values = match array.data_type() {
        ArrowType::Boolean => ColumnValues::Boolean(bitmap(array.as_boolean().values())),
        ArrowType::Int32 => ColumnValues::Int32(primitive::<adt::Int32Type>(array)),
        ArrowType::Int64 => ColumnValues::Int64(primitive::<adt::Int64Type>(array)),
        ArrowType::UInt64 => ColumnValues::Uint64(primitive::<adt::UInt64Type>(array)),
        ArrowType::Float32 => ColumnValues::Float32(primitive::<adt::Float32Type>(array)),
        ArrowType::Float64 => ColumnValues::Float64(primitive::<adt::Float64Type>(array)),
        ArrowType::Date32 => ColumnValues::Date32(primitive::<adt::Date32Type>(array)),
        ArrowType::Timestamp(adt::TimeUnit::Second, None) => {
            ColumnValues::Timestamp(primitive::<adt::TimestampSecondType>(array))
        }
        ArrowType::Timestamp(adt::TimeUnit::Millisecond, None) => {
            ColumnValues::Timestamp(primitive::<adt::TimestampMillisecondType>(array))
        }
        ArrowType::Timestamp(adt::TimeUnit::Microsecond, None) => {
            ColumnValues::Timestamp(primitive::<adt::TimestampMicrosecondType>(array))
        }
        ArrowType::Timestamp(adt::TimeUnit::Nanosecond, None) => {
            ColumnValues::Timestamp(primitive::<adt::TimestampNanosecondType>(array))
        }
        ArrowType::Decimal128(_, _) => ColumnValues::Decimal128(
            array.as_primitive::<adt::Decimal128Type>().values().iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        ArrowType::Utf8 => {
            let strings = array.as_string::<i32>();
            ColumnValues::Utf8(var_data(strings.value_offsets(), strings.values()))
        }
        ArrowType::Binary => {
            let binary = array.as_binary::<i32>();
            ColumnValues::Binary(var_data(binary.value_offsets(), binary.values()))
        }
        _ => return None,
    };
    Some(Column { len, validity, values })
}

fn primitive<T: ArrowPrimitiveType>(array: &ArrayRef) -> Vec<T::Native> {
    array.as_primitive::<T>().values().to_vec()
}

/// Bits of a (possibly offset) boolean buffer, re-aligned to bit 0.
fn bitmap(bits: &BooleanBuffer) -> Vec<u8> {
    if bits.offset().is_multiple_of(8) {
        let start = bits.offset() / 8;
        bits.values()[start..start + bits.len().div_ceil(8)].to_vec()
    } else {
        bits.sliced().as_slice()[..bits.len().div_ceil(8)].to_vec()
    }
}

/// Offsets rebased to start at 0, and the bytes they cover.
fn var_data(offsets: &[i32], data: &[u8]) -> VarData {
    let first = offsets.first().copied().unwrap_or(0);
    let last = offsets.last().copied().unwrap_or(0);
    VarData {
        offsets: if first == 0 { offsets.to_vec() } else { offsets.iter().map(|o| o - first).collect() },
        data: data[first as usize..last as usize].to_vec(),
    }
}

/// An array of a column returned by a guest, checked against the declared type.
///
/// # Errors
/// A column that does not match its type or length, or invalid offsets or UTF-8.
pub fn from_column(column: Column, expected: &DataType, rows: usize) -> Result<ArrayRef, String> {
    if column.len as usize != rows {
        return Err(format!("returned {} rows for {rows}", column.len));
    }
    let nulls = match column.validity {
        None => None,
        Some(bits) if bits.len() * 8 >= rows => {
            Some(NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows)))
        }
        Some(_) => return Err("validity bitmap too short".into()),
    };
    let check = |len: usize| if len == rows { Ok(()) } else { Err(format!("{len} values for {rows} rows")) };
    let array: ArrayRef = match (column.values, expected) {
        (ColumnValues::Boolean(bits), DataType::Boolean) => {
            if bits.len() * 8 < rows {
                return Err(format!("a boolean bitmap of {} bytes for {rows} rows", bits.len()));
            }
            Arc::new(BooleanArray::new(BooleanBuffer::new(Buffer::from_vec(bits), 0, rows), nulls))
        }
        (ColumnValues::Int32(v), DataType::Int32) => {
            check(v.len())?;
            Arc::new(Int32Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnValues::Int64(v), DataType::Int64) => {
            check(v.len())?;
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnValues::Uint64(v), DataType::Uint64) => {
            check(v.len())?;
            Arc::new(UInt64Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnValues::Float32(v), DataType::Float32) => {
            check(v.len())?;
            Arc::new(Float32Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnValues::Float64(v), DataType::Float64) => {
            check(v.len())?;
            Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnValues::Date32(v), DataType::Date32) => {
            check(v.len())?;
            Arc::new(Date32Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnValues::Timestamp(v), DataType::Timestamp(_)) => {
            check(v.len())?;
            let array = PrimitiveArray::<adt::Int64Type>::new(ScalarBuffer::from(v), nulls);
            arrow::compute::cast(&array, &to_arrow_type(expected)).map_err(|err| err.to_string())?
        }
        (ColumnValues::Decimal128(bytes), DataType::Decimal128(decimal)) => {
            check(bytes.len() / 16)?;
            let values: Vec<i128> =
                bytes.chunks_exact(16).map(|chunk| i128::from_le_bytes(chunk.try_into().expect("16 bytes"))).collect();
            // A value with more digits than the declared precision would be written wrong
            // (i128::MAX in a decimal(5,2) once came out as 170.14).
            let valid = |row: usize| nulls.as_ref().is_none_or(|nulls| nulls.is_valid(row));
            if let Some(row) = (0..rows).find(|&row| {
                valid(row) && !arrow::datatypes::is_validate_decimal_precision(values[row], decimal.precision)
            }) {
                return Err(format!(
                    "returned {} for row {row}, which has more digits than the declared decimal({}, {})",
                    values[row], decimal.precision, decimal.scale
                ));
            }
            Arc::new(
                Decimal128Array::new(ScalarBuffer::from(values), nulls)
                    .with_precision_and_scale(decimal.precision, decimal.scale)
                    .map_err(|err| err.to_string())?,
            )
        }
        (ColumnValues::Utf8(data), DataType::Utf8) => {
            check(data.offsets.len().saturating_sub(1))?;
            let offsets = offsets(data.offsets)?;
            Arc::new(StringArray::try_new(offsets, Buffer::from_vec(data.data), nulls).map_err(|err| err.to_string())?)
        }
        (ColumnValues::Binary(data), DataType::Binary) => {
            check(data.offsets.len().saturating_sub(1))?;
            let offsets = offsets(data.offsets)?;
            Arc::new(BinaryArray::try_new(offsets, Buffer::from_vec(data.data), nulls).map_err(|err| err.to_string())?)
        }
        (_, expected) => {
            return Err(format!("returned a column of another type than the declared {}", type_name(expected)));
        }
    };
    Ok(array)
}

fn offsets(offsets: Vec<i32>) -> Result<OffsetBuffer<i32>, String> {
    if offsets.first() != Some(&0) || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err("string offsets must start at 0 and never decrease".into());
    }
    Ok(OffsetBuffer::new(ScalarBuffer::from(offsets)))
}

/// The Arrow field of a WIT field.
pub fn to_arrow_field(field: &Field) -> arrow::datatypes::Field {
    arrow::datatypes::Field::new(&field.name, to_arrow_type(&field.data_type), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keep_values_and_nulls_even_for_slices() {
        let strings: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc"), Some("dd")]));
        let sliced = strings.slice(1, 3);
        let column = to_column(&sliced).unwrap();
        let back = from_column(column, &DataType::Utf8, 3).unwrap();
        assert_eq!(back.as_ref(), sliced.as_ref());
        let ints: ArrayRef =
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4), None, Some(6), Some(7), Some(8), None]));
        let sliced = ints.slice(3, 6);
        let back = from_column(to_column(&sliced).unwrap(), &DataType::Int64, 6).unwrap();
        assert_eq!(back.as_ref(), sliced.as_ref());
    }

    #[test]
    fn bad_guest_columns_are_refused() {
        let bad_utf8 = Column {
            len: 1,
            validity: None,
            values: ColumnValues::Utf8(VarData { offsets: vec![0, 2], data: vec![0xff, 0xfe] }),
        };
        assert!(from_column(bad_utf8, &DataType::Utf8, 1).is_err());
        let short = Column { len: 2, validity: None, values: ColumnValues::Int64(vec![1]) };
        assert!(from_column(short, &DataType::Int64, 2).is_err());
        let wrong_type = Column { len: 1, validity: None, values: ColumnValues::Int64(vec![1]) };
        assert!(from_column(wrong_type, &DataType::Float64, 1).is_err());
        let out_of_bounds = Column {
            len: 1,
            validity: None,
            values: ColumnValues::Utf8(VarData { offsets: vec![0, 99], data: vec![b'a'] }),
        };
        assert!(from_column(out_of_bounds, &DataType::Utf8, 1).is_err());
        let short_bitmap = Column { len: 9, validity: None, values: ColumnValues::Boolean(vec![0xff]) };
        let err = from_column(short_bitmap, &DataType::Boolean, 9).unwrap_err();
        assert!(err.contains("bitmap of 1 bytes for 9 rows"), "{err}");
    }

    /// Issue 20 (10): `i128::MAX` in a `decimal(5,2)` column was accepted and written as 170.14.
    #[test]
    fn decimals_are_checked_against_the_declared_precision() {
        let decimal = DataType::Decimal128(DecimalType { precision: 5, scale: 2 });
        let column = |values: &[i128], validity: Option<Vec<u8>>| Column {
            len: values.len() as u32,
            validity,
            values: ColumnValues::Decimal128(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        };
        let err = from_column(column(&[12_345, i128::MAX], None), &decimal, 2).unwrap_err();
        assert!(err.contains("row 1") && err.contains("decimal(5, 2)"), "{err}");
        assert!(from_column(column(&[99_999, -99_999], None), &decimal, 2).is_ok());
        // What sits under a NULL is not a value.
        assert!(from_column(column(&[1, i128::MAX], Some(vec![0b01])), &decimal, 2).is_ok());
    }
}
