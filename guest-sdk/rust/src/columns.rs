//! Reading argument columns and building result columns in Arrow's layout, and the traits that
//! map Rust types to weir data types for the UDF macros.

use crate::types::{Column, ColumnValues, DataType, RowError, VarData};

/// Read access to one column of `rows` rows, checked for internal consistency.
#[derive(Debug, Clone, Copy)]
pub struct ColumnView<'a> {
    column: &'a Column,
    rows: usize,
}

impl<'a> ColumnView<'a> {
    /// Checks that the column has `rows` rows, a validity bitmap that covers them and values
    /// (and offsets) that match.
    ///
    /// # Errors
    /// A description of the inconsistency.
    pub fn new(column: &'a Column, rows: usize) -> Result<Self, String> {
        if column.len as usize != rows {
            return Err(format!("column has {} rows, the batch {rows}", column.len));
        }
        if let Some(validity) = &column.validity
            && validity.len() * 8 < rows
        {
            return Err("validity bitmap is too short".into());
        }
        let values = match &column.values {
            ColumnValues::Boolean(bits) => bits.len() * 8 >= rows,
            ColumnValues::Int32(v) | ColumnValues::Date32(v) => v.len() == rows,
            ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => v.len() == rows,
            ColumnValues::Uint64(v) => v.len() == rows,
            ColumnValues::Float32(v) => v.len() == rows,
            ColumnValues::Float64(v) => v.len() == rows,
            ColumnValues::Decimal128(v) => v.len() == rows * 16,
            ColumnValues::Utf8(data) | ColumnValues::Binary(data) => {
                data.offsets.len() == rows + 1
                    && data.offsets.windows(2).all(|w| w[0] <= w[1])
                    && data.offsets.first().is_some_and(|&first| first >= 0)
                    && data.offsets.last().is_some_and(|&last| last as usize <= data.data.len())
            }
        };
        if !values {
            return Err("column values do not match its length".into());
        }
        Ok(Self { column, rows })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether row `row` holds a value (is not NULL).
    #[inline]
    pub fn is_valid(&self, row: usize) -> bool {
        is_valid(self.validity(), row)
    }

    /// The validity bitmap (`None`: no NULLs).
    pub fn validity(&self) -> Option<&'a [u8]> {
        self.column.validity.as_deref()
    }

    /// The values in Arrow's layout.
    pub fn values(&self) -> &'a ColumnValues {
        &self.column.values
    }

    /// The string or binary value of a row (ignores validity).
    #[inline]
    fn bytes(data: &'a VarData, row: usize) -> &'a [u8] {
        &data.data[data.offsets[row] as usize..data.offsets[row + 1] as usize]
    }
}

/// A Rust type a UDF can take as an argument. The generated loop builds one [`Arg::Reader`] per
/// argument column (checking its type once) and then reads rows from it without further checks.
pub trait Arg<'a>: Sized {
    /// The weir data type of the argument column.
    const DATA_TYPE: DataType;
    /// Typed access to the column's buffers.
    type Reader;

    /// Checks that a column has this type and returns a reader over it.
    ///
    /// # Errors
    /// The mismatch, in words.
    fn reader(view: &ColumnView<'a>) -> Result<Self::Reader, String>;

    /// The value of a row: `None` when the row is NULL and the type cannot hold NULL.
    fn read(reader: &Self::Reader, row: usize) -> Option<Self>;
}

/// Name of a data type, for messages.
pub fn data_type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Boolean => "boolean",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::Uint64 => "uint64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        DataType::Utf8 => "utf8",
        DataType::Binary => "binary",
        DataType::Timestamp(_) => "timestamp",
        DataType::Date32 => "date32",
        DataType::Decimal128(_) => "decimal128",
    }
}

#[inline]
fn is_valid(validity: Option<&[u8]>, row: usize) -> bool {
    validity.is_none_or(|bits| bits[row / 8] & (1 << (row % 8)) != 0)
}

/// Values plus validity of one argument column.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a, T: ?Sized> {
    values: &'a T,
    validity: Option<&'a [u8]>,
}

