//! Transforms: `filter`, `select` and `union`, plus the SQL expression compiler they share.
//!
//! Adding a transform: a module here and one line in [`TRANSFORMS`].

pub mod expr;
pub mod filter;
pub mod select;
pub mod union;

use crate::engine::component::TransformKind;

/// Every built-in transform type.
pub static TRANSFORMS: &[TransformKind] = &[filter::KIND, select::KIND, union::KIND];
