//! Transforms: `filter`, `select`, `union`, `lookup_join`, `window`, `top_n`, `aggregate`, and the plugin steps `udf`
//! and `flat_map`, plus what they share: the SQL expression compiler (which also calls plugin
//! functions), aggregate calls and their accumulators, group-key tables, and operator state in checkpoints.
//!
//! Adding a transform: a module here and one line in [`register`].

pub mod aggregate;
pub mod aggregate_calls;
pub mod expr;
pub mod filter;
pub mod flat_map;
pub mod groups;
pub mod lookup_join;
pub mod select;
pub mod snapshot;
pub mod top_n;
pub mod udf;
pub mod union;
pub mod wasm_aggregate;
pub mod wasm_function;
pub mod window;

use weir_config::yaml::Node;
use weir_engine::registry::{DuplicateKind, Registry, Supports};

/// Registers every built-in transform.
///
/// # Errors
/// A kind name already taken.
pub fn register(registry: &mut Registry) -> Result<(), DuplicateKind> {
    registry.register_transform("filter", Supports::TRANSFORM, Node::deserialize::<filter::FilterConfig>)?;
    registry.register_transform("select", Supports::TRANSFORM, Node::deserialize::<select::SelectConfig>)?;
    registry.register_transform("union", Supports::TRANSFORM, Node::deserialize::<union::UnionConfig>)?;
    registry.register_transform("udf", Supports::TRANSFORM.errors(), Node::deserialize::<udf::UdfConfig>)?;
    registry.register_transform("flat_map", Supports::TRANSFORM.errors(), |node| {
        node.deserialize::<flat_map::FlatMapConfig>()
    })?;
    registry.register_transform("lookup_join", Supports::TRANSFORM.retry(), |node| {
        node.deserialize::<lookup_join::LookupJoinConfig>()
    })?;
    registry.register_transform("window", Supports::TRANSFORM.errors().late_output(), |node| {
        node.deserialize::<window::WindowConfig>()
    })?;
    registry.register_transform("top_n", Supports::TRANSFORM.errors().late_output(), |node| {
        node.deserialize::<top_n::TopNConfig>()
    })?;
    registry.register_transform("aggregate", Supports::TRANSFORM.errors(), |node| {
        node.deserialize::<aggregate::AggregateConfig>()
    })?;
    Ok(())
}
