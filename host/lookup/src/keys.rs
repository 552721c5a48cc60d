//! Key and row encodings, both Arrow's row format (`arrow::row`): a key of any number of
//! columns of any type becomes one byte string that hashes and compares as a whole, and a cached
//! dimension row becomes one allocation that decodes back into columns for a whole batch at once.

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};

/// Encodes keys: stream key columns are cast to the table's key types first, so an `int32`
/// stream column finds an `int64` key.
#[derive(Debug)]
pub struct KeyCodec {
    converter: RowConverter,
    types: Vec<DataType>,
}

/// Encoded keys of a batch, and which rows have a NULL in some key column (those never match).
pub struct EncodedKeys {
    /// One key per row.
    pub rows: Rows,
    /// Rows whose key is complete (`None`: all of them).
    pub valid: Option<NullBuffer>,
}

impl KeyCodec {
    /// A codec for keys of these types.
    ///
    /// # Errors
    /// A type the row format cannot encode.
    pub fn new(types: Vec<DataType>) -> Result<Self, ArrowError> {
        let converter = RowConverter::new(types.iter().cloned().map(SortField::new).collect())?;
        Ok(Self { converter, types })
    }

    /// The key types.
    pub fn types(&self) -> &[DataType] {
        &self.types
    }

    /// Encodes key columns (cast to the key types; a value that does not fit is an error).
    ///
    /// # Errors
    /// A cast that fails (an out-of-range integer).
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<EncodedKeys, ArrowError> {
        let strict = CastOptions { safe: false, ..CastOptions::default() };
        let cast: Vec<ArrayRef> = columns
            .iter()
            .zip(&self.types)
            .map(|(column, to)| {
                if column.data_type() == to {
                    Ok(std::sync::Arc::clone(column))
                } else {
                    arrow::compute::cast_with_options(column, to, &strict)
                }
            })
            .collect::<Result<_, _>>()?;
        let valid = cast.iter().fold(None, |acc: Option<NullBuffer>, column| {
            NullBuffer::union(acc.as_ref(), column.logical_nulls().as_ref())
        });
        Ok(EncodedKeys { rows: self.converter.convert_columns(&cast)?, valid })
    }

    /// Decodes encoded keys back into key columns (for the query that fetches them).
    ///
    /// # Errors
    /// Bytes that were not made by this codec.
    pub fn decode<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>, ArrowError> {
        let parser = self.converter.parser();
        self.converter.convert_rows(keys.into_iter().map(|bytes| parser.parse(bytes)))
    }
}

/// Encodes whole dimension rows, for the partial cache.
#[derive(Debug)]
pub struct RowCodec {
    converter: RowConverter,
    schema: SchemaRef,
}

impl RowCodec {
    /// A codec for rows of `schema`.
    ///
    /// # Errors
    /// A type the row format cannot encode.
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        let fields = schema.fields().iter().map(|field| SortField::new(field.data_type().clone())).collect();
        Ok(Self { converter: RowConverter::new(fields)?, schema })
    }

    /// Encodes every row of a batch of the table's schema.
    ///
    /// # Errors
    /// Columns that do not match the schema.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Rows, ArrowError> {
        self.converter.convert_columns(batch.columns())
    }

    /// Decodes encoded rows into a batch of the table's schema.
    ///
    /// # Errors
    /// Bytes that were not made by this codec.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<RecordBatch, ArrowError> {
        let parser = self.converter.parser();
        let columns = self.converter.convert_rows(rows.into_iter().map(|bytes| parser.parse(bytes)))?;
        RecordBatch::try_new(std::sync::Arc::clone(&self.schema), columns)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn keys_of_another_integer_width_match_and_nulls_are_marked() {
        let codec = KeyCodec::new(vec![DataType::Int64, DataType::Utf8]).unwrap();
        let stream: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(1), None, Some(1)])),
            Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a")])),
        ];
        let table: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![1])), Arc::new(StringArray::from(vec!["a"]))];
        let keys = codec.encode(&stream).unwrap();
        let table_keys = codec.encode(&table).unwrap();
        assert_eq!(keys.rows.row(0).data(), table_keys.rows.row(0).data());
        assert_eq!(keys.rows.row(2).data(), table_keys.rows.row(0).data());
        let valid = keys.valid.unwrap();
        assert!(valid.is_valid(0) && !valid.is_valid(1) && valid.is_valid(2));
        let decoded = codec.decode([keys.rows.row(0).data()]).unwrap();
        assert_eq!(decoded[0].as_ref(), &Int64Array::from(vec![1]) as &dyn Array);
    }
}
