//! A wrong pipeline file is refused before anything runs, with file, line, column and component.

use crate::support::Workspace;

const GOOD: &str = r#"sources:
  bids: { type: nexmark, kind: bid, events: 1000 }
transforms:
  big:
    type: filter
    inputs: [bids]
    where: "price > 1000000"
  eur: { type: select, inputs: [big], columns: ["auction", "price * 0.908 AS price_eur"] }
sinks:
  out: { type: file, inputs: [eur], path: out/eur.jsonl, format: json }
"#;

/// Loads `GOOD` with one replacement and returns the error text.
fn refuse(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "fixture lacks {from:?}");
    let ws = Workspace::new();
    let err = ws.load(&GOOD.replacen(from, to, 1)).expect_err("the pipeline must be refused");
    let text = err.to_string();
    assert!(text.contains("pipeline.yaml:"), "names the file: {text}");
    assert!(!ws.path("out").exists(), "nothing ran");
    text
}

#[test]
fn the_good_file_is_accepted() {
    let ws = Workspace::new();
    let pipeline = ws.load(GOOD).unwrap();
    let names: Vec<&str> = pipeline.graph.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bids", "big", "eur", "out"]);
    let eur = &pipeline.graph.components[2];
    assert_eq!(eur.schema.field(1).name(), "price_eur");
}

#[test]
fn unknown_key() {
    let text = refuse("    where:", "    wher:");
    assert!(text.contains(":7:5:") && text.contains("transforms.big") && text.contains("wher"), "{text}");
}

#[test]
fn a_shared_option_the_kind_does_not_take_names_the_option_and_the_kind() {
    let text = refuse("type: file, inputs: [eur],", "type: blackhole, inputs: [eur], on_error: skip,");
    assert!(
        text.contains(":10:52:") && text.contains("`on_error` is not an option of sink type `blackhole`"),
        "{text}"
    );
    let text = refuse("type: select, inputs: [big],", "type: select, inputs: [big], event_time: { column: auction },");
    assert!(text.contains("`event_time` is not an option of transform type `select`"), "{text}");
    let text = refuse("type: nexmark, kind: bid,", "type: nexmark, inputs: [eur], kind: bid,");
    assert!(text.contains(":2:34:") && text.contains("`inputs` is not an option of source type `nexmark`"), "{text}");
}

#[test]
fn unknown_type() {
    let text = refuse("type: nexmark", "type: nexmarc");
    assert!(
        text.contains(":2:17:") && text.contains("sources.bids") && text.contains("unknown source type `nexmarc`"),
        "{text}"
    );
    assert!(text.contains("nexmark, generator, file, stdin"), "lists the known types: {text}");
}

#[test]
fn missing_input() {
    let text = refuse("inputs: [big]", "inputs: [bigg]");
    assert!(
        text.contains(":8:33:") && text.contains("transforms.eur") && text.contains("unknown input `bigg`"),
        "{text}"
    );
}

#[test]
fn cyclic_inputs() {
    let text = refuse("inputs: [bids]", "inputs: [eur]");
    assert!(
        text.contains("cyclic inputs") && text.contains("big -> eur -> big") || text.contains("eur -> big -> eur"),
        "{text}"
    );
    assert!(text.contains(":4:3:") || text.contains(":8:3:"), "points at a component of the cycle: {text}");
}

#[test]
fn column_not_in_the_input_schema() {
    let text = refuse("\"price > 1000000\"", "\"prise > 1000000\"");
    assert!(text.contains(":7:12:") && text.contains("transforms.big") && text.contains("prise"), "{text}");
}

#[test]
fn expression_that_does_not_type_check() {
    let text = refuse("\"price > 1000000\"", "\"price + 1\"");
    assert!(text.contains("transforms.big") && text.contains("boolean"), "{text}");
    let text = refuse("\"price * 0.908 AS price_eur\"", "\"price * 'x' AS price_eur\"");
    assert!(text.contains(":8:60:") && text.contains("transforms.eur") && text.contains("Int64 * Utf8"), "{text}");
    assert!(!text.contains("Error during planning"), "DataFusion's category prefix is dropped: {text}");
}

#[test]
fn yaml_syntax_error() {
    let text = refuse("where: \"price > 1000000\"", "where: \"price > 1000000");
    assert!(text.contains("pipeline.yaml:"), "{text}");
}

#[test]
fn wrong_value_type_and_unknown_section() {
    let text = refuse("events: 1000", "events: many");
    assert!(text.contains(":2:"), "{text}");
    let text = refuse("transforms:", "transformers:");
    assert!(text.contains(":3:1:") && text.contains("unknown section `transformers`"), "{text}");
}

#[test]
fn duplicate_names_sinks_as_inputs_and_dead_letter_wiring() {
    let text = refuse("  eur: {", "  big: {");
    assert!(text.contains(":8:3:") && text.contains("`big` is used twice"), "{text}");
    let text = refuse("  out: {", "  eur: {");
    assert!(text.contains(":10:3:") && text.contains("`eur` is used twice"), "{text}");
    let text = refuse("inputs: [eur]", "inputs: []");
    assert!(text.contains("sinks.out") && text.contains("missing `inputs`"), "{text}");
    let ws = Workspace::new();
    let err = ws
        .load(&GOOD.replace(
            "type: nexmark, kind: bid, events: 1000",
            "type: file, path: x.jsonl, schema: { a: int64 }, on_error: dead-letter",
        ))
        .unwrap_err();
    assert!(err.to_string().contains("needs `dead_letter"), "{err}");
}

#[test]
fn every_example_pipeline_validates() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let file = entry.unwrap().path().join("pipeline.yaml");
        if file.exists() {
            weir_pipeline::load(&file, &weir_cli::registry()).unwrap_or_else(|err| panic!("{err}"));
            checked += 1;
        }
    }
    assert!(checked >= 2, "quickstart and plugins at least");
}

/// Runs `weir validate` on `pipeline` as a child whose writable memory is limited to 512 MiB
/// (`RLIMIT_DATA`: a larger allocation fails and aborts the child); returns its exit code and
/// stderr.
fn validate_child(pipeline: &str) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let ws = Workspace::new();
    let file = ws.write("p.yaml", pipeline);
    let mut command = crate::support::weir();
    command.arg("validate").arg(&file);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 512 << 20, rlim_max: 512 << 20 };
            if libc::setrlimit(libc::RLIMIT_DATA, &raw const limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let output = command.output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Issue 19 (15): a filter of 4,000 added terms ran 22 s and then overflowed the stack.
#[test]
fn a_too_deep_expression_is_refused_not_a_crash() {
    let terms = vec!["price"; 4000].join(" + ");
    let (code, stderr) = validate_child(&GOOD.replace("price > 1000000", &format!("{terms} > 0")));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("nested deeper than 256 levels") && stderr.contains("transforms.big"), "{stderr}");
}

/// Issue 19 (15): `repeat('a', 1000000000)` was folded at plan time and `weir validate` took
/// 2.9 GB; with 512 MiB of writable memory it must still validate.
#[test]
fn validate_does_not_evaluate_constant_calls() {
    let (code, stderr) = validate_child(&GOOD.replace("price > 1000000", "length(repeat('a', 1000000000)) > price"));
    assert_eq!(code, Some(0), "{stderr}");
}
