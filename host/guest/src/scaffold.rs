//! `weir plugin new`: a plugin folder that builds and passes its own test out of the box.
//!
//! Every scaffold has `weir-plugin.yaml`, a README, the source, and `test/` with a pipeline, a
//! sample input and the expected output. The sample function is `greet(name)` (scalar: a
//! greeting; a blank name rejects the row, which the test pipeline skips; a NULL name gives NULL)
//! or `split_words(text)` (table: one row per word with its position).

use std::path::{Path, PathBuf};

use super::{GuestError, Language, World, write};

fn identifier(name: &str) -> String {
    name.replace('-', "_")
}

fn manifest(name: &str, language: Language, world: World, source: Option<&str>) -> String {
    let mut text = format!(
        "# The plugin's manifest: `weir plugin build` and `weir plugin test` read it.\nname: {name}\nversion: 0.1.0\ndescription: \"{}\"\nlanguage: {}\nworld: {}\n",
        match world {
            World::Scalar => "Greets people (a sample scalar UDF)",
            World::Table => "Splits text into words (a sample table UDF)",
            World::Aggregate => "The spread (max - min) of values per group (a sample aggregate UDF)",
        },
        language.name(),
        match world {
            World::Scalar => "scalar",
            World::Table => "table",
            World::Aggregate => "aggregate",
        }
    );
    if let Some(source) = source {
        text.push_str(&format!("sources: [{source}]\n"));
    }
    if matches!(language, Language::Js | Language::C) {
        text.push_str("# Signatures (JavaScript and C have no annotations to read them from).\nfunctions:\n");
        text.push_str(match world {
            World::Scalar => {
                "  greet:\n    args: [utf8]\n    returns: utf8\n    description: A greeting for `name`; a blank name rejects the row.\n"
            }
            World::Table => {
                "  split_words:\n    args: [utf8]\n    output: { word: utf8, position: int32 }\n    description: One row per whitespace-separated word.\n"
            }
            World::Aggregate => unreachable!("aggregate scaffolds are Rust"),
        });
    }
    text
}

