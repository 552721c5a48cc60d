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
//! Aggregates ([`aggregate_udfs!`]) fold rows into a serde-able [`Accumulator`] whose encoded
//! bytes the host keeps per key and window.
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

/// Bindings of the `aggregate-udf` world.
pub mod aggregate {
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "weir:plugin/aggregate-udf@0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_aggregate_udf",
        default_bindings_module: "weir_plugin::aggregate",
        with: {
            "weir:plugin/types@0.1.0": crate::types,
            "weir:plugin/host@0.1.0": crate::host,
        },
    });
}

#[doc(hidden)]
pub use postcard;
#[doc(hidden)]
pub use serde;

/// An aggregate's accumulator state. The host keeps it, encoded, per key and window; the plugin
/// only ever sees it for the length of one call. Implement it on a `Default + Serialize +
/// Deserialize` struct and declare the function with [`aggregate_udfs!`].
pub trait Accumulator: Default + serde::Serialize + for<'de> serde::Deserialize<'de> {
    /// Folds another state of the same group into this one (partial aggregates, merged sessions).
    fn merge(&mut self, other: Self);
}

#[doc(hidden)]
pub fn decode_state<A: Accumulator>(bytes: &[u8]) -> Result<A, CallError> {
    if bytes.is_empty() {
        return Ok(A::default());
    }
    postcard::from_bytes(bytes).map_err(|err| CallError::InvalidInput(format!("unreadable accumulator state: {err}")))
}

#[doc(hidden)]
pub fn encode_state<A: Accumulator>(state: &A) -> Result<Vec<u8>, CallError> {
    postcard::to_allocvec(state).map_err(|err| CallError::Failed(format!("cannot encode the accumulator state: {err}")))
}

/// Declares an aggregate-UDF plugin. Each function names its accumulator type (an
/// [`Accumulator`]) and its state version (bump it when the state's encoding changes: the host
/// refuses to hand old states to a plugin with another version), and gives two blocks: how one
/// row is folded in (`state` is `&mut` the accumulator, the arguments are the row's values; rows
/// with a NULL argument are skipped, as SQL aggregates do) and the final value.
///
/// ```ignore
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// struct Values(Vec<f64>);
/// impl weir_plugin::Accumulator for Values {
///     fn merge(&mut self, other: Self) { self.0.extend(other.0) }
/// }
/// weir_plugin::aggregate_udfs! {
///     plugin: { name: "stats", version: "0.1.0", description: "Statistics" },
///     /// The median.
///     fn median(value: f64) -> Option<f64> {
///         state: Values, version: 1,
///         accumulate: |state| state.0.push(value),
///         finish: |state| { let mut v = state.0.clone(); v.sort_by(f64::total_cmp); v.get(v.len() / 2).copied() },
///     }
/// }
/// ```
#[macro_export]
macro_rules! aggregate_udfs {
    (
        plugin: { name: $plugin:literal, version: $version:literal, description: $description:literal $(,)? },
        $(
            $(#[doc = $doc:literal])*
            fn $name:ident ( $( $arg:ident : $ty:ty ),* $(,)? ) -> $ret:ty {
                state: $state:ty, version: $state_version:literal,
                accumulate: |$acc:ident| $accumulate:expr,
                finish: |$fin:ident| $finish:expr $(,)?
            }
        )*
    ) => {
        struct WeirAggregatePlugin;

        impl $crate::aggregate::exports::weir::plugin::aggregate::Guest for WeirAggregatePlugin {
            fn describe() -> ($crate::PluginInfo, ::std::vec::Vec<$crate::types::AggregateSignature>) {
                let info = $crate::PluginInfo {
                    name: $plugin.into(),
                    version: $version.into(),
                    description: $description.into(),
                };
                let functions = ::std::vec![$(
                    $crate::types::AggregateSignature {
                        name: ::std::stringify!($name).into(),
                        args: ::std::vec![$( <$ty as $crate::Arg>::DATA_TYPE ),*],
                        returns: <$ret as $crate::Ret>::DATA_TYPE,
                        state_version: $state_version,
                        description: ::std::concat!($($doc, "\n"),*).trim().into(),
                    }
                ),*];
                (info, functions)
            }

            fn accumulate(
                function: u32,
                states: ::std::vec::Vec<::std::vec::Vec<u8>>,
                groups: ::std::vec::Vec<u32>,
                args: ::std::vec::Vec<$crate::Column>,
            ) -> ::std::result::Result<::std::vec::Vec<::std::vec::Vec<u8>>, $crate::CallError> {
                let invalid = |message: ::std::string::String| $crate::CallError::InvalidInput(message);
                let mut index = 0u32;
                $(
                    if function == index {
                        let rows = groups.len();
                        let mut columns = args.iter();
                        $(
                            let $arg = $crate::ColumnView::new(
                                columns.next().ok_or_else(|| invalid(::std::format!("missing argument `{}`", ::std::stringify!($arg))))?,
                                rows,
                            ).map_err(invalid)?;
                            let $arg = <$ty as $crate::Arg>::reader(&$arg).map_err(invalid)?;
                        )*
                        let mut decoded: ::std::vec::Vec<$state> = states
                            .iter()
                            .map(|bytes| $crate::decode_state::<$state>(bytes))
                            .collect::<::std::result::Result<_, _>>()?;
                        for (row, &group) in groups.iter().enumerate() {
                            $(
                                let ::std::option::Option::Some($arg) = <$ty as $crate::Arg>::read(&$arg, row) else { continue };
                            )*
                            let $acc: &mut $state = decoded.get_mut(group as usize).ok_or_else(|| invalid(::std::format!("group {group} has no state")))?;
                            $accumulate;
                        }
                        return decoded.iter().map($crate::encode_state).collect();
                    }
                    index += 1;
                )*
                let _ = index;
                ::std::result::Result::Err(invalid(::std::format!("no aggregate number {function}")))
            }

            fn merge(
                function: u32,
                left: ::std::vec::Vec<u8>,
                right: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::CallError> {
                let mut index = 0u32;
                $(
                    if function == index {
                        let mut state = $crate::decode_state::<$state>(&left)?;
                        $crate::Accumulator::merge(&mut state, $crate::decode_state::<$state>(&right)?);
                        return $crate::encode_state(&state);
                    }
                    index += 1;
                )*
                let _ = index;
                ::std::result::Result::Err($crate::CallError::InvalidInput(::std::format!("no aggregate number {function}")))
            }

            fn finish(
                function: u32,
                states: ::std::vec::Vec<::std::vec::Vec<u8>>,
            ) -> ::std::result::Result<$crate::Column, $crate::CallError> {
                let mut index = 0u32;
                $(
                    if function == index {
                        let mut out = $crate::ColumnBuilder::<<$ret as $crate::Ret>::Value>::with_capacity(states.len());
                        let mut errors = ::std::vec::Vec::new();
                        for (row, bytes) in states.iter().enumerate() {
                            let $fin: $state = $crate::decode_state::<$state>(bytes)?;
                            let value: $ret = $finish;
                            $crate::Ret::append_to(value, &mut out, &mut errors, row);
                        }
                        return ::std::result::Result::Ok(out.finish());
                    }
                    index += 1;
                )*
                let _ = index;
                ::std::result::Result::Err($crate::CallError::InvalidInput(::std::format!("no aggregate number {function}")))
            }
        }

        $crate::aggregate::export_aggregate_udf!(WeirAggregatePlugin);
    };
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
