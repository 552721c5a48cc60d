#!/usr/bin/env bash
# Nexmark in weir and in Apache Flink on the same JSON-lines file, same machine, same run; checks
# that both compute equal outputs, then prints the throughput table and writes the chart
# (bench/nexmark/nexmark-vs-flink.png). Run by hand, not by CI: with the defaults it takes about
# half an hour on 2 cores. Options go to bench/nexmark/compare.py, e.g.
#   bench/nexmark-vs-flink.sh --events 1000000 --runs 1 --parallelism 1 --queries q0,q1
# Installs Flink from the Python package index into bench/.venv (about 850 MB, once); needs a JDK 11+ on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=bench/.venv
if ! "$venv/bin/python" -c 'import pyflink, matplotlib' 2>/dev/null; then
    echo "installing Apache Flink 2.3.0 and matplotlib into $venv ..." >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet apache-flink==2.3.0 matplotlib==3.11.2
fi
command -v java >/dev/null || { echo "error: Flink needs a JDK (java on PATH)" >&2; exit 1; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2 >&2
fi
cargo build --release --bin weir
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml

exec "$venv/bin/python" bench/nexmark/compare.py "$@"
