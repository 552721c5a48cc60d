//! The pipeline front end: pipeline files (YAML) into the engine's job graph, given a registry of
//! component kinds.
//!
//! A pipeline is a YAML file with `sources`, `transforms` and `sinks` sections (plus optional
//! `tables`, `plugins` and `settings`), each a map of named components with a `type` and, for transforms and sinks,
//! explicit `inputs`. [`load`] turns a file into a [`Pipeline`]: every component's options are
//! typed, inputs resolved, cycles rejected, and schemas propagated from sources to sinks so that
//! expressions type-check before anything runs. Every error names the file, line, column and
//! component.

pub mod graph;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use weir_config::SpecIssue;
pub use weir_config::settings::Settings;
use weir_config::yaml;
use weir_engine::component::{PlanContext, Resources};
use weir_engine::graph::JobGraph;
use weir_engine::registry::Registry;

/// Why a pipeline file was refused. Displays as `file:line:column: component `name`: reason`.
#[derive(Debug, Clone)]
pub struct PipelineError {
    /// The pipeline file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub at: Option<(u64, u64)>,
    /// The component (`transforms.big`), when the problem is inside one.
    pub component: Option<String>,
    /// The reason.
    pub message: String,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.at {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(component) = &self.component {
            write!(f, ": component `{component}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PipelineError {}

/// A validated pipeline: the job graph the engine runs, with the plugins and dimension tables its
/// steps use (the admin API and hot swaps reach them here).
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// What the engine runs.
    pub graph: JobGraph,
    /// The job's plugins (declared under `plugins:`, or named by path in a step).
    pub plugins: Arc<weir_plugin::PluginRegistry>,
    /// The dimension tables declared under `tables:`.
    pub tables: Arc<weir_lookup::TableCatalog>,
}

/// Reads, validates and plans a pipeline file.
///
/// # Errors
/// The first problem found, with its position.
pub fn load(path: &Path, registry: &Registry) -> Result<Pipeline, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|err| PipelineError {
        file: path.to_path_buf(),
        at: None,
        component: None,
        message: format!("cannot read the pipeline file: {err}"),
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, path, &base_dir, registry)
}

/// Validates and plans pipeline text; `file` is used in errors, `base_dir` resolves paths.
///
/// # Errors
/// The first problem found, with its position.
pub fn parse(text: &str, file: &Path, base_dir: &Path, registry: &Registry) -> Result<Pipeline, PipelineError> {
    let error = |component: Option<String>, issue: SpecIssue| PipelineError {
        file: file.to_path_buf(),
        at: issue.at,
        component,
        message: issue.message,
    };
    let document = yaml::split(text).map_err(|issue| error(None, issue))?;
    let top = yaml::deserialize::<SettingsSection>(text).map_err(|issue| error(Some("settings".into()), issue))?;
    let settings = top.settings;
    let (plugins, functions) =
        load_plugins(&top.plugins, base_dir).map_err(|(name, issue)| error(Some(format!("plugins.{name}")), issue))?;
    let declared = graph::declare(&document, registry).map_err(|(component, issue)| error(component, issue))?;
    let plugins = Arc::new(plugins);
    let mut ctx = PlanContext {
        component: String::new(),
        base_dir: base_dir.to_path_buf(),
        batch_size: settings.batch_size,
        default_parallelism: settings.parallelism(),
        on_error: weir_engine::errors::ErrorPolicy::Fail,
        parallelism: None,
        resources: Resources::default(),
    };
    ctx.resources.insert(Arc::clone(&plugins));
    ctx.resources.insert(Arc::new(functions));
    let mut tables = Arc::new(weir_lookup::TableCatalog::default());
    if let Some((_, _, nodes)) = document.sections.iter().find(|(section, _, _)| section == "tables") {
        tables = Arc::new(
            weir_lookup::plan_tables(nodes, registry, &ctx).map_err(|(label, issue)| error(Some(label), issue))?,
        );
    }
    ctx.resources.insert(Arc::clone(&tables));
    let components = graph::plan(declared, &ctx).map_err(|(component, issue)| error(Some(component), issue))?;
    Ok(Pipeline { graph: JobGraph { file: file.to_path_buf(), settings, components }, plugins, tables })
}

/// A plugin declared under `plugins:`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginDecl {
    /// The `.wasm` component, relative to the pipeline file.
    path: yaml::Spanned<String>,
    /// Sandbox limits for every use of the plugin.
    limits: Option<weir_plugin::sandbox::LimitsConfig>,
    /// Pins the version: the component's SHA-256 must start with this (at least 8 hex digits),
    /// and hot swaps are refused.
    hash: Option<yaml::Spanned<String>>,
    /// When a new version is rolled back on its own.
    rollback: Option<RollbackDecl>,
}

/// `rollback:` of a plugin.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackDecl {
    /// Traps tolerated within `window` after a swap (default 3); one more rolls back.
    max_traps: Option<u64>,
    /// How long a new version is on probation (default 60s).
    #[serde(default, with = "yaml::duration_opt")]
    window: Option<std::time::Duration>,
}