fn source(language: Language, world: World, name: &str) -> (String, String) {
    match (language, world) {
        (Language::Rust, World::Scalar) => (
            "src/lib.rs".into(),
            format!(
                r#"//! {name}: a weir plugin in Rust.

weir_plugin::scalar_udfs! {{
    plugin: {{ name: "{name}", version: "0.1.0", description: "Greets people (a sample scalar UDF)" }},

    /// A greeting for `name`; a blank name rejects the row.
    fn greet(name: &str) -> Result<String, String> {{
        if name.trim().is_empty() {{
            return Err("the name is blank".into());
        }}
        Ok(format!("Hello, {{name}}!"))
    }}
}}
"#
            ),
        ),
        (Language::Rust, World::Aggregate) => (
            "src/lib.rs".into(),
            format!(
                r#"//! {name}: a weir plugin in Rust.
//!
//! An aggregate keeps a state per group; the host holds it as bytes (this SDK encodes the
//! struct with serde), hands it back with the group's next rows, merges partial states, and
//! asks for the final value when the window closes (or after each batch, in an `aggregate`
//! step). Bump `version` when the state's encoding changes: the host refuses to hand old
//! states to a plugin that declares another version.

use serde::{{Deserialize, Serialize}};

/// The smallest and largest value seen.
#[derive(Default, Serialize, Deserialize)]
pub struct Range {{
    lowest: Option<f64>,
    highest: Option<f64>,
}}

impl Range {{
    fn add(&mut self, value: f64) {{
        self.lowest = Some(self.lowest.map_or(value, |lowest| lowest.min(value)));
        self.highest = Some(self.highest.map_or(value, |highest| highest.max(value)));
    }}
}}

impl weir_plugin::Accumulator for Range {{
    fn merge(&mut self, other: Self) {{
        for value in [other.lowest, other.highest].into_iter().flatten() {{
            self.add(value);
        }}
    }}
}}

weir_plugin::aggregate_udfs! {{
    plugin: {{ name: "{name}", version: "0.1.0", description: "The spread (max - min) of values per group (a sample aggregate UDF)" }},

    /// The spread of `value` in the group: the largest value minus the smallest (NULL rows are
    /// skipped; a group without values gives NULL).
    fn spread(value: f64) -> Option<f64> {{
        state: Range, version: 1,
        accumulate: |state| state.add(value),
        finish: |state| state.highest.zip(state.lowest).map(|(highest, lowest)| highest - lowest),
    }}
}}
"#
            ),
        ),
        (_, World::Aggregate) => unreachable!("create refuses aggregate scaffolds in other languages"),
        (Language::Rust, World::Table) => (
            "src/lib.rs".into(),
            format!(
                r#"//! {name}: a weir plugin in Rust.

weir_plugin::table_udfs! {{
    plugin: {{ name: "{name}", version: "0.1.0", description: "Splits text into words (a sample table UDF)" }},

    /// One row per whitespace-separated word.
    fn split_words(text: &str) -> (word: String, position: i32) {{
        text.split_whitespace().enumerate().map(|(position, word)| (word.to_owned(), position as i32)).collect::<Vec<_>>()
    }}
}}
"#
            ),
        ),
        (Language::Python, World::Scalar) => (
            format!("{}.py", identifier(name)),
            format!(
                r#""""{name}: a weir plugin in Python."""

import weir


@weir.scalar
def greet(name: str) -> str:
    """A greeting for `name`; a blank name rejects the row."""
    if not name.strip():
        raise ValueError("the name is blank")
    return f"Hello, {{name}}!"
"#
            ),
        ),
        (Language::Python, World::Table) => (
            format!("{}.py", identifier(name)),
            format!(
                r#""""{name}: a weir plugin in Python."""

import weir


@weir.table(word=str, position=weir.int32)
def split_words(text: str):
    """One row per whitespace-separated word."""
    for position, word in enumerate(text.split()):
        yield word, position
"#
            ),
        ),
        (Language::Js, World::Scalar) => (
            format!("{name}.js"),
            format!(
                r#"// {name}: a weir plugin in JavaScript. Signatures are in weir-plugin.yaml.

export function greet(name) {{
  if (name.trim() === "") throw new Error("the name is blank");
  return `Hello, ${{name}}!`;
}}
"#
            ),
        ),
        (Language::Js, World::Table) => (
            format!("{name}.js"),
            format!(
                r#"// {name}: a weir plugin in JavaScript. Signatures are in weir-plugin.yaml.

export function* split_words(text) {{
  let position = 0;
  for (const word of text.split(/\s+/)) {{
    if (word !== "") yield [word, position++];
  }}
}}
"#
            ),
        ),
        (Language::C, World::Scalar) => (
            format!("{}.c", identifier(name)),
            format!(
                r#"/* {name}: a weir plugin in C. Signatures are in weir-plugin.yaml. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "weir.h"

void greet(weir_row *row) {{
    weir_str name = weir_arg_str(row, 0);
    size_t at = 0;
    while (at < name.len && isspace((unsigned char)name.ptr[at])) at++;
    if (at == name.len) {{
        weir_fail(row, "the name is blank");
        return;
    }}
    size_t len = name.len + 8; /* "Hello, " + name + "!" */
    char *text = malloc(len + 1);
    snprintf(text, len + 1, "Hello, %.*s!", (int)name.len, name.ptr);
    weir_return_str(row, text, len);
    free(text);
}}
"#
            ),
        ),
        (Language::C, World::Table) => (
            format!("{}.c", identifier(name)),
            format!(
                r#"/* {name}: a weir plugin in C. Signatures are in weir-plugin.yaml. */
#include <ctype.h>

#include "weir.h"

void split_words(weir_row *row) {{
    weir_str text = weir_arg_str(row, 0);
    int32_t position = 0;
    size_t at = 0;
    while (at < text.len) {{
        while (at < text.len && isspace((unsigned char)text.ptr[at])) at++;
        size_t start = at;
        while (at < text.len && !isspace((unsigned char)text.ptr[at])) at++;
        if (at > start) {{
            weir_emit(row);
            weir_out_str(row, 0, text.ptr + start, at - start);
            weir_out_i32(row, 1, position++);
        }}
    }}
}}
"#
            ),
        ),
    }
}