fn mismatch(data_type: &DataType) -> String {
    format!("expected a {} column", data_type_name(data_type))
}

macro_rules! primitive_arg {
    ($ty:ty, $data_type:expr, $variant:ident) => {
        impl<'a> Arg<'a> for $ty {
            const DATA_TYPE: DataType = $data_type;
            type Reader = Values<'a, [$ty]>;

            fn reader(view: &ColumnView<'a>) -> Result<Self::Reader, String> {
                match view.values() {
                    ColumnValues::$variant(values) => {
                        Ok(Values { values: values.as_slice(), validity: view.validity() })
                    }
                    _ => Err(mismatch(&<Self as Arg<'a>>::DATA_TYPE)),
                }
            }

            #[inline]
            fn read(reader: &Self::Reader, row: usize) -> Option<Self> {
                is_valid(reader.validity, row).then(|| reader.values[row])
            }
        }
    };
}

primitive_arg!(i32, DataType::Int32, Int32);
primitive_arg!(i64, DataType::Int64, Int64);
primitive_arg!(u64, DataType::Uint64, Uint64);
primitive_arg!(f32, DataType::Float32, Float32);
primitive_arg!(f64, DataType::Float64, Float64);

impl<'a> Arg<'a> for bool {
    const DATA_TYPE: DataType = DataType::Boolean;
    type Reader = Values<'a, [u8]>;

    fn reader(view: &ColumnView<'a>) -> Result<Self::Reader, String> {
        match view.values() {
            ColumnValues::Boolean(bits) => Ok(Values { values: bits.as_slice(), validity: view.validity() }),
            _ => Err(mismatch(&<Self as Arg<'a>>::DATA_TYPE)),
        }
    }

    #[inline]
    fn read(reader: &Self::Reader, row: usize) -> Option<Self> {
        is_valid(reader.validity, row).then(|| reader.values[row / 8] & (1 << (row % 8)) != 0)
    }
}

impl<'a> Arg<'a> for &'a str {
    const DATA_TYPE: DataType = DataType::Utf8;
    type Reader = Values<'a, VarData>;

    fn reader(view: &ColumnView<'a>) -> Result<Self::Reader, String> {
        match view.values() {
            ColumnValues::Utf8(data) => {
                // Valid UTF-8 with every value starting and ending on a character boundary:
                // then each value is valid UTF-8 and `read` can skip the check per row.
                let text = std::str::from_utf8(&data.data).map_err(|err| format!("invalid UTF-8: {err}"))?;
                if !data.offsets.iter().all(|&offset| text.is_char_boundary(offset as usize)) {
                    return Err("a string offset splits a character".into());
                }
                Ok(Values { values: data, validity: view.validity() })
            }
            _ => Err(mismatch(&Self::DATA_TYPE)),
        }
    }

    #[inline]
    fn read(reader: &Self::Reader, row: usize) -> Option<Self> {
        // SAFETY: `reader` verified that the buffer is UTF-8 and that every offset is a
        // character boundary.
        is_valid(reader.validity, row)
            .then(|| unsafe { std::str::from_utf8_unchecked(ColumnView::bytes(reader.values, row)) })
    }
}

impl<'a> Arg<'a> for &'a [u8] {
    const DATA_TYPE: DataType = DataType::Binary;
    type Reader = Values<'a, VarData>;

    fn reader(view: &ColumnView<'a>) -> Result<Self::Reader, String> {
        match view.values() {
            ColumnValues::Binary(data) => Ok(Values { values: data, validity: view.validity() }),
            _ => Err(mismatch(&Self::DATA_TYPE)),
        }
    }

    #[inline]
    fn read(reader: &Self::Reader, row: usize) -> Option<Self> {
        is_valid(reader.validity, row).then(|| ColumnView::bytes(reader.values, row))
    }
}

impl<'a, T: Arg<'a>> Arg<'a> for Option<T> {
    const DATA_TYPE: DataType = T::DATA_TYPE;
    type Reader = T::Reader;

    fn reader(view: &ColumnView<'a>) -> Result<Self::Reader, String> {
        T::reader(view)
    }

    #[inline]
    fn read(reader: &Self::Reader, row: usize) -> Option<Self> {
        Some(T::read(reader, row))
    }
}

/// A Rust type a UDF can produce as a column value.
pub trait OutputValue: Sized {
    /// The weir data type of the result column.
    const DATA_TYPE: DataType;
    /// Where values accumulate.
    type Buffer;
    /// An empty buffer for about `capacity` rows.
    fn buffer(capacity: usize) -> Self::Buffer;
    /// Appends a value (`None`: a placeholder for a NULL row).
    fn push(buffer: &mut Self::Buffer, value: Option<Self>);
    /// The column values.
    fn finish(buffer: Self::Buffer) -> ColumnValues;
}

macro_rules! primitive_output {
    ($ty:ty, $data_type:expr, $variant:ident) => {
        impl OutputValue for $ty {
            const DATA_TYPE: DataType = $data_type;
            type Buffer = Vec<$ty>;

            fn buffer(capacity: usize) -> Self::Buffer {
                Vec::with_capacity(capacity)
            }

            #[inline]
            fn push(buffer: &mut Self::Buffer, value: Option<Self>) {
                buffer.push(value.unwrap_or_default());
            }

            fn finish(buffer: Self::Buffer) -> ColumnValues {
                ColumnValues::$variant(buffer)
            }
        }
    };
}

primitive_output!(i32, DataType::Int32, Int32);
primitive_output!(i64, DataType::Int64, Int64);
primitive_output!(u64, DataType::Uint64, Uint64);
primitive_output!(f32, DataType::Float32, Float32);
primitive_output!(f64, DataType::Float64, Float64);

impl OutputValue for bool {
    const DATA_TYPE: DataType = DataType::Boolean;
    type Buffer = (Vec<u8>, usize);

    fn buffer(capacity: usize) -> Self::Buffer {
        (Vec::with_capacity(capacity.div_ceil(8)), 0)
    }

    #[inline]
    fn push((bits, len): &mut Self::Buffer, value: Option<Self>) {
        if *len % 8 == 0 {
            bits.push(0);
        }
        if value == Some(true) {
            bits[*len / 8] |= 1 << (*len % 8);
        }
        *len += 1;
    }

    fn finish((bits, _): Self::Buffer) -> ColumnValues {
        ColumnValues::Boolean(bits)
    }
}

/// Offsets and bytes of a string or binary column under construction.
pub type VarBuffer = (Vec<i32>, Vec<u8>);

fn var_buffer(capacity: usize) -> VarBuffer {
    let mut offsets: Vec<i32> = Vec::with_capacity(capacity + 1);
    offsets.push(0);
    (offsets, Vec::with_capacity(capacity * 8))
}

macro_rules! var_output {
    ($ty:ty, $data_type:expr, $variant:ident) => {
        impl OutputValue for $ty {
            const DATA_TYPE: DataType = $data_type;
            type Buffer = VarBuffer;

            fn buffer(capacity: usize) -> Self::Buffer {
                var_buffer(capacity)
            }

            #[inline]
            fn push((offsets, data): &mut Self::Buffer, value: Option<Self>) {
                if let Some(value) = value {
                    data.extend_from_slice(AsRef::<[u8]>::as_ref(&value));
                }
                offsets.push(data.len() as i32);
            }

            fn finish((offsets, data): Self::Buffer) -> ColumnValues {
                ColumnValues::$variant(VarData { offsets, data })
            }
        }
    };
}

var_output!(String, DataType::Utf8, Utf8);
var_output!(Vec<u8>, DataType::Binary, Binary);

/// Builds one result column.
pub struct ColumnBuilder<T: OutputValue> {
    buffer: T::Buffer,
    validity: Vec<u8>,
    len: usize,
    nulls: usize,
}

impl<T: OutputValue> ColumnBuilder<T> {
    /// A builder for about `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { buffer: T::buffer(capacity), validity: Vec::with_capacity(capacity.div_ceil(8)), len: 0, nulls: 0 }
    }

    /// Appends a value or a NULL.
    #[inline]
    pub fn push(&mut self, value: Option<T>) {
        if self.len % 8 == 0 {
            self.validity.push(0);
        }
        if value.is_some() {
            self.validity[self.len / 8] |= 1 << (self.len % 8);
        } else {
            self.nulls += 1;
        }
        T::push(&mut self.buffer, value);
        self.len += 1;
    }

    /// The finished column (no bitmap when there is no NULL).
    pub fn finish(self) -> Column {
        Column {
            len: self.len as u32,
            validity: (self.nulls > 0).then_some(self.validity),
            values: T::finish(self.buffer),
        }
    }
}

