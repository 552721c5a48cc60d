//! Transforms: `filter`, `select`, `union`, `lookup_join`, `window`, `top_n`, `aggregate`, and the plugin steps `udf`
//! and `flat_map`, plus what they share: the SQL expression compiler (which also calls plugin
//! functions), aggregate calls and their accumulators, and group-key tables.
//!
//! Adding a transform: a module here and one line in [`TRANSFORMS`].

pub mod aggregate;
pub mod aggregates;
pub mod expr;
pub mod filter;
pub mod flat_map;
pub mod groups;
pub mod lookup_join;
pub mod select;
pub mod top_n;
pub mod udf;
pub mod union;
pub mod wasm_aggregate;
pub mod wasm_function;
pub mod window;

use crate::engine::component::TransformKind;

/// Every built-in transform type.
pub static TRANSFORMS: &[TransformKind] = &[
    filter::KIND,
    select::KIND,
    union::KIND,
    udf::KIND,
    flat_map::KIND,
    lookup_join::KIND,
    window::KIND,
    top_n::KIND,
    aggregate::KIND,
];