fn test_files(name: &str, world: World) -> Vec<(&'static str, String)> {
    match world {
        World::Scalar => vec![
            (
                "test/pipeline.yaml",
                format!(
                    "# `weir plugin test` runs this and compares test/out/actual.jsonl with test/expected.jsonl,\n# and the rejected rows in test/out/rejected.jsonl with test/expected-rejected.jsonl.\nplugins:\n  {name}: {{ path: ../build/{name}.wasm }}\nsources:\n  people: {{ type: file, path: input.jsonl, schema: {{ name: utf8 }} }}\ntransforms:\n  greeted: {{ type: udf, inputs: [people], plugin: {name}, function: greet, args: [name], as: greeting, on_error: dead-letter, dead_letter: rejected, parallelism: 1 }}\nsinks:\n  out: {{ type: file, inputs: [greeted], path: out/actual.jsonl }}\n  rejected: {{ type: file, path: out/rejected.jsonl }}\n"
                ),
            ),
            ("test/input.jsonl", "{\"name\":\"Ada\"}\n{\"name\":\"Grace\"}\n{\"name\":null}\n{\"name\":\"  \"}\n".into()),
            (
                "test/expected.jsonl",
                "{\"name\":\"Ada\",\"greeting\":\"Hello, Ada!\"}\n{\"name\":\"Grace\",\"greeting\":\"Hello, Grace!\"}\n{\"name\":null,\"greeting\":null}\n".into(),
            ),
            (
                "test/expected-rejected.jsonl",
                "{\"row\":{\"name\":\"  \"},\"error\":\"the name is blank\"}\n".into(),
            ),
        ],
        World::Aggregate => vec![
            (
                "test/pipeline.yaml",
                format!(
                    "# `weir plugin test` runs this and compares test/out/actual.jsonl with test/expected.jsonl:\n# groups in, the finished value per group out.\nplugins:\n  {name}: {{ path: ../build/{name}.wasm }}\nsources:\n  readings: {{ type: file, path: input.jsonl, schema: {{ sensor: utf8, value: float64 }} }}\ntransforms:\n  spreads: {{ type: aggregate, inputs: [readings], group_by: [sensor], aggregates: {{ spread: \"spread(value)\", readings: \"count(value)\" }}, parallelism: 1 }}\nsinks:\n  out: {{ type: file, inputs: [spreads], path: out/actual.jsonl }}\n"
                ),
            ),
            (
                "test/input.jsonl",
                "{\"sensor\":\"a\",\"value\":1.5}\n{\"sensor\":\"b\",\"value\":10}\n{\"sensor\":\"a\",\"value\":4}\n{\"sensor\":\"a\",\"value\":null}\n{\"sensor\":\"b\",\"value\":7.25}\n{\"sensor\":\"c\",\"value\":null}\n".into(),
            ),
            (
                "test/expected.jsonl",
                "{\"sensor\":\"a\",\"spread\":2.5,\"readings\":2}\n{\"sensor\":\"b\",\"spread\":2.75,\"readings\":2}\n{\"sensor\":\"c\",\"spread\":null,\"readings\":0}\n".into(),
            ),
        ],
        World::Table => vec![
            (
                "test/pipeline.yaml",
                format!(
                    "# `weir plugin test` runs this and compares test/out/actual.jsonl with test/expected.jsonl.\nplugins:\n  {name}: {{ path: ../build/{name}.wasm }}\nsources:\n  docs: {{ type: file, path: input.jsonl, schema: {{ id: int64, text: utf8 }} }}\ntransforms:\n  words: {{ type: flat_map, inputs: [docs], plugin: {name}, function: split_words, args: [text], parallelism: 1 }}\n  rows: {{ type: select, inputs: [words], columns: [id, word, position] }}\nsinks:\n  out: {{ type: file, inputs: [rows], path: out/actual.jsonl }}\n"
                ),
            ),
            ("test/input.jsonl", "{\"id\":1,\"text\":\"stream processing with wasm\"}\n{\"id\":2,\"text\":\"  \"}\n{\"id\":3,\"text\":null}\n".into()),
            (
                "test/expected.jsonl",
                "{\"id\":1,\"word\":\"stream\",\"position\":0}\n{\"id\":1,\"word\":\"processing\",\"position\":1}\n{\"id\":1,\"word\":\"with\",\"position\":2}\n{\"id\":1,\"word\":\"wasm\",\"position\":3}\n".into(),
            ),
        ],
    }
}

