//! The `table-udf` world: zero or more rows per input row.

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::{Bindings, Functions, World};
use crate::bindings::table::exports::weir::plugin::table::TableOutput;
use crate::bindings::table::{TableUdf, TableUdfPre};
use crate::bindings::{CallError, Column, PluginInfo};
use crate::runtime::{Instance, PluginError};
use crate::sandbox::StoreState;

/// `table-udf`.
pub(crate) struct TableWorld;

impl World for TableWorld {
    const NAME: &'static str = "table-udf";
    const EXPORT: &'static str = "weir:plugin/table@0.1.0";
    type Pre = TableUdfPre<StoreState>;
    type Bindings = TableUdf;

    fn pre(linker: &mut Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        TableUdf::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)?;
        TableUdfPre::new(linker.instantiate_pre(component)?)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }

    fn describe(bindings: &Self::Bindings, store: &mut Store<StoreState>) -> wasmtime::Result<(PluginInfo, Functions)> {
        let (info, functions) = bindings.weir_plugin_table().call_describe(store)?;
        Ok((info, Functions::Table(functions)))
    }
}

impl Instance {
    /// Calls a table function.
    ///
    /// # Errors
    /// Traps (the caller must replace this instance) and contract violations.
    pub fn call_table(
        &mut self,
        function: u32,
        rows: u32,
        args: &[Column],
    ) -> Result<Result<TableOutput, CallError>, PluginError> {
        self.guarded(function, |bindings, store| match bindings {
            Bindings::Table(bindings) => bindings.weir_plugin_table().call_call(store, function, rows, args),
            Bindings::Scalar(_) | Bindings::ScalarBuffers(_) | Bindings::Aggregate(_) => {
                unreachable!("only table plugins are called as table (checked at load)")
            }
        })
    }
}
