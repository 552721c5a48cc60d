//! The `weir` command line: `run`, `validate`, `bench`, `plugin` and the admin commands, and
//! [`registry`], the one place where the built-in component kinds register.
//!
//! Exit codes: 0 success (also after Ctrl-C or SIGTERM with a clean drain), 1 the job failed while
//! running or did not stop within its shutdown timeout, 2 the pipeline file was refused, 130 a
//! second stop signal aborted it.

mod admin;
mod checkpoints;
mod plugin;
mod progress;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use weir_engine::registry::Registry;
use weir_engine::runner;

#[derive(Debug, Parser)]
#[command(name = "weir", version, about = "A stream processor with WebAssembly plugins")]
struct Cli {
    /// Log filter (`info`, `debug`, `weir_plugin=trace`); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline until its sources end or Ctrl-C.
    Run {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
        /// No live progress line.
        #[arg(long, short)]
        quiet: bool,
        /// Also write the end-of-run summary as JSON to this file: wall and CPU seconds of the job,
        /// peak RSS, and every component's counters (for scripts and `weir bench nexmark`).
        #[arg(long, value_name = "PATH")]
        summary_json: Option<PathBuf>,
        /// Address of the admin API (default 127.0.0.1:8686; when that is taken, the job runs
        /// without it). Any non-loopback address needs --admin-token.
        #[arg(long, env = "WEIR_ADMIN", value_name = "ADDR")]
        admin: Option<std::net::SocketAddr>,
        /// Bearer token the admin API requires (always required for uploads).
        #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Run without the admin API.
        #[arg(long, conflicts_with = "admin")]
        no_admin: bool,
        /// Watch this directory for new plugin versions (overrides `settings.plugins_dir`).
        #[arg(long, value_name = "DIR")]
        plugins_dir: Option<PathBuf>,
        /// How long a stop may drain before the job is aborted without acknowledging what was
        /// not written (exit 1); overrides `settings.shutdown_timeout` (default 60s).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        shutdown_timeout: Option<std::time::Duration>,
        /// On Ctrl-C or SIGTERM, fire the windows still open as if event time had ended
        /// (Flink's `stop --drain`); without it a stopped job publishes no partial windows.
        #[arg(long)]
        drain: bool,
        /// With `settings.checkpoint`: start from this checkpoint or savepoint,
        /// `<storage>/<job_id>/chk-<id>`, instead of the job's latest complete checkpoint.
        #[arg(long, value_name = "PATH", conflicts_with = "fresh")]
        restore: Option<String>,
        /// With `settings.checkpoint`: ignore the job's checkpoints and start with empty state.
        #[arg(long)]
        fresh: bool,
        /// Start even if the checkpoint holds state of a component the pipeline no longer has.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
    /// Take a savepoint of a running job (through its admin API) and print where it is; `weir
    /// run --restore <path>` starts from it.
    Savepoint {
        /// Stop the job once the savepoint is complete (Flink's stop-with-savepoint).
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Check a pipeline file without running it.
    Validate {
        /// The pipeline file (YAML).
        pipeline: PathBuf,
    },
    /// Measure throughput of built-in scenarios (see BENCHMARKS.md).
    Bench(weir_bench::BenchArgs),
    /// Work with WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Remove the least recently used compiled plugins until the cache fits its bound.
    Prune {
        /// The bound (default `$WEIR_CACHE_MAX_SIZE`, else 1 GiB).
        #[arg(long)]
        max_size: Option<bytesize::ByteSize>,
        /// Remove every compiled plugin.
        #[arg(long, conflicts_with = "max_size")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Print a plugin's world, version, functions with signatures, imports, size and sandbox check.
    Inspect {
        /// The component (`.wasm`).
        file: PathBuf,
    },
    /// Create a plugin folder that builds and passes its own test out of the box.
    New {
        /// The plugin's name (also the folder, unless --dir).
        name: String,
        /// The guest language.
        #[arg(long, value_enum)]
        lang: weir_guest::Language,
        /// Scalar (one value per row), table (rows per row) or aggregate (a state per group; Rust).
        #[arg(long, value_enum, default_value = "scalar")]
        kind: weir_guest::World,
        /// Where to create it (default: ./<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin folder (weir-plugin.yaml) into build/<name>.wasm and check the result.
    Build {
        /// The plugin folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Rebuild even when nothing the component is made of changed.
        #[arg(long)]
        force: bool,
    },
    /// The cache of compiled plugins.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Run a plugin's test pipeline and compare with its expected output (builds if stale).
    Test {
        /// The plugin folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// List the running job's plugins: versions, calls, traps, swaps, canaries.
    List {
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Swap in a new version of a running job's plugin (from FILE, or its file re-read).
    Reload {
        /// The plugin's name in the pipeline.
        name: String,
        /// The new component (default: the plugin's own file, re-read).
        file: Option<PathBuf>,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Restore the previous version of a running job's plugin.
    Rollback {
        /// The plugin's name in the pipeline.
        name: String,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Run FILE in the shadow of a running plugin on a sample of batches and compare (without
    /// FILE: print the running canary's report).
    Canary {
        /// The plugin's name in the pipeline.
        name: String,
        /// The candidate component.
        file: Option<PathBuf>,
        /// Fraction of batches to compare.
        #[arg(long, default_value_t = 0.1)]
        sample: f64,
        /// Wait this long, then print the report (`10s`).
        #[arg(long, value_parser = humantime::parse_duration)]
        watch: Option<std::time::Duration>,
        /// Stop the canary (prints its final report).
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Make the running canary the plugin's current version.
    Promote {
        /// The plugin's name in the pipeline.
        name: String,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
}

/// Entry point of the `weir` binary.
/// Every built-in component kind, registered here and nowhere else: the connectors' sources, sinks
/// and dimension tables, and the transforms. A pipeline's connector plugins add theirs when it
/// loads.
///
/// # Panics
/// Two built-ins with the same name and role (a programming error the test suite catches).
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    weir_connectors::register(&mut registry).expect("built-in connector kinds have unique names");
    weir_ops::register(&mut registry).expect("built-in transform kinds have unique names");
    registry
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref(), cli.log_format);
    if !matches!(cli.command, Command::Run { .. }) {
        // Commands that only print end quietly when their reader goes away (`weir validate p.yaml
        // | head -1`), like other Unix tools, instead of panicking in `println!`. `weir run` keeps
        // SIGPIPE ignored: a closed pipe is then an error of its `stdout` sink, not a sudden death.
        // SAFETY: resetting a signal to its default disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Validate { pipeline } => validate(&pipeline),
        Command::Run {
            pipeline,
            quiet,
            summary_json,
            admin,
            admin_token,
            no_admin,
            plugins_dir,
            shutdown_timeout,
            drain,
            restore,
            fresh,
            allow_non_restored_state,
        } => {
            let options = RunOptions {
                quiet,
                summary_json,
                admin: if no_admin { AdminBind::Off } else { admin.map_or(AdminBind::Default, AdminBind::Explicit) },
                admin_token,
                plugins_dir,
                shutdown_timeout,
                drain,
                restore: checkpoints::RestoreChoice { from: restore, fresh, allow_non_restored_state },
            };
            run(&pipeline, &options)
        }
        Command::Bench(args) => weir_bench::main(&args, &registry()),
        Command::Savepoint { stop, admin } => admin::main(&admin, &admin::Request::Savepoint { stop }),
        Command::Plugin(PluginCommand::Inspect { file }) => plugin::inspect(&file),
        Command::Plugin(PluginCommand::New { name, lang, kind, dir }) => {
            plugin::new(&name, lang, kind, dir.unwrap_or_else(|| PathBuf::from(&name)))
        }
        Command::Plugin(PluginCommand::Build { dir, force }) => plugin::build(&dir, force),
        Command::Plugin(PluginCommand::Test { dir }) => plugin::test(&dir),
        Command::Plugin(PluginCommand::Cache { command: CacheCommand::Prune { max_size, all } }) => {
            let bound = if all { 0 } else { max_size.map_or_else(weir_plugin::cache::max_size, |size| size.as_u64()) };
            let pruned = weir_plugin::cache::prune(bound);
            println!(
                "{}: removed {} compiled plugin(s), {} freed, {} kept (bound {})",
                weir_plugin::cache::cache_dir().display(),
                pruned.removed,
                bytesize::ByteSize(pruned.freed),
                bytesize::ByteSize(pruned.kept),
                bytesize::ByteSize(bound)
            );
            ExitCode::SUCCESS
        }
        Command::Plugin(PluginCommand::List { admin }) => admin::main(&admin, &admin::Request::List),
        Command::Plugin(PluginCommand::Reload { name, file, admin }) => {
            admin::main(&admin, &admin::Request::Reload(&name, file.as_deref()))
        }
        Command::Plugin(PluginCommand::Rollback { name, admin }) => {
            admin::main(&admin, &admin::Request::Rollback(&name))
        }
        Command::Plugin(PluginCommand::Promote { name, admin }) => admin::main(&admin, &admin::Request::Promote(&name)),
        Command::Plugin(PluginCommand::Canary { name, file, sample, watch, stop, admin }) => {
            admin::main(&admin, &admin::Request::Canary { name: &name, file: file.as_deref(), sample, watch, stop })
        }
    }
}

fn init_logging(level: Option<&str>, format: LogFormat) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(progress::LogWriter);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match weir_pipeline::load(path, &registry()) {
        Ok(pipeline) => {
            println!("{}: ok", path.display());
            for component in &pipeline.graph.components {
                let columns: Vec<String> =
                    component.schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
                println!(
                    "  {:<9} {:<16} {:<10} x{}  [{}]",
                    format!("{:?}", component.role).to_lowercase(),
                    component.name,
                    component.kind,
                    component.parallelism,
                    columns.join(", ")
                );
            }
            // Which names in expressions resolve to which plugin: the first listed that has one.
            let mut owner: std::collections::HashMap<String, String> = std::collections::HashMap::new();
            for handle in pipeline.plugins.handles() {
                let plugin = std::sync::Arc::clone(&handle.current().plugin);
                // Table functions are called by `flat_map` steps, not from SQL.
                let in_sql = plugin.kind() != weir_plugin::PluginKind::Table;
                let names: Vec<String> = plugin
                    .functions
                    .names()
                    .into_iter()
                    .filter(|_| in_sql)
                    .map(|name| match owner.entry(name.to_owned()) {
                        std::collections::hash_map::Entry::Vacant(entry) => {
                            entry.insert(handle.name().to_owned());
                            name.to_owned()
                        }
                        std::collections::hash_map::Entry::Occupied(entry) => {
                            format!("{name} (in SQL: plugin {})", entry.get())
                        }
                    })
                    .collect();
                if !names.is_empty() {
                    println!("  plugin    {:<16} SQL functions: {}", handle.name(), names.join(", "));
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}

/// Where `weir run` serves the admin API.
#[derive(Debug, Clone, Copy)]
enum AdminBind {
    /// Not at all (`--no-admin`).
    Off,
    /// On the default address, if free.
    Default,
    /// On this address, or the run fails.
    Explicit(std::net::SocketAddr),
}

#[derive(Debug)]
struct RunOptions {
    quiet: bool,
    summary_json: Option<PathBuf>,
    admin: AdminBind,
    admin_token: Option<String>,
    plugins_dir: Option<PathBuf>,
    shutdown_timeout: Option<std::time::Duration>,
    drain: bool,
    restore: checkpoints::RestoreChoice,
}

/// Starts the admin API and the plugin directory watch of a run.
async fn start_services(
    pipeline: &weir_pipeline::Pipeline,
    metrics: &weir_engine::metrics::PipelineMetrics,
    options: &RunOptions,
    stop: &CancellationToken,
    job_stop: &CancellationToken,
) -> Result<Option<weir_plugin::watch::PluginWatcher>, String> {
    let base_dir = pipeline.graph.file.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let plugins_dir = options
        .plugins_dir
        .clone()
        .or_else(|| pipeline.graph.settings.plugins_dir.as_ref().map(|dir| base_dir.join(dir)));
    let watcher = match &plugins_dir {
        Some(dir) => Some(
            weir_plugin::watch::watch(dir, std::sync::Arc::clone(&pipeline.plugins)).map_err(|err| err.to_string())?,
        ),
        None => None,
    };
    let address = match options.admin {
        AdminBind::Off => return Ok(watcher),
        AdminBind::Default => weir_api::DEFAULT_ADDRESS.parse().expect("a valid default address"),
        AdminBind::Explicit(address) => address,
    };
    let context =
        weir_api::AdminContext::new(pipeline, metrics).with_plugins_dir(plugins_dir).with_stop(job_stop.clone());
    match weir_api::serve(address, options.admin_token.clone(), context, stop.child_token()).await {
        Ok(_) => Ok(watcher),
        Err(err @ weir_api::AdminError::Bind { .. }) if matches!(options.admin, AdminBind::Default) => {
            tracing::warn!(error = %err, "running without the admin API (choose another address with --admin)");
            Ok(watcher)
        }
        Err(err) => Err(err.to_string()),
    }
}

fn run(path: &std::path::Path, options: &RunOptions) -> ExitCode {
    let mut pipeline = match weir_pipeline::load(path, &registry()) {
        Ok(pipeline) => pipeline,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(timeout) = options.shutdown_timeout {
        pipeline.graph.settings.shutdown_timeout = timeout;
    }
    pipeline.graph.settings.drain_on_stop |= options.drain;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = runner::metrics_for(&pipeline.graph);
    let stop = CancellationToken::new();
    let services = CancellationToken::new();
    let (started, cpu_at_start) = (Instant::now(), weir_engine::rusage::cpu_time());
    let outcome = runtime.block_on(async {
        // A refused admin address or plugins directory stops the run before it starts.
        let watcher = start_services(&pipeline, &metrics, options, &services, &stop).await?;
        tokio::spawn(stop_on_signals(stop.clone()));
        let progress = (!options.quiet && std::io::stderr().is_terminal())
            .then(|| tokio::spawn(progress::live(metrics.clone(), started)));
        let checkpointing = checkpoints::prepare(&pipeline.graph, &options.restore).await?;
        let result = runner::run_with(&pipeline.graph, &metrics, stop.clone(), checkpointing).await;
        if let Some(progress) = progress {
            progress.abort();
            progress::clear_line();
        }
        services.cancel();
        drop(watcher);
        Ok::<_, String>(result.map_err(|err| err.to_string()))
    });
    let result = match outcome {
        Ok(result) => result,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let (elapsed, cpu) = (started.elapsed(), weir_engine::rusage::cpu_time() - cpu_at_start);
    eprintln!("{}", progress::summary(&metrics, elapsed));
    for line in progress::plugin_metrics(&pipeline.plugins).into_iter().chain(progress::table_metrics(&pipeline.tables))
    {
        eprintln!("{line}");
    }
    if let Some(file) = &options.summary_json {
        let error = result.as_ref().err().cloned();
        let report = progress::RunReport::new(path, &metrics, elapsed, cpu, error);
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(file, json));
        if let Err(err) = written {
            eprintln!("error: cannot write the summary to {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM (what `docker stop`, systemd and Kubernetes send) both start a
/// graceful stop; a second one of either aborts at once (exit 130).
async fn stop_on_signals(stop: CancellationToken) {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .inspect_err(|err| tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops gracefully"))
        .ok();
    let mut next_signal = async || {
        let sigterm = async {
            match terminate.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.is_ok().then_some("SIGINT"),
            _ = sigterm => Some("SIGTERM"),
        }
    };
    let Some(signal) = next_signal().await else { return };
    tracing::info!(signal, "stopping: sources stop, in-flight batches drain, sinks flush (a second signal aborts)");
    stop.cancel();
    // A batch being bisected for trapping rows could hold the stop up for minutes.
    weir_plugin::call::abandon_isolation();
    if next_signal().await.is_some() {
        eprintln!("aborted");
        std::process::exit(130);
    }
}
