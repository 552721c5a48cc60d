//! Checks a record passes before arrow's decoders see it, so that one hostile record is a bad
//! record and never a crash or a silent loss:
//! - JSON nested deeper than [`MAX_JSON_DEPTH`]: arrow-json formats the value of a type
//!   mismatch recursively, and about 50,000 levels in a declared column overflowed the stack
//!   (whatever `on_error` said).
//! - A CSV field that opens a quote its line does not close: the CSV reader would take the
//!   following lines as part of the field and the good rows after it vanished.
//! - JSON numbers a column cannot hold exactly ([`NumberGuard`]): arrow-json turned `2.9` into
//!   `2` and `-9223372036854775809` into the smallest int64, and `1e400` into infinity (written
//!   out as NULL), all silently.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type, SchemaRef};
use arrow::error::ArrowError;

/// Deepest nesting of objects and arrays a JSON record may have (serde_json's default limit).
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether a JSON text nests objects and arrays deeper than `limit`. With `per_line`, every
/// line is a record of its own (JSON lines); otherwise the whole text is one record.
///
/// Only a record that opens more than `limit` objects and arrays can nest that deep, so the
/// exact scan runs only on such records; counting the openers is a vectorized search, which keeps
/// the check off the JSON ingest path's profile.
pub fn json_too_deep(bytes: &[u8], limit: usize, per_line: bool) -> bool {
    if !per_line {
        return memchr::memchr2_iter(b'{', b'[', bytes).nth(limit).is_some() && nests_deeper(bytes, limit);
    }
    let (mut line_start, mut openers, mut checked) = (0, 0, false);
    for at in memchr::memchr3_iter(b'{', b'[', b'\n', bytes) {
        if bytes[at] == b'\n' {
            (line_start, openers, checked) = (at + 1, 0, false);
            continue;
        }
        openers += 1;
        if openers > limit && !checked {
            checked = true;
            let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |offset| at + offset);
            if nests_deeper(&bytes[line_start..end], limit) {
                return true;
            }
        }
    }
    false
}

/// The exact depth scan of one record: brackets outside strings.
fn nests_deeper(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > limit {
                        return true;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    false
}

/// Whether some line of a CSV text leaves a quoted field open (quotes inside a quoted field are
/// doubled, so a complete line has an even number of them).
pub fn csv_quote_left_open(bytes: &[u8]) -> bool {
    let mut open = false;
    for at in memchr::memchr2_iter(b'"', b'\n', bytes) {
        if bytes[at] == b'"' {
            open = !open;
        } else if open {
            return true;
        }
    }
    open
}

/// Checks the numbers of JSON records against the top-level integer and float columns of a
/// schema. Cheap on the common path: a search for each integer column's key finds the tokens
/// that could have been rounded (a `.`, an exponent, or 19 and more digits) and a scan of the
/// decoded float columns finds infinities; only then is the record checked exactly.
#[derive(Debug, Clone)]
pub struct NumberGuard {
    /// `("\"name\"", type)` of each integer column.
    integers: Vec<(Vec<u8>, DataType)>,
    /// Indices of the float columns.
    floats: Vec<usize>,
}

impl NumberGuard {
    /// The guard for records decoded into `schema`.
    pub fn new(schema: &SchemaRef) -> Self {
        let mut guard = Self { integers: Vec::new(), floats: Vec::new() };
        for (index, field) in schema.fields().iter().enumerate() {
            match field.data_type() {
                data_type if data_type.is_integer() => {
                    guard.integers.push((format!("\"{}\"", field.name()).into_bytes(), data_type.clone()));
                }
                DataType::Float32 | DataType::Float64 => guard.floats.push(index),
                _ => {}
            }
        }
        guard
    }

    /// Whether `bytes` (one or more records) may hold an integer column value arrow-json would
    /// round or clamp; such records need [`NumberGuard::check_record`].
    pub fn suspicious(&self, bytes: &[u8]) -> bool {
        self.integers.iter().any(|(key, _)| {
            memchr::memmem::find_iter(bytes, key).any(|at| {
                let rest = &bytes[at + key.len()..];
                let rest = skip_whitespace(rest);
                let Some(rest) = rest.strip_prefix(b":") else { return false };
                let token = number_token(skip_whitespace(rest));
                token.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) || token.len() > 18
            })
        })
    }

    /// Whether a decoded batch holds a float that is not finite (`1e400`).
    pub fn batch_ok(&self, batch: &RecordBatch) -> bool {
        self.floats.iter().all(|&index| {
            let column = batch.column(index);
            match column.data_type() {
                DataType::Float64 => column.as_primitive::<Float64Type>().iter().flatten().all(f64::is_finite),
                DataType::Float32 => column.as_primitive::<Float32Type>().iter().flatten().all(f32::is_finite),
                _ => true,
            }
        })
    }

    /// The exact check of one JSON record: every top-level integer column's number is an
    /// integer within its type, every float column's number is finite.
    ///
    /// # Errors
    /// The first value the column cannot hold, named.
    pub fn check_record(&self, record: &[u8]) -> Result<(), ArrowError> {
        let Ok(fields) =
            serde_json::from_slice::<std::collections::HashMap<&str, &serde_json::value::RawValue>>(record)
        else {
            return Ok(()); // not an object: the decoder says why
        };
        for (key, data_type) in &self.integers {
            let name = std::str::from_utf8(&key[1..key.len() - 1]).unwrap_or_default();
            let Some(raw) = fields.get(name) else { continue };
            let token = raw.get();
            if !token.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                continue; // a string, null or other: the decoder's rules apply
            }
            if !integer_fits(token, data_type) {
                return Err(ArrowError::JsonError(format!("`{name}`: {token} does not fit {data_type} exactly")));
            }
        }
        Ok(())
    }

    /// The error for a batch [`NumberGuard::batch_ok`] refused.
    pub fn not_finite() -> ArrowError {
        ArrowError::JsonError("a float column got a number out of its range (infinite)".into())
    }
}

