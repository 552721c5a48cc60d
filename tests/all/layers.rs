//! The host's crates depend on each other in one direction only. The compiler already refuses
//! cycles; this test refuses a dependency on a crate of the same or a higher layer, so the layers
//! stay what DESIGN.md draws (and a new crate must be given a layer here).

use std::collections::BTreeMap;

/// Each host crate and its layer, bottom first. A crate may depend only on crates of lower layers
/// (so one connector never depends on another: they share only `weir-connector-support`).
const LAYERS: &[(&str, u32)] = &[
    ("weir-config", 0),
    ("weir-engine", 1),
    ("weir-formats", 2),
    ("weir-plugin", 2),
    ("weir-lookup", 2),
    ("weir-state", 2),
    ("weir-ops", 3),
    ("weir-connector-support", 3),
    ("weir-connector-amqp", 4),
    ("weir-connector-blackhole", 4),
    ("weir-connector-file", 4),
    ("weir-connector-generator", 4),
    ("weir-connector-http", 4),
    ("weir-connector-kafka", 4),
    ("weir-connector-mqtt", 4),
    ("weir-connector-mysql", 4),
    ("weir-connector-nats", 4),
    ("weir-connector-nexmark", 4),
    ("weir-connector-object-store", 4),
    ("weir-connector-postgres", 4),
    ("weir-connector-redis", 4),
    ("weir-connector-stdio", 4),
    ("weir-connector-webhook", 4),
    ("weir-pipeline", 4),
    ("weir-connectors", 5),
    ("weir-api", 5),
    ("weir-guest", 5),
    ("weir-bench", 6),
    ("weir-cli", 7),
];

#[test]
fn host_crates_depend_only_on_lower_layers() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if name == "weir" {
            continue; // the binary and the tests, above everything
        }
        let Some(&layer) = layers.get(name) else {
            wrong.push(format!("{name} has no layer in tests/all/layers.rs"));
            continue;
        };
        seen.push(name.to_owned());
        for dependency in package["dependencies"].as_array().unwrap() {
            let target = dependency["name"].as_str().unwrap();
            if let Some(&target_layer) = layers.get(target)
                && target_layer >= layer
            {
                wrong.push(format!("{name} (layer {layer}) depends on {target} (layer {target_layer})"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    assert_eq!(seen.len(), LAYERS.len(), "every layered crate is in the workspace: {seen:?}");
}
