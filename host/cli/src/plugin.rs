//! `weir plugin inspect | new | build | test`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use weir_guest::{Language, World};
use weir_plugin::convert::{type_list, type_name};

/// Prints the plugin's description; exit code 2 if it cannot be loaded.
pub fn inspect(path: &Path) -> ExitCode {
    let plugin = match weir_plugin::load(path, weir_plugin::Limits::default()) {
        Ok(plugin) => plugin,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let world = plugin.world();
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
    for function in plugin.functions.scalar() {
        println!(
            "    {}({}) -> {}    {}",
            function.name,
            type_list(&function.args),
            type_name(&function.returns),
            function.description
        );
    }
    for function in plugin.functions.table() {
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
    for function in plugin.functions.aggregate() {
        println!(
            "    {}({}) -> {}    aggregate, state version {}    {}",
            function.name,
            type_list(&function.args),
            type_name(&function.returns),
            function.state_version,
            function.description
        );
    }
    println!("  imports:");
    for import in &plugin.imports {
        println!("    {import}");
    }
    let unexpected: Vec<&String> = plugin.imports.iter().filter(|name| !weir_plugin::allowed_import(name)).collect();
    // Names a pipeline would refuse: a plugin may not replace a built-in SQL function.
    let builtin = weir_ops::expr::FunctionCatalog::default();
    let shadowing: Vec<&str> = plugin
        .functions
        .scalar()
        .iter()
        .map(|f| f.name.as_str())
        .filter(|name| builtin.contains(name))
        .chain(
            plugin
                .functions
                .aggregate()
                .iter()
                .map(|f| f.name.as_str())
                .filter(|name| builtin.contains_aggregate(name)),
        )
        .collect();
    let mut refused = false;
    if unexpected.is_empty() {
        // What this can tell: what the plugin may reach. How it behaves (time, memory, state,
        // output) is bounded when it runs, by the limits of the pipeline that uses it.
        println!(
            "  reach:    only weir and WASI, which is linked with nothing granted (no files, environment, network or \
             stdio); run-time behaviour is bounded by the pipeline's limits, not checked here"
        );
    } else {
        println!("  refused:  imports outside weir and WASI: {unexpected:?}");
        refused = true;
    }
    if !shadowing.is_empty() {
        println!("  refused:  functions named like built-in SQL functions (a pipeline refuses them): {shadowing:?}");
        refused = true;
    }
    if refused { ExitCode::from(2) } else { ExitCode::SUCCESS }
}

/// `weir plugin new`.
pub fn new(name: &str, language: Language, world: World, dir: PathBuf) -> ExitCode {
    match weir_guest::scaffold::create(&dir, name, language, world) {
        Ok(files) => {
            println!("created {} ({} {} plugin):", dir.display(), language.name(), world.wit_name());
            for file in files {
                println!("  {}", file.display());
            }
            println!("next: weir plugin test {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// `weir plugin build`: exit 0 built and checked, 1 the build failed, 2 bad manifest.
pub fn build(dir: &Path, force: bool) -> ExitCode {
    match weir_guest::build_with(dir, force) {
        Ok(built) if built.up_to_date => {
            println!(
                "up to date: {} ({} {}, sha256 {}): its inputs did not change since it was built (--force rebuilds)",
                built.path.display(),
                built.plugin.info.name,
                built.plugin.info.version,
                &built.plugin.hash[..16]
            );
            ExitCode::SUCCESS
        }
        Ok(built) => {
            println!(
                "built {} in {:.1} s: {} {} ({} bytes), {} function(s), sandbox ok",
                built.path.display(),
                built.build_time.as_secs_f64(),
                built.plugin.info.name,
                built.plugin.info.version,
                built.plugin.size,
                built.plugin.functions.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => exit_for(&err),
    }
}

/// `weir plugin test`: exit 0 passed, 1 failed.
pub fn test(dir: &Path) -> ExitCode {
    match weir_guest::test::run(dir, &super::registry()) {
        Ok(passed) => {
            println!(
                "ok: {} rows as expected ({}{})",
                passed.rows,
                passed.component.display(),
                if passed.built { ", built first" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(err) => exit_for(&err),
    }
}

fn exit_for(err: &weir_guest::GuestError) -> ExitCode {
    eprintln!("error: {err}");
    match err {
        weir_guest::GuestError::Manifest { .. } | weir_guest::GuestError::Exists(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}