/// Loads the declared plugins into the job's registry and registers their scalar and aggregate
/// functions for expressions.
fn load_plugins(
    declared: &indexmap::IndexMap<String, PluginDecl>,
    base_dir: &Path,
) -> Result<(weir_plugin::PluginRegistry, weir_ops::expr::FunctionCatalog), (String, SpecIssue)> {
    let registry = weir_plugin::PluginRegistry::default();
    let builtin = weir_ops::expr::FunctionCatalog::default();
    let mut functions = builtin.clone();
    for (name, decl) in declared {
        let fail = |message: String| (name.clone(), SpecIssue::at(&decl.path.referenced, message));
        let limits = decl.limits.as_ref().map(|l| l.resolve()).transpose().map_err(fail)?.unwrap_or_default();
        let path = base_dir.join(&decl.path.value);
        let plugin = Arc::new(weir_plugin::load(&path, limits).map_err(|err| fail(err.to_string()))?);
        if let Some(pinned) = &decl.hash {
            let wanted = pinned.value.to_ascii_lowercase();
            let at = |message: String| (name.clone(), SpecIssue::at(&pinned.referenced, message));
            if wanted.len() < 8 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(at("`hash` must be at least 8 hex digits of the component's SHA-256".into()));
            }
            if !plugin.hash.starts_with(&wanted) {
                return Err(at(format!("{} has hash {}, but the pipeline pins {wanted}", path.display(), plugin.hash)));
            }
        }
        let mut policy = weir_plugin::RollbackPolicy::default();
        if let Some(rollback) = &decl.rollback {
            policy.max_traps = rollback.max_traps.unwrap_or(policy.max_traps);
            policy.window = rollback.window.unwrap_or(policy.window);
        }
        tracing::debug!(plugin = %name, version = %plugin.info.version, cached = plugin.cached, "plugin loaded");
        // A plugin function may not take over a built-in's name (`upper`): listing a plugin once
        // replaced built-ins in every step, silently.
        let taken = plugin
            .functions
            .scalar()
            .iter()
            .map(|f| f.name.as_str())
            .find(|function| builtin.contains(function))
            .or_else(|| {
                plugin.functions.aggregate().iter().map(|f| f.name.as_str()).find(|f| builtin.contains_aggregate(f))
            });
        if let Some(function) = taken {
            return Err(fail(format!(
                "plugin function `{function}` has the name of a built-in SQL function; a plugin may not replace \
                 it: rename the function in the plugin"
            )));
        }
        let pinned = decl.hash.as_ref().map(|h| h.value.to_ascii_lowercase());
        let handle =
            Arc::new(weir_plugin::PluginHandle::new(name.clone(), Arc::clone(&plugin), limits, pinned, policy));
        // Two plugins with a function of the same name (the same function in two languages): in
        // expressions the name stays with the plugin listed first (`weir validate` says so); `udf`
        // and `flat_map` steps name their plugin and reach both.
        for (index, signature) in plugin.functions.scalar().iter().enumerate() {
            if functions.contains(&signature.name) {
                continue;
            }
            let function = weir_ops::wasm_function::WasmFunction::new(Arc::clone(&handle), limits, index as u32);
            functions.register(Arc::new(datafusion_expr::ScalarUDF::new_from_impl(function)));
        }
        for (index, signature) in plugin.functions.aggregate().iter().enumerate() {
            if functions.contains_aggregate(&signature.name) {
                continue;
            }
            let function = weir_ops::wasm_aggregate::WasmAggregate::new(Arc::clone(&handle), limits, index as u32);
            functions.register_aggregate(Arc::new(datafusion_expr::AggregateUDF::new_from_impl(function)));
        }
        registry.insert(handle);
    }
    Ok((registry, functions))
}

/// The `settings` and `plugins` sections, read from the whole document (other sections are
/// ignored here).
#[derive(Debug, serde::Deserialize)]
struct SettingsSection {
    #[serde(default)]
    settings: Settings,
    #[serde(default)]
    plugins: indexmap::IndexMap<String, PluginDecl>,
}
