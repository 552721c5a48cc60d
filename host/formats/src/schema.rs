//! Declared schemas: `schema: { auction: int64, price: "decimal(12,2)", ts: "timestamp(ms)" }`.
//!
//! Type names: `bool`, `int32`, `int64`, `uint64`, `float32`, `float64`, `string`, `binary`,
//! `timestamp(s|ms|us|ns)` (optionally `timestamp(ms, UTC)`), `date`, `decimal(precision, scale)`.
//! Every column is nullable: a missing JSON field or empty CSV cell is NULL.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;

use weir_config::SpecIssue;
use weir_config::yaml::Spanned;

/// A schema as written in a pipeline: column name → type name, in order.
pub type SchemaSpec = IndexMap<String, Spanned<String>>;

/// Builds the Arrow schema of a declared schema.
///
/// # Errors
/// An unknown type name, pointing at it.
pub fn build_schema(spec: &SchemaSpec) -> Result<SchemaRef, SpecIssue> {
    let fields = spec
        .iter()
        .map(|(name, type_name)| {
            parse_type(&type_name.value)
                .map(|data_type| Field::new(name, data_type, true))
                .map_err(|message| SpecIssue::at(&type_name.referenced, format!("column `{name}`: {message}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Parses one type name.
///
/// # Errors
/// A message listing the accepted names.
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let text = text.trim().to_ascii_lowercase();
    let (head, args) = match text.split_once('(') {
        Some((head, rest)) => {
            let args = rest.strip_suffix(')').ok_or_else(|| format!("unbalanced parenthesis in `{text}`"))?;
            (head.trim(), args.split(',').map(str::trim).collect::<Vec<_>>())
        }
        None => (text.as_str(), Vec::new()),
    };
    let data_type = match (head, args.as_slice()) {
        ("bool" | "boolean", []) => DataType::Boolean,
        ("int32" | "int", []) => DataType::Int32,
        ("int64" | "bigint" | "long", []) => DataType::Int64,
        ("uint64", []) => DataType::UInt64,
        ("float32" | "float", []) => DataType::Float32,
        ("float64" | "double", []) => DataType::Float64,
        ("string" | "utf8" | "text", []) => DataType::Utf8,
        ("binary" | "bytes", []) => DataType::Binary,
        ("date" | "date32", []) => DataType::Date32,
        ("timestamp", []) => DataType::Timestamp(TimeUnit::Millisecond, None),
        ("timestamp", [unit]) => DataType::Timestamp(time_unit(unit)?, None),
        ("timestamp", [unit, zone]) => DataType::Timestamp(time_unit(unit)?, Some(zone.to_uppercase().into())),
        ("decimal", [precision, scale]) => {
            let precision: u8 = precision.parse().map_err(|_| format!("bad decimal precision `{precision}`"))?;
            let scale: i8 = scale.parse().map_err(|_| format!("bad decimal scale `{scale}`"))?;
            if precision == 0 || precision > 38 {
                return Err(format!("decimal precision must be 1..=38, got {precision}"));
            }
            DataType::Decimal128(precision, scale)
        }
        _ => {
            return Err(format!(
                "unknown type `{text}`; expected one of bool, int32, int64, uint64, float32, float64, string, \
                 binary, date, timestamp(s|ms|us|ns), decimal(p,s)"
            ));
        }
    };
    Ok(data_type)
}

/// The declared-schema name of a type, the inverse of [`parse_type`]; `None` for types a schema
/// cannot declare (lists, structs, ...).
pub fn type_name(data_type: &DataType) -> Option<String> {
    let unit = |unit: &TimeUnit| match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    };
    Some(match data_type {
        DataType::Boolean => "bool".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 => "string".into(),
        DataType::Binary => "binary".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(time_unit, None) => format!("timestamp({})", unit(time_unit)),
        DataType::Timestamp(time_unit, Some(zone)) => format!("timestamp({}, {zone})", unit(time_unit)),
        DataType::Decimal128(precision, scale) => format!("decimal({precision},{scale})"),
        _ => return None,
    })
}

fn time_unit(unit: &str) -> Result<TimeUnit, String> {
    match unit {
        "s" => Ok(TimeUnit::Second),
        "ms" => Ok(TimeUnit::Millisecond),
        "us" => Ok(TimeUnit::Microsecond),
        "ns" => Ok(TimeUnit::Nanosecond),
        other => Err(format!("unknown time unit `{other}`; expected s, ms, us or ns")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(parse_type("int64").unwrap(), DataType::Int64);
        assert_eq!(parse_type("timestamp(us)").unwrap(), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(parse_type("Decimal(12, 2)").unwrap(), DataType::Decimal128(12, 2));
        assert!(parse_type("int65").unwrap_err().contains("unknown type"));
        assert!(parse_type("timestamp(h)").is_err());
    }

    #[test]
    fn type_names_round_trip() {
        for name in
            ["bool", "int64", "float64", "string", "date", "timestamp(ms)", "timestamp(us, UTC)", "decimal(12,2)"]
        {
            let data_type = parse_type(name).unwrap();
            assert_eq!(type_name(&data_type).as_deref(), Some(name), "{data_type}");
        }
        assert_eq!(type_name(&DataType::Null), None);
    }
}
