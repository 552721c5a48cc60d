//! Typed columns from text, and text from key columns.
//!
//! Dimension-table connectors read every value as text (PostgreSQL `::text`, MySQL
//! `CAST(... AS CHAR)`, Redis hash fields are strings anyway) and Arrow's cast kernels turn
//! whole columns into the declared types, strictly: a value that does not parse is an error
//! naming the column, never a silent NULL. Keys go the other way, as text parameters the
//! database casts to the column's type, so one code path serves every key type.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::compute::CastOptions;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::LookupError;

/// Rows per typed batch when a whole table is read.
const SCAN_BATCH: usize = 65_536;

/// Collects rows of text values, then types them.
#[derive(Debug)]
pub struct TextRows {
    schema: SchemaRef,
    columns: Vec<StringBuilder>,
    typed: Vec<RecordBatch>,
}

impl TextRows {
    /// Empty columns for `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema.fields().iter().map(|_| StringBuilder::new()).collect();
        Self { schema, columns, typed: Vec::new() }
    }

    /// Types what was collected once it reaches a batch's worth, so reading a whole table holds
    /// the text of one batch at a time. Call after each complete row.
    ///
    /// # Errors
    /// As [`TextRows::finish`].
    pub fn cut_if_full(&mut self) -> Result<(), LookupError> {
        if self.collected() >= SCAN_BATCH {
            let batch = self.type_collected()?;
            self.typed.push(batch);
        }
        Ok(())
    }

    /// Appends one value to column `index`.
    pub fn push(&mut self, index: usize, value: Option<&str>) {
        self.columns[index].append_option(value);
    }

    /// Rows collected since the last cut (callers push every column of every row).
    fn collected(&self) -> usize {
        self.columns.first().map_or(0, arrow::array::ArrayBuilder::len)
    }

    /// Every row collected, typed.
    ///
    /// # Errors
    /// [`LookupError::Invalid`] naming the column whose text does not parse as its type.
    pub fn finish(mut self) -> Result<Vec<RecordBatch>, LookupError> {
        let last = self.type_collected()?;
        self.typed.push(last);
        Ok(self.typed)
    }

    fn type_collected(&mut self) -> Result<RecordBatch, LookupError> {
        let strict = CastOptions { safe: false, ..CastOptions::default() };
        let columns = self
            .columns
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(builder, field)| {
                let text: ArrayRef = Arc::new(builder.finish());
                if field.data_type() == &DataType::Utf8 {
                    return Ok(text);
                }
                arrow::compute::cast_with_options(&text, field.data_type(), &strict).map_err(|err| {
                    LookupError::Invalid(format!("column `{}` is not {}: {err}", field.name(), field.data_type()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(|err| LookupError::Invalid(err.to_string()))
    }
}

/// Every value of a key column as text, in the form databases parse (`42`, `abc`, `true`,
/// `2024-05-01T10:00:00`).
///
/// # Errors
/// A type Arrow cannot format.
pub fn key_text(column: &dyn Array) -> Result<Vec<String>, LookupError> {
    if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
        return Ok(strings.iter().map(|value| value.unwrap_or_default().to_owned()).collect());
    }
    let formatter = ArrayFormatter::try_new(column, &FormatOptions::default())
        .map_err(|err| LookupError::Invalid(format!("cannot format a key of type {}: {err}", column.data_type())))?;
    Ok((0..column.len()).map(|row| formatter.value(row).to_string()).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn text_becomes_the_declared_types_strictly() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let mut rows = TextRows::new(Arc::clone(&schema));
        for (id, ok) in [(Some("1"), Some("t")), (None, Some("false"))] {
            rows.push(0, id);
            rows.push(1, ok);
        }
        let batch = rows.finish().unwrap().remove(0);
        assert_eq!(batch.column(0).as_ref(), &Int64Array::from(vec![Some(1), None]) as &dyn Array);
        let mut bad = TextRows::new(schema);
        bad.push(0, Some("x1"));
        bad.push(1, Some("t"));
        let err = bad.finish().unwrap_err().to_string();
        assert!(err.contains("column `id`"), "{err}");
        assert_eq!(key_text(&Int64Array::from(vec![7, -3])).unwrap(), ["7", "-3"]);
    }
}