fn skip_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    &bytes[start..]
}

fn number_token(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|b| !(b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')))
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// Whether a JSON number token is exactly an integer of `data_type`: plain digits in range, or
/// an exponent form (`1e3`) of an integer that a float holds exactly (below 2^53).
fn integer_fits(token: &str, data_type: &DataType) -> bool {
    let value: Option<i128> = match token.parse::<i128>() {
        Ok(value) => Some(value),
        Err(_) => token
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0)
            .map(|v| v as i128),
    };
    let Some(value) = value else { return false };
    let (min, max): (i128, i128) = match data_type {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        DataType::UInt64 => (0, u64::MAX.into()),
        _ => return true,
    };
    (min..=max).contains(&value)
}

/// The error for a record [`json_too_deep`] refused.
pub fn too_deep() -> ArrowError {
    ArrowError::JsonError(format!("nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays"))
}

/// The error for a record [`csv_quote_left_open`] refused.
pub fn quote_left_open() -> ArrowError {
    ArrowError::CsvError("a quoted field is not closed on its line (unterminated quote)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!json_too_deep(br#"{"a": [1, {"b": "[[[[["}]}"#, 3, true), "brackets in strings do not count");
        assert!(json_too_deep(br#"{"a": [1, {"b": 2}]}"#, 2, true));
        assert!(!json_too_deep(b"[[1]]\n[[2]]\n", 2, true), "lines are separate records");
        assert!(json_too_deep(b"[[1\n,[2]]]", 2, false), "one record over several lines");
        assert!(!json_too_deep(br#"{"s": "a \" [[[ "}"#, 1, true), "escaped quotes stay in the string");
        assert!(json_too_deep(&b"[".repeat(50_000), MAX_JSON_DEPTH, true));
    }

    #[test]
    fn numbers_a_column_cannot_hold_are_found() {
        use arrow::datatypes::{Field, Schema};
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("s", DataType::Int8, true),
        ]));
        let guard = NumberGuard::new(&schema);
        assert!(!guard.suspicious(br#"{"i": 12, "s": 3}"#));
        assert!(guard.suspicious(br#"{"i": 2.9}"#));
        assert!(guard.suspicious(br#"{"i" : -9223372036854775809}"#));
        assert!(guard.check_record(br#"{"i": 2.9}"#).is_err());
        assert!(guard.check_record(br#"{"i": -9223372036854775809}"#).is_err());
        assert!(guard.check_record(br#"{"i": -9223372036854775808}"#).is_ok());
        assert!(guard.check_record(br#"{"i": 1e3, "s": "x"}"#).is_ok(), "an exact integer in exponent form");
        assert!(guard.check_record(br#"{"s": 300}"#).is_err(), "out of int8");
    }

    #[test]
    fn open_quotes_are_found_per_line() {
        assert!(!csv_quote_left_open(b"1,\"a, \"\"b\"\"\"\n2,c\n"));
        assert!(csv_quote_left_open(b"1,\"a\n2,c\n"));
        assert!(csv_quote_left_open(b"1,\"a"));
    }
}