/// A UDF's return type: a value, an optional value, or a per-row result.
pub trait Ret {
    /// The value type of the result column.
    type Value: OutputValue;
    /// The weir data type of the result column.
    const DATA_TYPE: DataType = <Self::Value as OutputValue>::DATA_TYPE;
    /// Appends this row's result; errors become NULL plus an entry in `errors`.
    fn append_to(self, out: &mut ColumnBuilder<Self::Value>, errors: &mut Vec<RowError>, row: usize);
}

macro_rules! returns {
    ($($ty:ty),*) => {$(
        impl Ret for $ty {
            type Value = $ty;
            #[inline]
            fn append_to(self, out: &mut ColumnBuilder<$ty>, _errors: &mut Vec<RowError>, _row: usize) {
                out.push(Some(self));
            }
        }

        impl Ret for Option<$ty> {
            type Value = $ty;
            #[inline]
            fn append_to(self, out: &mut ColumnBuilder<$ty>, _errors: &mut Vec<RowError>, _row: usize) {
                out.push(self);
            }
        }

        impl<E: std::fmt::Display> Ret for Result<$ty, E> {
            type Value = $ty;
            #[inline]
            fn append_to(self, out: &mut ColumnBuilder<$ty>, errors: &mut Vec<RowError>, row: usize) {
                match self {
                    Ok(value) => out.push(Some(value)),
                    Err(err) => {
                        out.push(None);
                        errors.push(RowError { row: row as u32, message: err.to_string() });
                    }
                }
            }
        }

        impl<E: std::fmt::Display> Ret for Result<Option<$ty>, E> {
            type Value = $ty;
            #[inline]
            fn append_to(self, out: &mut ColumnBuilder<$ty>, errors: &mut Vec<RowError>, row: usize) {
                match self {
                    Ok(value) => out.push(value),
                    Err(err) => {
                        out.push(None);
                        errors.push(RowError { row: row as u32, message: err.to_string() });
                    }
                }
            }
        }
    )*};
}

