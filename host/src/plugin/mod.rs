//! WebAssembly plugins: the wasmtime embedding, the sandbox, Arrow <-> WIT conversion, and the
//! catalog of plugins a pipeline declares.
//!
//! Plugins implement a world of `wit/plugin.wit` (`weir:plugin@0.1.0`). They are compiled once
//! (cached on disk), pre-instantiated, and called a batch at a time. A trap never takes the host
//! down: the instance is dropped and a fresh one created, and the calling step's error policy
//! decides what happens to the rows.

pub mod bindings;
pub mod buffers;
pub mod convert;
pub mod runtime;
pub mod sandbox;
pub mod udf;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use runtime::{Instance, Plugin, PluginError, PluginKind, load};
pub use sandbox::Limits;

/// Imports a plugin may have: weir's host interface, and WASI, which weir links with a context
/// that grants nothing (no files, environment, network or stdin; output is captured into the
/// host log). `wasi:http` (imported by every ComponentizeJS component) is linked to functions
/// that trap.
pub fn allowed_import(name: &str) -> bool {
    name.starts_with("weir:plugin/") || name.starts_with("wasi:")
}

/// The plugins a pipeline declared under `plugins:`, by name.
#[derive(Debug, Default, Clone)]
pub struct PluginCatalog {
    plugins: HashMap<String, (Arc<Plugin>, Limits)>,
}

impl PluginCatalog {
    /// Adds a loaded plugin under `name`.
    pub fn insert(&mut self, name: String, plugin: Arc<Plugin>, limits: Limits) {
        self.plugins.insert(name, (plugin, limits));
    }

    /// A declared plugin by name, or a `.wasm` path loaded on the spot (relative to `base`).
    ///
    /// # Errors
    /// Unknown names and load failures, as text for the step's error.
    pub fn resolve(&self, reference: &str, base: &Path) -> Result<(Arc<Plugin>, Limits), String> {
        if let Some(found) = self.plugins.get(reference) {
            return Ok(found.clone());
        }
        if reference.ends_with(".wasm") {
            let path = if Path::new(reference).is_absolute() { reference.into() } else { base.join(reference) };
            return load(&path).map(|plugin| (Arc::new(plugin), Limits::default())).map_err(|err| err.to_string());
        }
        let mut known: Vec<&str> = self.plugins.keys().map(String::as_str).collect();
        known.sort_unstable();
        Err(format!(
            "unknown plugin `{reference}`; declared plugins: [{}] (or give a path ending in .wasm)",
            known.join(", ")
        ))
    }

    /// Every declared plugin.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &(Arc<Plugin>, Limits))> {
        self.plugins.iter()
    }
}
