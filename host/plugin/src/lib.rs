//! WebAssembly plugins: the wasmtime embedding, the sandbox, Arrow <-> WIT conversion, the
//! registry of a job's plugins with their versions (hot swap, rollback), canaries, and the
//! watched plugins directory.
//!
//! Plugins implement a world of `wit/plugin.wit` (`weir:plugin@0.1.0`); each world is a module of
//! `world` behind one trait (linking, instantiating, describing, its calls). They are compiled
//! once (cached on disk), pre-instantiated, and called a batch at a time. A trap never takes the host
//! down: the instance is dropped and a fresh one created, and the calling step's error policy
//! decides what happens to the rows.

pub mod bindings;
pub mod buffers;
pub mod cache;
pub mod call;
pub mod canary;
pub mod convert;
pub mod registry;
pub mod runtime;
pub mod sandbox;
pub mod watch;
mod world;

pub use registry::{PluginHandle, PluginRegistry, RollbackPolicy, SwapError, Version};
pub use runtime::{Instance, Plugin, PluginError, load};
pub use sandbox::Limits;
pub use world::{Functions, PluginKind};

/// Imports a plugin may have: weir's host interface, and WASI, which weir links with a context
/// that grants nothing (no files, environment, network or stdin; output is captured into the
/// host log). `wasi:http` (imported by every ComponentizeJS component) is linked to functions
/// that trap.
pub fn allowed_import(name: &str) -> bool {
    name.starts_with("weir:plugin/") || name.starts_with("wasi:")
}
