//! Finding the guest toolchains, and saying exactly what to install when one is missing.
//!
//! Nothing is installed here. Tools are looked up in `$WEIR_TOOLS_DIR` (the folder
//! `guest-sdk/install-toolchains.sh` fills: `python/bin/componentize-py`,
//! `js/node_modules/@bytecodealliance/componentize-js`) or, when it is not set, in this
//! checkout's `.tools`; then on `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::GuestError;

/// The componentize-py release the Python SDK is tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The ComponentizeJS release the JavaScript SDK is tested with.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// Folders searched for project-local tools, in order.
pub fn tool_dirs() -> Vec<PathBuf> {
    match std::env::var_os("WEIR_TOOLS_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools")],
    }
}

/// An executable on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

fn missing(tool: &str, install: String) -> GuestError {
    GuestError::MissingTool { tool: tool.to_owned(), install }
}

/// `componentize-py`.
///
/// # Errors
/// [`GuestError::MissingTool`] with the install command.
pub fn componentize_py() -> Result<PathBuf, GuestError> {
    tool_dirs()
        .into_iter()
        .map(|dir| dir.join("python/bin/componentize-py"))
        .find(|candidate| candidate.is_file())
        .or_else(|| on_path("componentize-py"))
        .ok_or_else(|| {
            missing(
                "componentize-py",
                format!(
                    "`pip install componentize-py=={COMPONENTIZE_PY_VERSION}` (or `guest-sdk/install-toolchains.sh <dir>` and WEIR_TOOLS_DIR=<dir>)"
                ),
            )
        })
}

/// `node` and the folder of the ComponentizeJS package (searched also in the plugin folder's
/// own `node_modules`).
///
/// # Errors
/// [`GuestError::MissingTool`] with the install command.
pub fn componentize_js(plugin_dir: &Path) -> Result<(PathBuf, PathBuf), GuestError> {
    let node = on_path("node")
        .ok_or_else(|| missing("node", "Node.js 18 or newer (Debian: `apt-get install nodejs npm`)".to_owned()))?;
    let package = "node_modules/@bytecodealliance/componentize-js";
    let mut candidates: Vec<PathBuf> = tool_dirs().into_iter().map(|dir| dir.join("js").join(package)).collect();
    candidates.insert(0, plugin_dir.join(package));
    let module = candidates.into_iter().find(|dir| dir.join("src/componentize.js").is_file()).ok_or_else(|| {
        missing(
            "@bytecodealliance/componentize-js",
            format!(
                "`npm install @bytecodealliance/componentize-js@{COMPONENTIZE_JS_VERSION}` in the plugin folder (or `guest-sdk/install-toolchains.sh <dir>` and WEIR_TOOLS_DIR=<dir>)"
            ),
        )
    })?;
    Ok((node, module))
}

/// Debian's clang for wasm32-wasi with wasi-libc: the compiler (`$WEIR_CC` overrides).
///
/// # Errors
/// [`GuestError::MissingTool`] naming the Debian packages.
pub fn wasi_clang() -> Result<PathBuf, GuestError> {
    const PACKAGES: &str = "`apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc`";
    let clang = match std::env::var_os("WEIR_CC") {
        Some(cc) => PathBuf::from(cc),
        None => on_path("clang-19").ok_or_else(|| missing("clang-19", PACKAGES.to_owned()))?,
    };
    if on_path("wasm-ld-19").is_none() && on_path("wasm-ld").is_none() {
        return Err(missing("wasm-ld (lld-19)", PACKAGES.to_owned()));
    }
    if !Path::new("/usr/include/wasm32-wasi/stdlib.h").is_file() && std::env::var_os("WEIR_CC").is_none() {
        return Err(missing("wasi-libc", PACKAGES.to_owned()));
    }
    Ok(clang)
}

/// `cargo` with the `wasm32-wasip2` target installed.
///
/// # Errors
/// [`GuestError::MissingTool`] with the rustup command.
pub fn cargo_wasip2() -> Result<PathBuf, GuestError> {
    let cargo = on_path("cargo").ok_or_else(|| missing("cargo", "Rust from https://rustup.rs".to_owned()))?;
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().ok();
    let installed = sysroot.is_some_and(|out| {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Path::new(&root).join("lib/rustlib/wasm32-wasip2").is_dir()
    });
    if !installed {
        return Err(missing("the wasm32-wasip2 Rust target", "`rustup target add wasm32-wasip2`".to_owned()));
    }
    Ok(cargo)
}
