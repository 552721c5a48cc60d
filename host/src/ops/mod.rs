//! Transforms: `filter`, `select`, `union`, `lookup_join`, and the plugin steps `udf` and
//! `flat_map`, plus the SQL expression compiler they share (which also calls plugin functions).
//!
//! Adding a transform: a module here and one line in [`TRANSFORMS`].

pub mod expr;
pub mod filter;
pub mod flat_map;
pub mod lookup_join;
pub mod select;
pub mod udf;
pub mod union;
pub mod wasm_function;

use crate::engine::component::TransformKind;

/// Every built-in transform type.
pub static TRANSFORMS: &[TransformKind] =
    &[filter::KIND, select::KIND, union::KIND, udf::KIND, flat_map::KIND, lookup_join::KIND];
