//! The Rust SDK for weir plugins.
//!
//! A UDF is a plain Rust function over values; [`scalar_udfs!`] and [`table_udfs!`] generate the
//! plugin's self-description and the vectorised loop over a batch (the host calls a plugin once
//! per batch, never once per row):
//!
//! ```ignore
//! weir_plugin::scalar_udfs! {
//!     plugin: { name: "currency", version: "0.1.0", description: "Currency conversion" },
//!     /// Dollars (in cents) to euros.
//!     fn to_eur(cents: i64) -> f64 { cents as f64 * 0.908 / 100.0 }
//! }
//! ```
//!
//! Argument types: `bool`, `i32`, `i64`, `u64`, `f32`, `f64`, `&str`, `&[u8]`, and `Option<T>` of
//! those to see NULLs. A function whose arguments are not `Option` is not called for a row with a
//! NULL argument: that row's result is NULL (SQL's rule for strict functions). Return types: the
//! same value types (owned: `String`, `Vec<u8>`), `Option<T>` to return NULL, and `Result<T, E>`
//! (with `E: Display`) to reject a row: the row becomes NULL and the host applies the step's error
//! policy (`fail`, `skip`, `dead-letter`) to it.
//!
//! For whole columns, implement the generated `Guest` traits directly (see [`scalar`]) and use
//! [`ColumnView`] / [`ColumnBuilder`] to read and write Arrow-layout columns, or, with the `arrow`
//! feature, `ColumnView::to_arrow` and `column_from_arrow` to work with arrow-rs arrays and kernels.

#![warn(missing_docs)]

#[doc(hidden)]
pub mod columns;

#[cfg(feature = "arrow")]
mod arrow;
#[cfg(feature = "arrow")]
pub use arrow::column_from_arrow;

pub use columns::{Arg, ColumnBuilder, ColumnView, OutputValue, Ret, RowTuple, Values, data_type_name};

/// Bindings of the `scalar-udf` world.
pub mod scalar {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "weir:plugin/scalar-udf@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_scalar_udf",
        default_bindings_module: "weir_plugin::scalar",
    });
}

/// Bindings of the `table-udf` world.
pub mod table {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "weir:plugin/table-udf@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_table_udf",
        default_bindings_module: "weir_plugin::table",
        with: {
            "weir:plugin/types@0.1.0": crate::types,
            "weir:plugin/host@0.1.0": crate::host,
        },
    });
}

/// The host's imports: logging, counters, gauges.
pub use scalar::weir::plugin::host;
/// The shared WIT types (`weir:plugin/types`), one copy for every world.
pub use scalar::weir::plugin::types;
pub use types::{CallError, Column, ColumnValues, DataType, PluginInfo, RowError, TimeUnit, VarData};

/// Logs a message at info level into the host's log, attributed to this plugin.
pub fn log_info(message: &str) {
    host::log(host::Level::Info, message, &[]);
}

/// Adds to a counter in the host's metrics (call it per batch, not per row: it is a host call).
pub fn counter_add(name: &str, value: u64) {
    host::counter_add(name, value);
}

/// Sets a gauge in the host's metrics.
pub fn gauge_set(name: &str, value: f64) {
    host::gauge_set(name, value);
}

