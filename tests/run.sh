#!/usr/bin/env bash
# The whole test suite, from a fresh clone: `./tests/run.sh`. `.ci/run` calls exactly this.
# Release profile on purpose: the demo command builds the same artifacts, so a session pays
# for one optimized build instead of two.
set -euo pipefail
cd "$(dirname "$0")/.."

# Guest toolchains into project-local folders (.tools/: componentize-py, ComponentizeJS) plus the
# wasm32-wasip2 target and Debian's clang for wasm32-wasi; idempotent.
export WEIR_TOOLS_DIR="$PWD/.tools"
guest-sdk/install-toolchains.sh "$WEIR_TOOLS_DIR" >/dev/null

# The services the connector tests talk to: the machine's own (started if down), plus a
# Kafka-protocol broker and an S3-compatible server built once per machine into
# ~/.cache/weir/service-tools (outside the checkout, so a fresh clone reuses them).
tests/services.sh

cargo fmt --all --check
cargo fmt --all --check --manifest-path plugins/Cargo.toml

# Guest plugins (no prebuilt .wasm is committed): the Rust workspace under plugins/, then every
# Python, JavaScript and C plugin folder through `weir plugin build` (which also checks them).
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
cargo build --release --bin weir
for manifest in plugins/*/weir-plugin.yaml; do
    dir="$(dirname "$manifest")"
    grep -q '^language: rust' "$manifest" && continue
    target/release/weir plugin build "$dir"
done
target/release/weir plugin build plugins/parity-rust

cargo test --release --workspace --all-targets "$@"
