//! A hostile table UDF written against the raw `table-udf` bindings, so it returns exactly the
//! row errors chosen, whatever the SDK's macros would allow. Never use it in a real pipeline;
//! `tests/all/plugins.rs` checks that weir refuses or bounds what it returns.

use weir_plugin::table::exports::weir::plugin::table::{Guest, TableOutput};
use weir_plugin::types::{Field, TableSignature};
use weir_plugin::{CallError, Column, ColumnValues, DataType, PluginInfo, RowError};

struct HostileTable;

/// One output row per input row (each row its own parent), the values 0, 1, 2, ...
fn one_row_each(rows: u32) -> (Vec<u32>, Vec<Column>) {
    let values = (0..i64::from(rows)).collect();
    ((0..rows).collect(), vec![Column { len: rows, validity: None, values: ColumnValues::Int64(values) }])
}

impl Guest for HostileTable {
    fn describe() -> (PluginInfo, Vec<TableSignature>) {
        let info = PluginInfo {
            name: "hostile-table".into(),
            version: "0.1.0".into(),
            description: "Misbehaving table functions for sandbox tests".into(),
        };
        let signature = |name: &str, description: &str| TableSignature {
            name: name.into(),
            args: vec![DataType::Int64],
            output: vec![Field { name: "n".into(), data_type: DataType::Int64, nullable: true }],
            description: description.into(),
        };
        let functions = vec![
            signature("phantom_row_error", "Reports an error for a row 1000 past the last one of the call."),
            signature("error_storm", "Reports 100,000 errors for the first row of every call."),
        ];
        (info, functions)
    }

    fn call(function: u32, rows: u32, _args: Vec<Column>) -> Result<TableOutput, CallError> {
        let (parents, columns) = one_row_each(rows);
        let errors = match function {
            0 => vec![RowError { row: rows + 1000, message: "no such row".into() }],
            1 => (0..100_000).map(|i| RowError { row: 0, message: format!("storm error {i}") }).collect(),
            other => return Err(CallError::InvalidInput(format!("no function {other}"))),
        };
        Ok(TableOutput { parents, columns, errors })
    }
}

weir_plugin::table::export_table_udf!(HostileTable);