fn readme(name: &str, language: Language, world: World, source: &str) -> String {
    let function = match world {
        World::Scalar => "`greet(name)`",
        World::Table => "`split_words(text)`",
        World::Aggregate => "`spread(value)`",
    };
    let signatures = if matches!(language, Language::Js | Language::C) {
        "Signatures (argument and result types) are declared in `weir-plugin.yaml`; add a function there when you add one to the source.\n"
    } else {
        ""
    };
    format!(
        "# {name}\n\nA weir {} plugin in {}: {function} in `{source}`.\n{signatures}\n    weir plugin build .   # -> build/{name}.wasm, then the `plugin inspect` checks\n    weir plugin test .    # runs test/pipeline.yaml, compares with test/expected.jsonl\n\nUse it in a pipeline:\n\n```yaml\nplugins:\n  {name}: {{ path: path/to/{name}/build/{name}.wasm }}\n```\n",
        world.wit_name(),
        match language {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::Js => "JavaScript",
            Language::C => "C",
        }
    )
}

/// Creates the plugin folder `dir` (which must not exist) named `name`.
///
/// # Errors
/// An existing folder, an invalid name, unwritable paths.
pub fn create(dir: &Path, name: &str, language: Language, world: World) -> Result<Vec<PathBuf>, GuestError> {
    if dir.exists() {
        return Err(GuestError::Exists(dir.to_path_buf()));
    }
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(GuestError::Manifest {
            path: dir.join(super::manifest::MANIFEST),
            reason: format!("plugin name `{name}`: use letters, digits, `_` and `-`, not starting with a digit"),
        });
    }
    if world == World::Aggregate && language != Language::Rust {
        return Err(GuestError::Manifest {
            path: dir.join(super::manifest::MANIFEST),
            reason: format!(
                "aggregate plugins are written in Rust for now (the SDK's `aggregate_udfs!`); {} has no aggregate \
                 support yet",
                language.name()
            ),
        });
    }
    let (source_path, source_text) = source(language, world, name);
    let mut files: Vec<(String, String)> = vec![
        (
            super::manifest::MANIFEST.into(),
            manifest(name, language, world, (language != Language::Rust).then_some(source_path.as_str())),
        ),
        ("README.md".into(), readme(name, language, world, &source_path)),
        (".gitignore".into(), "/build/\n/target/\n/test/out/\n".into()),
        (source_path.clone(), source_text),
    ];
    if language == Language::Rust {
        files.push((
            "Cargo.toml".into(),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\n# The SDK weir provides: `weir plugin build` writes it into build/.\nweir-plugin = {{ path = \"{}\" }}\n{}\n[profile.release]\nopt-level = 3\nlto = true\ncodegen-units = 1\nstrip = true\n\n# Its own workspace, wherever the folder is.\n[workspace]\n",
                super::rust::sdk_crate_path(),
                if world == World::Aggregate {
                    "# Aggregate states are serde structs.\nserde = { version = \"1\", default-features = false, features = [\"derive\", \"alloc\"] }\n"
                } else {
                    ""
                }
            ),
        ));
    }
    files.extend(test_files(name, world).into_iter().map(|(path, text)| (path.to_owned(), text)));
    let mut written = Vec::new();
    for (path, text) in files {
        let path = dir.join(path);
        write(&path, text)?;
        written.push(path);
    }
    if language == Language::Rust {
        // So that plain `cargo build` (and an editor) work before the first `weir plugin build`.
        super::rust::provide_sdk(dir)?;
    }
    Ok(written)
}
