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

use weir_plugin::Plugin;

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
    /// The inputs had not changed since the component was built: it was kept as it was.
    pub up_to_date: bool,
}

/// The files of a plugin folder that make its component, sorted: everything but build outputs
/// (`build/`, `target/`, `node_modules/`, `.git/`), the test folder and Markdown documentation,
/// whose edits do not change the component.
pub fn build_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if matches!(name.to_str(), Some("build" | "target" | "node_modules" | ".git"))
                || path == dir.join("test")
                || path.extension().is_some_and(|ext| ext == "md")
            {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(_) => files.push(path),
                Err(_) => {}
            }
        }
    }
    files.sort();
    files
}

/// What `build/<name>.inputs` holds: the inputs digest and the component's SHA-256.
fn record(digest: &str, component: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hash: String = Sha256::digest(component).iter().map(|b| format!("{b:02x}")).collect();
    format!("{digest} {hash}")
}

/// A digest of everything a Python, JavaScript or C build reads: the folder's inputs (paths and
/// contents), the SDK and WIT inside this binary, the pinned toolchain versions. Those
/// toolchains snapshot an initialized interpreter whose heap depends on random seeds drawn while
/// building, so two builds of the same sources differ; not rebuilding when nothing changed is
/// what keeps a component (and a `hash:` pin, and the compile cache) stable.
fn inputs_digest(dir: &Path, manifest: &Manifest) -> Result<String, GuestError> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(env!("CARGO_PKG_VERSION"));
    hasher.update(WIT);
    let sdk: &[&str] = match manifest.language {
        Language::Python => &python::SDK,
        Language::Js => &[js::SDK],
        Language::C => &c::SDK,
        Language::Rust => &[],
    };
    for part in sdk.iter().chain([toolchain::COMPONENTIZE_PY_VERSION, toolchain::COMPONENTIZE_JS_VERSION].iter()) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    for path in build_inputs(dir) {
        let contents =
            std::fs::read(&path).map_err(|err| GuestError::Io { path: path.clone(), reason: err.to_string() })?;
        let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
        hasher.update((relative.len() as u64).to_le_bytes());
        hasher.update(relative);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(contents);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
    build_with(dir, false)
}

/// As [`build`]; Python, JavaScript and C components whose inputs did not change since they
/// were built are kept unless `force` (Rust builds are left to cargo, which is incremental).
///
/// # Errors
/// As for [`build`].
pub fn build_with(dir: &Path, force: bool) -> Result<Built, GuestError> {
    // Absolute, so generated build scripts work whatever the toolchain's working directory.
    let dir =
        &std::path::absolute(dir).map_err(|err| GuestError::Io { path: dir.to_path_buf(), reason: err.to_string() })?;
    let manifest = Manifest::load(dir)?;
    let output = output_path(dir, &manifest);
    let recorded = output.with_extension("inputs");
    let digest = match manifest.language {
        Language::Rust => None,
        _ => Some(inputs_digest(dir, &manifest)?),
    };
    // The record is "<inputs digest> <component sha256>": a component replaced by hand since
    // is rebuilt, not trusted.
    if !force
        && let Some(digest) = &digest
        && let Ok(component) = std::fs::read(&output)
        && std::fs::read_to_string(&recorded).is_ok_and(|previous| previous.trim() == record(digest, &component))
    {
        let plugin = check(&output, &manifest)?;
        return Ok(Built { path: output, plugin, build_time: Duration::ZERO, up_to_date: true });
    }
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
    if let Some(digest) = digest {
        let component =
            std::fs::read(&output).map_err(|err| GuestError::Io { path: output.clone(), reason: err.to_string() })?;
        write(&recorded, format!("{}\n", record(&digest, &component)))?;
    }
    Ok(Built { path: output, plugin, build_time, up_to_date: false })
}

/// The checks of `weir plugin inspect`, and that the component is the plugin the manifest says.
fn check(path: &Path, manifest: &Manifest) -> Result<Plugin, GuestError> {
    let refused = |reason: String| GuestError::Check { path: path.to_path_buf(), reason };
    let plugin = weir_plugin::load(path, weir_plugin::Limits::default()).map_err(|err| refused(err.to_string()))?;
    let world = match plugin.kind() {
        weir_plugin::PluginKind::Scalar => World::Scalar,
        weir_plugin::PluginKind::Table => World::Table,
        weir_plugin::PluginKind::Aggregate => World::Aggregate,
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
    let unexpected: Vec<&String> = plugin.imports.iter().filter(|name| !weir_plugin::allowed_import(name)).collect();
    if !unexpected.is_empty() {
        return Err(refused(format!("imports outside weir and WASI: {unexpected:?}")));
    }
    Ok(plugin)
}
