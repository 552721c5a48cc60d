//! The `scalar-udf` world (typed columns) and `scalar-udf-buffers` (Arrow buffers as bytes):
//! one value per row.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::{Bindings, Functions, World};
use crate::bindings::scalar::exports::weir::plugin::scalar::ScalarOutput;
use crate::bindings::scalar::{ScalarUdf, ScalarUdfPre};
use crate::bindings::scalar_buffers::{ScalarUdfBuffers, ScalarUdfBuffersPre};
use crate::bindings::{CallError, Column, PluginInfo};
use crate::runtime::{Instance, PluginError};
use crate::sandbox::StoreState;

/// `scalar-udf`: arguments and results as typed WIT columns.
pub(crate) struct ScalarWorld;

impl World for ScalarWorld {
    const NAME: &'static str = "scalar-udf";
    const EXPORT: &'static str = "weir:plugin/scalar@0.1.0";
    type Pre = ScalarUdfPre<StoreState>;
    type Bindings = ScalarUdf;

    fn pre(linker: &mut Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        ScalarUdf::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)?;
        ScalarUdfPre::new(linker.instantiate_pre(component)?)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }

    fn describe(bindings: &Self::Bindings, store: &mut Store<StoreState>) -> wasmtime::Result<(PluginInfo, Functions)> {
        let (info, functions) = bindings.weir_plugin_scalar().call_describe(store)?;
        Ok((info, Functions::Scalar(functions)))
    }
}

/// `scalar-udf-buffers`: the same functions, with columns passed as Arrow buffers.
pub(crate) struct ScalarBuffersWorld;

impl World for ScalarBuffersWorld {
    const NAME: &'static str = "scalar-udf-buffers";
    const EXPORT: &'static str = "weir:plugin/scalar-buffers@0.1.0";
    type Pre = ScalarUdfBuffersPre<StoreState>;
    type Bindings = ScalarUdfBuffers;

    fn pre(linker: &mut Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        ScalarUdfBuffers::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)?;
        ScalarUdfBuffersPre::new(linker.instantiate_pre(component)?)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }

    fn describe(bindings: &Self::Bindings, store: &mut Store<StoreState>) -> wasmtime::Result<(PluginInfo, Functions)> {
        let (info, functions) = bindings.weir_plugin_scalar_buffers().call_describe(store)?;
        Ok((info, Functions::Scalar(functions)))
    }
}

impl Instance {
    /// Calls a scalar function.
    ///
    /// # Errors
    /// Traps (the caller must replace this instance) and contract violations.
    pub fn call_scalar(
        &mut self,
        function: u32,
        rows: u32,
        args: &[Column],
    ) -> Result<Result<ScalarOutput, CallError>, PluginError> {
        let plugin = Arc::clone(self.plugin());
        let output = self.guarded(function, |bindings, store| match bindings {
            Bindings::Scalar(bindings) => {
                bindings.weir_plugin_scalar().call_call(store, function, rows, args).map(|result| result.map(Ok))
            }
            Bindings::ScalarBuffers(bindings) => {
                // The declared types carry what typed columns do not (timestamp units).
                let signature = plugin.functions.scalar().get(function as usize).map_or(&[][..], |f| &f.args[..]);
                let buffers: Vec<_> = args
                    .iter()
                    .zip(signature)
                    .map(|(column, data_type)| crate::buffers::to_buffer(column, data_type))
                    .collect();
                bindings.weir_plugin_scalar_buffers().call_call(store, function, rows, &buffers).map(|result| {
                    result.map(|output| {
                        crate::buffers::from_buffer(output.values)
                            .map(|values| ScalarOutput { values, errors: output.errors })
                    })
                })
            }
            Bindings::Table(_) | Bindings::Aggregate(_) => {
                unreachable!("only scalar plugins are called as scalar (checked at load)")
            }
        })?;
        match output {
            Ok(Ok(output)) => Ok(Ok(output)),
            Ok(Err(reason)) => Err(PluginError::Contract {
                plugin: self.plugin().info.name.clone(),
                function: self.function_name(function),
                reason,
            }),
            Err(error) => Ok(Err(error)),
        }
    }
}
