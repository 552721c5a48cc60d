#!/usr/bin/env bash
# The whole test suite, from a fresh clone: `./tests/run.sh`. `.ci/run` calls exactly this.
# Release profile on purpose: the demo command builds the same artifacts, so a session pays
# for one optimized build instead of two.
set -euo pipefail
cd "$(dirname "$0")/.."

# Guest plugins: the Wasm target, then every plugin under plugins/ (no prebuilt .wasm is committed).
rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

cargo fmt --all --check
cargo fmt --all --check --manifest-path plugins/Cargo.toml
cargo test --release --workspace --all-targets "$@"
