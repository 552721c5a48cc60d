//! Rust guests: `cargo build --release --target wasm32-wasip2` gives a component directly; the
//! component is copied to `build/<name>.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{GuestError, Manifest, run_step, toolchain};

/// Builds `output` from the crate in `dir` (a workspace member builds in its workspace).
///
/// # Errors
/// A missing target, compile errors, a crate that produces no `.wasm`.
pub fn build(dir: &Path, _manifest: &Manifest, output: &Path) -> Result<(), GuestError> {
    let cargo = toolchain::cargo_wasip2()?;
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
