//! weir host runtime: the library behind the `weir` binary.
//!
//! The host owns ingestion, operators, state and sinks; plugins are WebAssembly components.
//! Module map (see `DESIGN.md` at the workspace root for the contracts):
//!
//! - [`pipeline`]: pipeline files (YAML) → validated, typed component graph with source locations.
//! - [`engine`]: tasks, bounded channels, the Batch/Watermark/Idle/Barrier/End protocol,
//!   fan-in/fan-out.
//! - [`ops`]: transforms (filter, select, union, udf, flat_map, lookup_join) and the SQL expression
//!   compiler.
//! - [`lookup`]: dimension tables for lookup joins: caches, batched fetching, metrics.
//! - [`connectors`]: built-in sources, sinks and dimension tables, one folder per system, one
//!   registration line each.
//! - [`formats`]: JSON/CSV/Parquet decoding and encoding with per-record error policies.
//! - [`guest`]: plugins from source in Rust, Python, JavaScript and C (`weir plugin new/build/test`).
//! - [`plugin`]: the wasmtime embedding, sandbox, the registry of a job's plugin versions (hot
//!   swap, rollback, canary) and the watched plugins directory.
//! - [`api`]: the admin HTTP API of a running job (health, pipelines, plugins, `/metrics`).
//! - [`cli`]: the `weir` command line (run, validate, bench, plugin).

pub mod api;
pub mod cli;
pub mod connectors;
pub mod engine;
pub mod formats;
pub mod guest;
pub mod lookup;
pub mod ops;
pub mod pipeline;
pub mod plugin;
