//! Checks a record passes before arrow's decoders see it, so that one hostile record is a bad
//! record and never a crash or a silent loss:
//! - JSON nested deeper than [`MAX_JSON_DEPTH`]: arrow-json formats the value of a type
//!   mismatch recursively, and about 50,000 levels in a declared column overflowed the stack
//!   (whatever `on_error` said).
//! - A CSV field that opens a quote its line does not close: the CSV reader would take the
//!   following lines as part of the field and the good rows after it vanished.

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
    fn open_quotes_are_found_per_line() {
        assert!(!csv_quote_left_open(b"1,\"a, \"\"b\"\"\"\n2,c\n"));
        assert!(csv_quote_left_open(b"1,\"a\n2,c\n"));
        assert!(csv_quote_left_open(b"1,\"a"));
    }
}
