//! The `aggregate-udf` world: accumulator states the host keeps per group, folded, merged and
//! finished by the plugin.

use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use super::{Bindings, Functions, World};
use crate::bindings::aggregate::exports::weir::plugin::aggregate::Guest;
use crate::bindings::aggregate::{AggregateUdf, AggregateUdfPre};
use crate::bindings::{CallError, Column, PluginInfo};
use crate::runtime::{Instance, PluginError};
use crate::sandbox::StoreState;

/// `aggregate-udf`.
pub(crate) struct AggregateWorld;

impl World for AggregateWorld {
    const NAME: &'static str = "aggregate-udf";
    const EXPORT: &'static str = "weir:plugin/aggregate@0.1.0";
    type Pre = AggregateUdfPre<StoreState>;
    type Bindings = AggregateUdf;

    fn pre(linker: &mut Linker<StoreState>, component: &Component) -> wasmtime::Result<Self::Pre> {
        AggregateUdf::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |state| state)?;
        AggregateUdfPre::new(linker.instantiate_pre(component)?)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> wasmtime::Result<Self::Bindings> {
        pre.instantiate(store)
    }

    fn describe(bindings: &Self::Bindings, store: &mut Store<StoreState>) -> wasmtime::Result<(PluginInfo, Functions)> {
        let (info, functions) = bindings.weir_plugin_aggregate().call_describe(store)?;
        Ok((info, Functions::Aggregate(functions)))
    }
}

fn exports(bindings: &Bindings) -> &Guest {
    match bindings {
        Bindings::Aggregate(bindings) => bindings.weir_plugin_aggregate(),
        _ => unreachable!("only aggregate plugins are called as aggregates (checked at load)"),
    }
}

impl Instance {
    /// Folds rows into accumulator states: `states[g]` is group g's state (empty = fresh),
    /// `groups[r]` the group of row r; returns every group's new state.
    ///
    /// # Errors
    /// Traps (the caller must replace this instance).
    pub fn call_accumulate(
        &mut self,
        function: u32,
        states: &[Vec<u8>],
        groups: &[u32],
        args: &[Column],
    ) -> Result<Result<Vec<Vec<u8>>, CallError>, PluginError> {
        self.guarded(function, |bindings, store| {
            exports(bindings).call_accumulate(store, function, states, groups, args)
        })
    }

    /// Combines two states of one group.
    ///
    /// # Errors
    /// Traps (the caller must replace this instance).
    pub fn call_merge(
        &mut self,
        function: u32,
        left: &[u8],
        right: &[u8],
    ) -> Result<Result<Vec<u8>, CallError>, PluginError> {
        self.guarded(function, |bindings, store| exports(bindings).call_merge(store, function, left, right))
    }

    /// Final values, one per state.
    ///
    /// # Errors
    /// Traps (the caller must replace this instance).
    pub fn call_finish(&mut self, function: u32, states: &[Vec<u8>]) -> Result<Result<Column, CallError>, PluginError> {
        self.guarded(function, |bindings, store| exports(bindings).call_finish(store, function, states))
    }
}
