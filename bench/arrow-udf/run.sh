#!/usr/bin/env bash
# Builds and runs the arrow-udf side of the gcd comparison (weir's side: `weir bench languages`).
# arrow-udf-python needs CPython 3.12 with its shared library: PYTHON312 points at it (this
# machine's pyenv has one).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON312="${PYTHON312:-$HOME/.pyenv/versions/3.12.1/bin/python3.12}"
export PYO3_PYTHON="$PYTHON312"
export LD_LIBRARY_PATH="$("$PYTHON312" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo run --release
