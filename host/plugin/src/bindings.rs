//! Host-side bindings of the `weir:plugin@0.1.0` worlds, generated in one place.

#![allow(missing_docs, clippy::all)]

/// The `scalar-udf` world (and the shared `types` and `host` interfaces).
pub mod scalar {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/scalar-udf@0.1.0",
    });
}

/// The `scalar-udf-buffers` world (column buffers as bytes), sharing `types` and `host`.
pub mod scalar_buffers {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/scalar-udf-buffers@0.1.0",
        with: {
            "weir:plugin/types@0.1.0": super::scalar::weir::plugin::types,
            "weir:plugin/host@0.1.0": super::scalar::weir::plugin::host,
        },
    });
}

/// The `table-udf` world, reusing the shared interfaces generated for `scalar`.
pub mod table {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/table-udf@0.1.0",
        with: {
            "weir:plugin/types@0.1.0": super::scalar::weir::plugin::types,
            "weir:plugin/host@0.1.0": super::scalar::weir::plugin::host,
        },
    });
}

/// The `aggregate-udf` world, reusing the shared interfaces generated for `scalar`.
pub mod aggregate {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "weir:plugin/aggregate-udf@0.1.0",
        with: {
            "weir:plugin/types@0.1.0": super::scalar::weir::plugin::types,
            "weir:plugin/host@0.1.0": super::scalar::weir::plugin::host,
        },
    });
}

pub use scalar::weir::plugin::host::Level;
pub use scalar::weir::plugin::types::{
    AggregateSignature, CallError, Column, ColumnValues, DataType, DecimalType, Field, PluginInfo, RowError,
    ScalarSignature, TableSignature, TimeUnit, VarData,
};
