//! Rust guests: `cargo build --release --target wasm32-wasip2` gives a component directly; the
//! component is copied to `build/<name>.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{GuestError, Manifest, run_step, toolchain, write};

/// Where a plugin folder gets the Rust SDK this weir was built with, relative to the folder:
/// `weir plugin build` writes it there (from the copy inside the binary), so a scaffold's
/// `Cargo.toml` depends on neither the machine nor the checkout weir was built from.
pub const SDK_DIR: &str = "build/weir-sdk-0.1.0";

/// The SDK's files, relative to [`SDK_DIR`] (the crate finds the WIT at `../../wit`).
const SDK_FILES: [(&str, &str); 5] = [
    ("guest-sdk/rust/Cargo.toml", include_str!("../../../guest-sdk/rust/Cargo.toml")),
    ("guest-sdk/rust/src/lib.rs", include_str!("../../../guest-sdk/rust/src/lib.rs")),
    ("guest-sdk/rust/src/arrow.rs", include_str!("../../../guest-sdk/rust/src/arrow.rs")),
    ("guest-sdk/rust/src/columns.rs", include_str!("../../../guest-sdk/rust/src/columns.rs")),
    ("wit/plugin.wit", super::WIT),
];

/// The SDK crate's path as a scaffold's `Cargo.toml` names it.
pub fn sdk_crate_path() -> String {
    format!("{SDK_DIR}/guest-sdk/rust")
}

/// Writes the SDK into the plugin folder (files that did not change are left alone, so cargo
/// does not rebuild the SDK).
///
/// # Errors
/// Unwritable folders.
pub fn provide_sdk(dir: &Path) -> Result<(), GuestError> {
    for (path, contents) in SDK_FILES {
        write(&dir.join(SDK_DIR).join(path), contents)?;
    }
    Ok(())
}

/// Builds `output` from the crate in `dir` (a workspace member builds in its workspace).
///
/// # Errors
/// A missing target, compile errors, a crate that produces no `.wasm`.
pub fn build(dir: &Path, _manifest: &Manifest, output: &Path) -> Result<(), GuestError> {
    let cargo = toolchain::cargo_wasip2()?;
    provide_sdk(dir)?;
    let result = run_step(
        "cargo build",
        Command::new(cargo).current_dir(dir).args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ]),
    )?;
    // The artifact's path, from cargo's own report (works inside workspaces and custom target dirs).
    let wasm: Option<PathBuf> = String::from_utf8_lossy(&result.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| {
            message["manifest_path"]
                .as_str()
                .is_some_and(|p| Path::new(p).parent() == dir.canonicalize().ok().as_deref())
        })
        .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .find(|name| name.extension().is_some_and(|ext| ext == "wasm"));
    let wasm = wasm.ok_or_else(|| GuestError::Step {
        step: "cargo build".into(),
        output: "the crate produced no .wasm: it needs `[lib] crate-type = [\"cdylib\"]`".into(),
    })?;
    let io = |err: std::io::Error| GuestError::Io { path: output.to_path_buf(), reason: err.to_string() };
    std::fs::create_dir_all(output.parent().unwrap_or(dir)).map_err(io)?;
    std::fs::copy(&wasm, output).map_err(io)?;
    Ok(())
}
