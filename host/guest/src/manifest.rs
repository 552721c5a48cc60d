//! `weir-plugin.yaml`: what a plugin folder is (name, language, world, sources, signatures, test).
//!
//! Rust and Python plugins declare their functions in code (the `scalar_udfs!` macro, the
//! `@weir.scalar` decorator); JavaScript and C have no type annotations to read, so their
//! functions' signatures are written here and `weir plugin build` generates the glue.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use super::GuestError;

/// The manifest's file name in a plugin folder.
pub const MANIFEST: &str = "weir-plugin.yaml";

/// Guest languages `weir plugin build` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Rust with the `weir-plugin` crate, `cargo build --target wasm32-wasip2`.
    Rust,
    /// Python with the `weir` package, componentize-py.
    Python,
    /// JavaScript with `weir.js`, ComponentizeJS.
    Js,
    /// C (or C++) with `weir.h`, clang for wasm32-wasi and the preview1 reactor adapter.
    C,
}

impl Language {
    /// Its name in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
            Language::C => "c",
        }
    }
}

/// Which plugin world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// `scalar-udf`: one value per row.
    Scalar,
    /// `table-udf`: zero or more rows per row.
    Table,
    /// `aggregate-udf`: a state per group kept by the host (Rust only: the SDK's
    /// `aggregate_udfs!`).
    Aggregate,
}

impl World {
    /// The WIT world's name.
    pub fn wit_name(self) -> &'static str {
        match self {
            World::Scalar => "scalar-udf",
            World::Table => "table-udf",
            World::Aggregate => "aggregate-udf",
        }
    }
}

/// One function's signature (JavaScript and C plugins).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Argument types, e.g. `[int64, utf8]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Result type (scalar functions).
    pub returns: Option<String>,
    /// Output columns and their types, in order (table functions).
    pub output: Option<IndexMap<String, String>>,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Called for rows with NULL arguments too (default: such rows give NULL without a call).
    #[serde(default)]
    pub nulls: bool,
    /// JavaScript: called once per batch with whole columns (typed arrays).
    #[serde(default)]
    pub columnar: bool,
}

/// How `weir plugin test` checks the plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestSpec {
    /// A pipeline that runs the plugin over the sample input.
    pub pipeline: PathBuf,
    /// The file the pipeline writes.
    pub output: PathBuf,
    /// What it must contain (JSON lines, compared as a multiset of rows).
    pub expected: PathBuf,
    /// The dead-letter file the pipeline writes (rows the plugin rejected).
    pub rejected: PathBuf,
    /// The rows it must reject, when this file exists: `{"row": {...}, "error": "..."}` per
    /// line, where `error` is a part of the message the row was rejected with.
    pub expected_rejected: PathBuf,
}

impl Default for TestSpec {
    fn default() -> Self {
        Self {
            pipeline: "test/pipeline.yaml".into(),
            output: "test/out/actual.jsonl".into(),
            expected: "test/expected.jsonl".into(),
            rejected: "test/out/rejected.jsonl".into(),
            expected_rejected: "test/expected-rejected.jsonl".into(),
        }
    }
}

/// A parsed `weir-plugin.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Registry name; also the output file name (`build/<name>.wasm`).
    pub name: String,
    /// Semver.
    pub version: String,
    /// One line.
    #[serde(default)]
    pub description: String,
    /// The guest language.
    pub language: Language,
    /// The plugin world.
    pub world: World,
    /// Source files: the module (Python, JavaScript) or the `.c` files (C); unused for Rust.
    #[serde(default)]
    pub sources: Vec<PathBuf>,
    /// Signatures (JavaScript and C), in the order the plugin describes them.
    #[serde(default)]
    pub functions: IndexMap<String, FunctionSpec>,
    /// The self-test.
    #[serde(default)]
    pub test: TestSpec,
}

/// Type names a signature may use.
pub const TYPE_NAMES: &[&str] = &[
    "boolean",
    "int32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "utf8",
    "binary",
    "date32",
    "timestamp_s",
    "timestamp_ms",
    "timestamp_us",
    "timestamp_ns",
];

impl Manifest {
    /// Reads and checks `<dir>/weir-plugin.yaml`.
    ///
    /// # Errors
    /// A missing or malformed manifest, signatures with unknown types, a world that does not
    /// match the signatures.
    pub fn load(dir: &Path) -> Result<Self, GuestError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|err| GuestError::Manifest {
            path: path.clone(),
            reason: format!("{err} (a plugin folder has a {MANIFEST}; `weir plugin new` makes one)"),
        })?;
        let manifest: Manifest = serde_saphyr::from_str(&text)
            .map_err(|err| GuestError::Manifest { path: path.clone(), reason: err.to_string() })?;
        manifest.check().map_err(|reason| GuestError::Manifest { path, reason })?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        if self.world == World::Aggregate && self.language != Language::Rust {
            return Err(format!(
                "aggregate plugins are written in Rust for now (the SDK's `aggregate_udfs!`); {} has no aggregate \
                 support yet",
                self.language.name()
            ));
        }
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("name `{}` must be letters, digits, `_` and `-`", self.name));
        }
        let declares_in_code = matches!(self.language, Language::Rust | Language::Python);
        if declares_in_code && !self.functions.is_empty() {
            return Err(format!(
                "{} plugins declare their functions in code; remove `functions:` from the manifest",
                self.language.name()
            ));
        }
        if !declares_in_code && self.functions.is_empty() {
            return Err(format!(
                "{} plugins list their functions' signatures under `functions:`",
                self.language.name()
            ));
        }
        if !matches!(self.language, Language::Rust) && self.sources.is_empty() {
            return Err("`sources:` names the plugin's source files".into());
        }
        for (name, function) in &self.functions {
            let known = |ty: &String| {
                if TYPE_NAMES.contains(&ty.as_str()) {
                    Ok(())
                } else {
                    Err(format!("function `{name}`: unknown type `{ty}` (known: {})", TYPE_NAMES.join(", ")))
                }
            };
            function.args.iter().try_for_each(known)?;
            match (self.world, &function.returns, &function.output) {
                (World::Scalar, Some(returns), None) => known(returns)?,
                (World::Table, None, Some(output)) if !output.is_empty() => output.values().try_for_each(known)?,
                (World::Scalar, _, _) => {
                    return Err(format!("scalar function `{name}` needs `returns:` (and no `output:`)"));
                }
                (World::Table, _, _) => {
                    return Err(format!("table function `{name}` needs `output:` columns (and no `returns:`)"));
                }
                (World::Aggregate, _, _) => {
                    return Err("aggregate plugins declare their functions in code".into());
                }
            }
            if function.columnar && self.language != Language::Js {
                return Err(format!("function `{name}`: `columnar` is for JavaScript functions"));
            }
        }
        Ok(())
    }
}
