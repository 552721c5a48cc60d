//! What the PostgreSQL and MySQL sinks share: the sink options, reading Arrow cells as SQL values,
//! keeping the last row per key within a batch (an upsert batch must not touch a row twice), and
//! quoting identifiers.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::take;
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;

/// How rows reach the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Insert every row (PostgreSQL: binary COPY).
    #[default]
    Append,
    /// Insert, or update the row with the same key (`ON CONFLICT` / `ON DUPLICATE KEY`).
    Upsert,
}

/// Options of a SQL table sink (flattened into the connector's config).
#[derive(Debug, Deserialize)]
pub struct TableOptions {
    /// Target table (`name` or `schema.name`).
    pub table: Spanned<String>,
    /// `append` (default) or `upsert`.
    #[serde(default)]
    pub mode: WriteMode,
    /// Key columns for `upsert` (and the primary key of a created table).
    #[serde(default)]
    pub key: Vec<Spanned<String>>,
    /// Create the table from the input schema if it does not exist.
    #[serde(default)]
    pub create_table: bool,
}

/// A checked [`TableOptions`]: key column indices.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// Target table as written.
    pub table: String,
    /// Append or upsert.
    pub mode: WriteMode,
    /// Indices of the key columns in the input.
    pub key: Vec<usize>,
}

impl TablePlan {
    /// The columns whose rows must reach the table in order per value: an upsert's key (the
    /// last row written per key wins); none for appends.
    pub fn ordered_by(&self) -> Option<Vec<usize>> {
        (self.mode == WriteMode::Upsert).then(|| self.key.clone())
    }
}

impl TableOptions {
    /// Checks the key against the input schema.
    ///
    /// # Errors
    /// `upsert` without a key, or a key column not in the input.
    pub fn plan(&self, input: &SchemaRef) -> Result<TablePlan, SpecIssue> {
        if self.mode == WriteMode::Upsert && self.key.is_empty() {
            return Err(SpecIssue::at(&self.table.referenced, "`mode: upsert` needs `key: [column, ...]`"));
        }
        let key = self
            .key
            .iter()
            .map(|column| {
                input.index_of(&column.value).map_err(|_| {
                    SpecIssue::at(&column.referenced, format!("key column `{}` is not in the input", column.value))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.table.value.trim().is_empty() {
            return Err(SpecIssue::at(&self.table.referenced, "`table` is empty"));
        }
        Ok(TablePlan { table: self.table.value.clone(), mode: self.mode, key })
    }
}

/// One Arrow cell as a SQL value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// NULL.
    Null,
    /// Any integer type.
    Int(i64),
    /// An unsigned value above `i64::MAX`.
    BigUint(u64),
    /// Any float type.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
    /// Microseconds since the Unix epoch (timestamps of any unit; nanoseconds are truncated).
    TimestampMicros(i64),
    /// Days since the Unix epoch.
    Date(i32),
}

/// Reads cell `row` of `array`.
///
/// # Errors
/// A column type with no SQL mapping (lists, structs, decimals for now).
pub fn cell(array: &ArrayRef, row: usize) -> Result<Cell<'_>, ArrowError> {
    if array.is_null(row) {
        return Ok(Cell::Null);
    }
    Ok(match array.data_type() {
        DataType::Int8 => Cell::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Cell::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Cell::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Cell::Int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Cell::Int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Cell::Int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => {
            let value = array.as_primitive::<UInt64Type>().value(row);
            i64::try_from(value).map_or(Cell::BigUint(value), Cell::Int)
        }
        DataType::Float32 => Cell::Float(array.as_primitive::<Float32Type>().value(row).into()),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Cell::Text(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Cell::Text(array.as_string_view().value(row)),
        DataType::Binary => Cell::Bytes(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => Cell::Bytes(array.as_binary::<i64>().value(row)),
        DataType::Date32 => Cell::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(unit, _) => Cell::TimestampMicros(match unit {
            TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row).saturating_mul(1_000_000),
            TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row).saturating_mul(1_000),
            TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
            TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
        }),
        other => {
            return Err(ArrowError::NotYetImplemented(format!("writing {other} columns to a SQL table")));
        }
    })
}

/// Whether [`cell`] can read this type.
pub fn is_supported(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Boolean
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Date32
            | DataType::Timestamp(_, _)
    )
}

/// Checks every input column can be written.
///
/// # Errors
/// The first column whose type has no SQL mapping.
pub fn check_columns(input: &SchemaRef, at: &Spanned<String>) -> Result<(), SpecIssue> {
    for field in input.fields() {
        if !is_supported(field.data_type()) {
            return Err(SpecIssue::at(
                &at.referenced,
                format!("column `{}` has type {}, which this sink cannot write yet", field.name(), field.data_type()),
            ));
        }
    }
    Ok(())
}

/// Keeps only the last row for each key (in input order), so one upsert statement never
/// touches a row twice. Returns the batch unchanged when keys are unique.
///
/// # Errors
/// Arrow failures converting key columns.
pub fn last_row_per_key(batch: &RecordBatch, key: &[usize]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = key.iter().map(|&i| batch.column(i).clone()).collect();
    let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&columns)?;
    let mut last = std::collections::HashMap::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        last.insert(rows.row(row), row);
    }
    if last.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let mut keep: Vec<u32> = last.into_values().map(|row| row as u32).collect();
    keep.sort_unstable();
    let indices = arrow::array::UInt32Array::from(keep);
    let columns = batch.columns().iter().map(|c| take(c.as_ref(), &indices, None)).collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// Quotes a possibly schema-qualified identifier: `a.b` → `"a"."b"` (PostgreSQL) or `` `a`.`b` ``
/// (MySQL).
pub fn quote_identifier(name: &str, quote: char) -> String {
    name.split('.')
        .map(|part| {
            let doubled = part.replace(quote, &format!("{quote}{quote}"));
            format!("{quote}{doubled}{quote}")
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn the_last_row_per_key_wins_and_order_is_kept() {
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(vec![1, 2, 1, 3])) as _),
            ("v", Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as _),
        ])
        .unwrap();
        let deduped = last_row_per_key(&batch, &[0]).unwrap();
        let values: Vec<&str> = deduped.column(1).as_string::<i32>().iter().flatten().collect();
        assert_eq!(values, ["b", "c", "d"]);
        assert_eq!(quote_identifier("public.my\"t", '"'), "\"public\".\"my\"\"t\"");
    }
}