/// Declares a scalar-UDF plugin from plain functions. See the crate documentation.
#[macro_export]
macro_rules! scalar_udfs {
    (
        plugin: { name: $plugin:literal, version: $version:literal, description: $description:literal $(,)? },
        $(
            $(#[doc = $doc:literal])*
            fn $name:ident ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty $body:block
        )*
    ) => {
        $(
            $(#[doc = $doc])*
            #[allow(clippy::ptr_arg)]
            pub fn $name( $( $arg : $ty ),* ) -> $ret $body
        )*

        struct WeirScalarPlugin;

        impl $crate::scalar::exports::weir::plugin::scalar::Guest for WeirScalarPlugin {
            fn describe() -> ($crate::PluginInfo, ::std::vec::Vec<$crate::scalar::weir::plugin::types::ScalarSignature>) {
                let info = $crate::PluginInfo {
                    name: $plugin.into(),
                    version: $version.into(),
                    description: $description.into(),
                };
                let functions = ::std::vec![$(
                    $crate::types::ScalarSignature {
                        name: ::std::stringify!($name).into(),
                        args: ::std::vec![$( <$ty as $crate::Arg>::DATA_TYPE ),*],
                        returns: <$ret as $crate::Ret>::DATA_TYPE,
                        description: ::std::concat!($($doc, "\n"),*).trim().into(),
                    }
                ),*];
                (info, functions)
            }

            fn call(
                function: u32,
                rows: u32,
                args: ::std::vec::Vec<$crate::Column>,
            ) -> ::std::result::Result<$crate::scalar::exports::weir::plugin::scalar::ScalarOutput, $crate::CallError> {
                let names: &[&str] = &[$(::std::stringify!($name)),*];
                let mut index = 0u32;
                $(
                    if function == index {
                        let rows = rows as usize;
                        let mut columns = args.iter();
                        $(
                            let $arg = $crate::ColumnView::new(columns.next().ok_or_else(|| {
                                $crate::CallError::InvalidInput(::std::format!("{}: missing argument `{}`", names[index as usize], ::std::stringify!($arg)))
                            })?, rows).map_err($crate::CallError::InvalidInput)?;
                            let $arg = <$ty as $crate::Arg>::reader(&$arg).map_err($crate::CallError::InvalidInput)?;
                        )*
                        let mut out = $crate::ColumnBuilder::<<$ret as $crate::Ret>::Value>::with_capacity(rows);
                        let mut errors = ::std::vec::Vec::new();
                        for row in 0..rows {
                            $(
                                let ::std::option::Option::Some($arg) = <$ty as $crate::Arg>::read(&$arg, row) else {
                                    out.push(::std::option::Option::None);
                                    continue;
                                };
                            )*
                            $crate::Ret::append_to($name($($arg),*), &mut out, &mut errors, row);
                        }
                        return ::std::result::Result::Ok($crate::scalar::exports::weir::plugin::scalar::ScalarOutput {
                            values: out.finish(),
                            errors,
                        });
                    }
                    index += 1;
                )*
                let _ = index;
                ::std::result::Result::Err($crate::CallError::InvalidInput(::std::format!("no function number {function}")))
            }
        }

        $crate::scalar::export_scalar_udf!(WeirScalarPlugin);
    };
}

/// Declares a table-UDF plugin: each function returns an iterator of output rows (tuples) per
/// input row, and names its output columns:
///
/// ```ignore
/// weir_plugin::table_udfs! {
///     plugin: { name: "words", version: "0.1.0", description: "Text splitting" },
///     /// One row per word.
///     fn split_words(text: &str) -> (word: String, position: i32) {
///         text.split_whitespace().enumerate().map(|(i, w)| (w.to_string(), i as i32)).collect::<Vec<_>>()
///     }
/// }
/// ```
#[macro_export]
macro_rules! table_udfs {
    (
        plugin: { name: $plugin:literal, version: $version:literal, description: $description:literal $(,)? },
        $(
            $(#[doc = $doc:literal])*
            fn $name:ident ( $( $arg:ident : $ty:ty ),* $(,)? ) -> ( $( $out:ident : $oty:ty ),+ $(,)? ) $body:block
        )*
    ) => {
        $(
            $(#[doc = $doc])*
            pub fn $name( $( $arg : $ty ),* ) -> impl ::std::iter::IntoIterator<Item = ( $( $oty, )+ )> $body
        )*

        struct WeirTablePlugin;

        impl $crate::table::exports::weir::plugin::table::Guest for WeirTablePlugin {
            fn describe() -> ($crate::types::PluginInfo, ::std::vec::Vec<$crate::types::TableSignature>) {
                let info = $crate::types::PluginInfo {
                    name: $plugin.into(),
                    version: $version.into(),
                    description: $description.into(),
                };
                let functions = ::std::vec![$(
                    $crate::types::TableSignature {
                        name: ::std::stringify!($name).into(),
                        args: ::std::vec![$( <$ty as $crate::Arg>::DATA_TYPE ),*],
                        output: ::std::vec![$(
                            $crate::types::Field {
                                name: ::std::stringify!($out).into(),
                                data_type: <$oty as $crate::OutputValue>::DATA_TYPE,
                                nullable: true,
                            }
                        ),+],
                        description: ::std::concat!($($doc, "\n"),*).trim().into(),
                    }
                ),*];
                (info, functions)
            }

            fn call(
                function: u32,
                rows: u32,
                args: ::std::vec::Vec<$crate::Column>,
            ) -> ::std::result::Result<$crate::table::exports::weir::plugin::table::TableOutput, $crate::types::CallError> {
                let invalid = |message: ::std::string::String| $crate::types::CallError::InvalidInput(message);
                let mut index = 0u32;
                $(
                    if function == index {
                        let rows = rows as usize;
                        let mut columns = args.iter();
                        $(
                            let $arg = $crate::ColumnView::new(
                                columns.next().ok_or_else(|| invalid(::std::format!("missing argument `{}`", ::std::stringify!($arg))))?,
                                rows,
                            ).map_err(invalid)?;
                            let $arg = <$ty as $crate::Arg>::reader(&$arg).map_err(invalid)?;
                        )*
                        let mut parents = ::std::vec::Vec::new();
                        let mut builders = <( $( $oty, )+ ) as $crate::RowTuple>::builders(rows);
                        for row in 0..rows {
                            $(
                                let ::std::option::Option::Some($arg) = <$ty as $crate::Arg>::read(&$arg, row) else { continue };
                            )*
                            for item in $name($($arg),*) {
                                parents.push(row as u32);
                                <( $( $oty, )+ ) as $crate::RowTuple>::push(item, &mut builders);
                            }
                        }
                        let columns = <( $( $oty, )+ ) as $crate::RowTuple>::finish(builders);
                        return ::std::result::Result::Ok($crate::table::exports::weir::plugin::table::TableOutput {
                            parents,
                            columns,
                            errors: ::std::vec::Vec::new(),
                        });
                    }
                    index += 1;
                )*
                let _ = index;
                ::std::result::Result::Err(invalid(::std::format!("no function number {function}")))
            }
        }

        $crate::table::export_table_udf!(WeirTablePlugin);
    };
}
