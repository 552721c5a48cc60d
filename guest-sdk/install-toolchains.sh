#!/usr/bin/env bash
# Installs the guest toolchains `weir plugin build` uses, into project-local folders:
#   <tools>/python   a venv with componentize-py (Python guests)
#   <tools>/js       node_modules with @bytecodealliance/componentize-js (JavaScript guests)
# and, through apt, Debian's clang-19 + lld-19 + compiler-rt for wasm32 + wasi-libc (C guests).
# Rust guests need only `rustup target add wasm32-wasip2`.
#
# Usage: guest-sdk/install-toolchains.sh [tools-dir]   (default: .tools at the repository root)
# Then:  export WEIR_TOOLS_DIR=<tools-dir>  so `weir plugin build` finds them.
# Idempotent: a tool already at the pinned version is not reinstalled.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0

root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${1:-$root/.tools}"
mkdir -p "$tools"
tools="$(cd "$tools" && pwd)"

log() { echo "install-toolchains: $*" >&2; }

# Rust
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "rustup target add wasm32-wasip2"
    rustup target add wasm32-wasip2 >&2
fi

# Python: componentize-py in its own venv
py="$tools/python"
if ! "$py/bin/componentize-py" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
    log "componentize-py $COMPONENTIZE_PY_VERSION -> $py"
    python3 -m venv "$py"
    "$py/bin/pip" install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
fi

# JavaScript: ComponentizeJS, called through its node API by weir's build script
js="$tools/js"
if [ ! -f "$js/node_modules/@bytecodealliance/componentize-js/package.json" ] \
    || ! grep -q "\"version\": \"$COMPONENTIZE_JS_VERSION\"" "$js/node_modules/@bytecodealliance/componentize-js/package.json"; then
    log "@bytecodealliance/componentize-js $COMPONENTIZE_JS_VERSION -> $js"
    mkdir -p "$js"
    (cd "$js" && [ -f package.json ] || echo '{"name":"weir-js-toolchain","private":true}' > "$js/package.json")
    (cd "$js" && npm install --silent --no-save "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2)
fi

# C: Debian packages (needs root, as CI and the session machines have)
need_c=()
command -v clang-19 >/dev/null || need_c+=(clang-19)
command -v wasm-ld-19 >/dev/null || need_c+=(lld-19)
[ -d /usr/lib/llvm-19/lib/clang/19/lib/wasi ] || need_c+=(libclang-rt-19-dev-wasm32)
[ -f /usr/include/wasm32-wasi/stdlib.h ] || need_c+=(wasi-libc)
if [ ${#need_c[@]} -gt 0 ]; then
    log "apt-get install ${need_c[*]}"
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    $SUDO apt-get install -y -qq "${need_c[@]}" >&2 || {
        $SUDO apt-get update -qq >&2
        $SUDO apt-get install -y -qq "${need_c[@]}" >&2
    }
fi

echo "$tools"