returns!(bool, i32, i64, u64, f32, f64, String, Vec<u8>);

/// A table UDF's output row: a tuple of values, one builder per column.
pub trait RowTuple {
    /// One [`ColumnBuilder`] per column.
    type Builders;
    /// Empty builders.
    fn builders(capacity: usize) -> Self::Builders;
    /// Appends a row.
    fn push(self, builders: &mut Self::Builders);
    /// The finished columns.
    fn finish(builders: Self::Builders) -> Vec<Column>;
}

macro_rules! row_tuple {
    ($($name:ident $index:tt),+) => {
        impl<$($name: OutputValue),+> RowTuple for ($($name,)+) {
            type Builders = ($(ColumnBuilder<$name>,)+);

            fn builders(capacity: usize) -> Self::Builders {
                ($(ColumnBuilder::<$name>::with_capacity(capacity),)+)
            }

            #[inline]
            fn push(self, builders: &mut Self::Builders) {
                $(builders.$index.push(Some(self.$index));)+
            }

            fn finish(builders: Self::Builders) -> Vec<Column> {
                vec![$(builders.$index.finish()),+]
            }
        }
    };
}

row_tuple!(A 0);
row_tuple!(A 0, B 1);
row_tuple!(A 0, B 1, C 2);
row_tuple!(A 0, B 1, C 2, D 3);
row_tuple!(A 0, B 1, C 2, D 3, E 4);
row_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
