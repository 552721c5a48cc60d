#!/usr/bin/env bash
# The whole test suite, from a fresh clone: `./tests/run.sh`. `.ci/run` calls exactly this.
# Release profile on purpose: the demo command builds the same artifacts, so a session pays
# for one optimized build instead of two.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo test --release --workspace --all-targets "$@"
