//! A scalar UDF whose `describe()` panics, written against the raw `scalar-udf` bindings. The
//! panic message must reach the load error (it once showed only a backtrace).

use weir_plugin::scalar::exports::weir::plugin::scalar::{Guest, ScalarOutput};
use weir_plugin::types::ScalarSignature;
use weir_plugin::{CallError, Column, PluginInfo};

struct HostileDescribe;

impl Guest for HostileDescribe {
    fn describe() -> (PluginInfo, Vec<ScalarSignature>) {
        panic!("the configuration table is missing (describe exploded on purpose)")
    }

    fn call(_function: u32, _rows: u32, _args: Vec<Column>) -> Result<ScalarOutput, CallError> {
        Err(CallError::Failed("never described".into()))
    }
}

weir_plugin::scalar::export_scalar_udf!(HostileDescribe);
