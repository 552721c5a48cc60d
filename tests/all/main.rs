//! weir's integration tests: one binary, real files, golden outputs.
//!
//! Pipelines are written as YAML into a temporary directory and run through the same loader and
//! engine as `weir run`; CLI behaviour (exit codes, Ctrl-C, stdin/stdout) runs the real binary.
//! Golden files live in `tests/golden/`; set `WEIR_BLESS=1` to rewrite them after an intended
//! change (and review the diff).

mod bad_input;
mod checkpoints;
mod cli;
mod connectors;
mod files;
mod graph;
mod hotswap;
mod languages;
mod layers;
mod lookup;
mod nexmark;
mod plugins;
mod support;
mod validation;
mod windows;
