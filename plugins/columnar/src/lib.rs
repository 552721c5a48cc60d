//! The column-level API: implement the scalar world's `Guest` directly and work on whole columns
//! as arrow-rs arrays, using Arrow's vectorised kernels instead of a per-row function.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use weir_plugin::scalar::exports::weir::plugin::scalar::{Guest, ScalarOutput};
use weir_plugin::types::ScalarSignature;
use weir_plugin::{CallError, Column, ColumnView, DataType, PluginInfo, column_from_arrow};

struct Columnar;

impl Guest for Columnar {
    fn describe() -> (PluginInfo, Vec<ScalarSignature>) {
        let info = PluginInfo {
            name: "columnar".into(),
            version: "0.1.0".into(),
            description: "Whole-column functions with arrow-rs".into(),
        };
        let functions = vec![ScalarSignature {
            name: "times_two".into(),
            args: vec![DataType::Int64],
            returns: DataType::Int64,
            description: "Doubles an int64 column with Arrow's `unary` kernel (NULL stays NULL).".into(),
        }];
        (info, functions)
    }

    fn call(function: u32, rows: u32, args: Vec<Column>) -> Result<ScalarOutput, CallError> {
        if function != 0 || args.len() != 1 {
            return Err(CallError::InvalidInput(format!("no function {function} with {} arguments", args.len())));
        }
        let view = ColumnView::new(&args[0], rows as usize).map_err(CallError::InvalidInput)?;
        let array = view.to_arrow().map_err(CallError::InvalidInput)?;
        let Some(values) = array.as_primitive_opt::<Int64Type>() else {
            return Err(CallError::InvalidInput(format!("expected int64, got {}", array.data_type())));
        };
        let doubled = values.unary::<_, Int64Type>(|value| value.wrapping_mul(2));
        weir_plugin::counter_add("rows_doubled", u64::from(rows));
        weir_plugin::gauge_set("last_batch_rows", f64::from(rows));
        let values = column_from_arrow(&doubled).map_err(CallError::Failed)?;
        Ok(ScalarOutput { values, errors: Vec::new() })
    }
}

weir_plugin::scalar::export_scalar_udf!(Columnar);
