//! Plugins from source: `weir plugin new` (scaffold), `weir plugin build` (any supported guest
//! language to a component, then the `plugin inspect` checks) and `weir plugin test` (the
//! plugin's sample pipeline against its expected output).
//!
//! The SDK files for Python, JavaScript and C and the WIT contract are compiled into the `weir`
//! binary and written into the plugin's `build/` folder, so a plugin folder builds wherever it
//! is, with the SDK that matches this host. Intermediate files and the component land in
//! `<plugin>/build/`; the component is `build/<name>.wasm`.

pub mod c;
pub mod js;
pub mod manifest;
pub mod python;
pub mod rust;
pub mod scaffold;
pub mod test;
pub mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub use manifest::{Language, Manifest, World};

use crate::plugin::{self, Plugin};

/// The WIT contract, as this host speaks it.
pub const WIT: &str = include_str!("../../../wit/plugin.wit");

/// Errors of building, scaffolding and testing plugins.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// `weir-plugin.yaml` is missing or wrong.
    #[error("{path}: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A toolchain is not installed; nothing is installed silently.
    #[error("{tool} is not installed; install it with {install}")]
    MissingTool {
        /// What is missing.
        tool: String,
        /// How to install it.
        install: String,
    },
    /// A build step failed.
    #[error("{step} failed:\n{output}")]
    Step {
        /// The step (`componentize-py`, `clang`, ...).
        step: String,
        /// What it printed.
        output: String,
    },
    /// Reading or writing files.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The built component does not pass the checks `weir plugin inspect` makes.
    #[error("the built component {path} is refused: {reason}")]
    Check {
        /// The component.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `weir plugin new` into a folder that exists.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// `weir plugin test` found differences.
    #[error("{0}")]
    TestFailed(String),
}

/// A double-quoted string literal that Python, JavaScript and C all read back as `text`.
pub(crate) fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// Writes a file, creating its folder.
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), GuestError> {
    let io = |err: std::io::Error| GuestError::Io { path: path.to_path_buf(), reason: err.to_string() };
    // An unchanged file keeps its modification time, so the toolchains' own change detection
    // (cargo's in particular) does not rebuild what did not change.
    if std::fs::read(path).is_ok_and(|existing| existing == contents.as_ref()) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)
}

/// Runs a build step; its output becomes the error when it fails.
pub(crate) fn run_step(step: &str, command: &mut Command) -> Result<std::process::Output, GuestError> {
    tracing::debug!(step, command = ?command, "running");
    let output = command.output().map_err(|err| GuestError::Step {
        step: step.to_owned(),
        output: format!("cannot start {command:?}: {err}"),
    })?;
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(GuestError::Step { step: step.to_owned(), output: text.trim_end().to_owned() })
}

/// A built and checked plugin.
#[derive(Debug)]
pub struct Built {
    /// The component.
    pub path: PathBuf,
    /// It, loaded and described.
    pub plugin: Plugin,
    /// Time the language's build took.
    pub build_time: Duration,
}

/// Where the build puts its files.
pub fn build_dir(dir: &Path) -> PathBuf {
    dir.join("build")
}

/// The component `weir plugin build` makes for a manifest.
pub fn output_path(dir: &Path, manifest: &Manifest) -> PathBuf {
    build_dir(dir).join(format!("{}.wasm", manifest.name))
}

/// Builds the plugin folder `dir` into `build/<name>.wasm` and checks the result.
///
/// # Errors
/// Manifest errors, missing toolchains, failing build steps, a component that fails the checks.
pub fn build(dir: &Path) -> Result<Built, GuestError> {
    // Absolute, so generated build scripts work whatever the toolchain's working directory.
    let dir =
        &std::path::absolute(dir).map_err(|err| GuestError::Io { path: dir.to_path_buf(), reason: err.to_string() })?;
    let manifest = Manifest::load(dir)?;
    let output = output_path(dir, &manifest);
    // Built under a temporary name and renamed, so a pipeline loading the component meanwhile
    // sees the old one or the new one, never half a file.
    let partial = output.with_extension(format!("wasm.partial{}", std::process::id()));
    let started = Instant::now();
    let built = match manifest.language {
        Language::Rust => rust::build(dir, &manifest, &partial),
        Language::Python => python::build(dir, &manifest, &partial),
        Language::Js => js::build(dir, &manifest, &partial),
        Language::C => c::build(dir, &manifest, &partial),
    };
    if let Err(err) = built {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, &output)
        .map_err(|err| GuestError::Io { path: output.clone(), reason: err.to_string() })?;
    let build_time = started.elapsed();
    let plugin = check(&output, &manifest)?;
    Ok(Built { path: output, plugin, build_time })
}

/// The checks of `weir plugin inspect`, and that the component is the plugin the manifest says.
fn check(path: &Path, manifest: &Manifest) -> Result<Plugin, GuestError> {
    let refused = |reason: String| GuestError::Check { path: path.to_path_buf(), reason };
    let plugin = plugin::load(path, plugin::Limits::default()).map_err(|err| refused(err.to_string()))?;
    let world = match plugin.kind {
        plugin::PluginKind::Scalar => World::Scalar,
        plugin::PluginKind::Table => World::Table,
        plugin::PluginKind::Aggregate => World::Aggregate,
    };
    if world != manifest.world {
        return Err(refused(format!(
            "it implements {}, the manifest says {}",
            world.wit_name(),
            manifest.world.wit_name()
        )));
    }
    if plugin.info.name != manifest.name || plugin.info.version != manifest.version {
        return Err(refused(format!(
            "it describes itself as {} {}, the manifest says {} {}",
            plugin.info.name, plugin.info.version, manifest.name, manifest.version
        )));
    }
    let unexpected: Vec<&String> = plugin.imports.iter().filter(|name| !plugin::allowed_import(name)).collect();
    if !unexpected.is_empty() {
        return Err(refused(format!("imports outside weir and WASI: {unexpected:?}")));
    }
    Ok(plugin)
}
