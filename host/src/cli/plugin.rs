//! `weir plugin inspect <file.wasm>`: what a plugin is, offers and needs.

use std::path::Path;
use std::process::ExitCode;

use crate::plugin::convert::{type_list, type_name};
use crate::plugin::{self, PluginKind};

/// Imports a plugin may have: weir's host interface, and WASI, which weir links with a context
/// that grants nothing (no files, environment, network or stdio).
fn allowed_import(name: &str) -> bool {
    name.starts_with("weir:plugin/") || name.starts_with("wasi:")
}

/// Prints the plugin's description; exit code 2 if it cannot be loaded.
pub fn inspect(path: &Path) -> ExitCode {
    let plugin = match plugin::load(path) {
        Ok(plugin) => plugin,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let world = match plugin.kind {
        PluginKind::Scalar => "scalar-udf",
        PluginKind::Table => "table-udf",
    };
    println!("{}", path.display());
    println!("  plugin:   {} {} — {}", plugin.info.name, plugin.info.version, plugin.info.description);
    println!("  world:    weir:plugin/{world}@0.1.0");
    println!("  size:     {} bytes, sha256 {}", plugin.size, plugin.hash);
    println!(
        "  compiled: {:.1} ms ({})",
        plugin.load_time.as_secs_f64() * 1000.0,
        if plugin.cached { "from the cache" } else { "compiled now, cached" }
    );
    println!("  functions:");
    for function in &plugin.scalar {
        println!(
            "    {}({}) -> {}    {}",
            function.name,
            type_list(&function.args),
            type_name(&function.returns),
            function.description
        );
    }
    for function in &plugin.table {
        let output: Vec<String> =
            function.output.iter().map(|f| format!("{} {}", f.name, type_name(&f.data_type))).collect();
        println!(
            "    {}({}) -> rows({})    {}",
            function.name,
            type_list(&function.args),
            output.join(", "),
            function.description
        );
    }
    println!("  imports:");
    for import in &plugin.imports {
        println!("    {import}");
    }
    let unexpected: Vec<&String> = plugin.imports.iter().filter(|name| !allowed_import(name)).collect();
    if unexpected.is_empty() {
        println!("  sandbox:  ok (WASI is linked with nothing granted: no files, environment, network or stdio)");
        ExitCode::SUCCESS
    } else {
        println!("  sandbox:  refused: imports outside weir and WASI: {unexpected:?}");
        ExitCode::from(2)
    }
}
