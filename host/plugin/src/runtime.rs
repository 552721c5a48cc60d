//! The wasmtime embedding: one shared engine, an on-disk cache of compiled components, loading
//! and describing plugins, and instances that survive traps by being re-created.
//!
//! Compiled artifacts are cached under `$WEIR_CACHE_DIR` (default `$XDG_CACHE_HOME/weir` or
//! `~/.cache/weir`), keyed by the component's SHA-256 and the engine's compatibility hash (which
//! covers the wasmtime version and configuration), so a restart loads in milliseconds instead of
//! compiling again. Instances come from an `InstancePre` with the pooling allocator.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use super::bindings::PluginInfo;
use super::sandbox::{CAPTURE_CAPACITY, Limits, PluginMetrics, StoreState};
use super::world::{self, Bindings, Functions, PluginKind, Pre};

/// How often the epoch advances; call time limits are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Maximum Wasm stack per call.
pub const WASM_STACK: usize = 512 * 1024;

/// Errors of loading or calling plugins.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// Not a component, or not one wasmtime can compile.
    #[error("{path} is not a usable WebAssembly component: {reason}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A component that does not implement a weir world.
    #[error(
        "{path} does not implement a weir plugin world (it should export one of {worlds}); it exports [{exports}] and imports [{imports}]"
    )]
    UnknownWorld {
        /// The file.
        path: PathBuf,
        /// The interfaces that make a world.
        worlds: String,
        /// What it exports.
        exports: String,
        /// What it imports.
        imports: String,
    },
    /// Linking or instantiating failed (an import weir does not provide, limits at start-up).
    #[error("plugin `{plugin}` cannot be instantiated: {reason}")]
    Instantiate {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// A call trapped (the instance is discarded).
    #[error("plugin `{plugin}` {version} function `{function}` trapped ({trap}): {reason}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// The function.
        function: String,
        /// The trap code (`interrupt` for the time limit, `unreachable` for panics, ...).
        trap: Box<str>,
        /// The time limit ended the call: not a fault of one row, so a batch is not bisected
        /// to find one.
        timed_out: bool,
        /// Details (backtrace, panic message when captured).
        reason: String,
    },
    /// The process is stopping while a trapping batch was being isolated: the batch fails,
    /// unacknowledged, rather than holding the stop up.
    #[error(
        "plugin `{plugin}` function `{function}`: stopped while isolating the rows of a batch that trapped \
         ({rows} rows still to check); the batch is not acknowledged"
    )]
    Abandoned {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// Rows of the slice that was next.
        rows: usize,
    },
    /// The plugin returned something that breaks the contract.
    #[error("plugin `{plugin}` function `{function}` broke the contract: {reason}")]
    Contract {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// What was wrong.
        reason: String,
    },
}

impl From<PluginError> for weir_engine::component::RuntimeError {
    fn from(err: PluginError) -> Self {
        Self::Plugin(Box::new(err))
    }
}

/// An engine with weir's configuration; `epochs: false` only for measuring what epoch
/// interruption costs (such an engine cannot stop a runaway plugin).
pub fn build_engine(epochs: bool) -> Engine {
    let mut pooling = PoolingAllocationConfig::default();
    pooling.total_component_instances(1000).total_core_instances(2000).total_memories(2000).total_tables(2000);
    pooling.max_memory_size(1 << 32);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(epochs)
        .max_wasm_stack(WASM_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).expect("the wasmtime configuration is valid")
}

/// The engine every plugin shares, with its epoch ticker.
pub fn engine() -> &'static Engine {
    static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
        let engine = build_engine(true);
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawning the epoch thread");
        engine
    });
    &ENGINE
}

use super::cache;
pub use super::cache::cache_dir;

/// A loaded, described plugin, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    /// The file it came from.
    pub path: PathBuf,
    /// Hex SHA-256 of the component.
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Its self-description.
    pub info: PluginInfo,
    /// Its functions, by world.
    pub functions: Functions,
    /// What it imports (for `weir plugin inspect`).
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// Time to compile, or to load from the cache.
    pub load_time: Duration,
    /// Whether the compiled artifact came from the cache.
    pub cached: bool,
    /// How long an instantiation took at load (callers keep a spare when it is slow).
    pub instantiate_time: Duration,
    pre: Pre,
    /// What the plugin reported through `counter-add` and `gauge-set` (all its instances).
    pub metrics: Arc<PluginMetrics>,
    engine: Engine,
    epochs: bool,
}

impl Plugin {
    /// How its functions are called.
    pub fn kind(&self) -> PluginKind {
        self.functions.kind()
    }

    /// The world it implements (`scalar-udf`), as named in `wit/plugin.wit`.
    pub fn world(&self) -> &'static str {
        self.pre.world()
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("name", &self.info.name)
            .field("hash", &self.hash)
            .finish()
    }
}

fn compile_error(path: &Path, reason: impl std::fmt::Display) -> PluginError {
    PluginError::Compile { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Loads a component: from the compile cache when possible, then links and describes it under
/// `limits` (the plugin's: a plugin that needs 200 MiB at start loads with `limits.memory:
/// 512MiB`, and `describe` gets `limits.time`).
///
/// # Errors
/// Unreadable, oversized (`limits.component`) or broken components, core modules, unknown
/// worlds, failing `describe`.
pub fn load(path: &Path, limits: Limits) -> Result<Plugin, PluginError> {
    load_with(path, engine(), true, true, limits)
}

/// Loads a component into a given engine, optionally bypassing the compile cache (benchmarks).
///
/// # Errors
/// As for [`load`].
pub fn load_with(
    path: &Path,
    engine: &Engine,
    epochs: bool,
    use_cache: bool,
    limits: Limits,
) -> Result<Plugin, PluginError> {
    let unreadable = |err: std::io::Error| PluginError::Read { path: path.to_path_buf(), reason: err.to_string() };
    // Compiling costs about three times the component's size in memory (a 1 GB data segment
    // once took 3 GB): refuse oversized files before reading them.
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > limits.component {
        return Err(compile_error(
            path,
            format!(
                "the component is {}, over limits.component ({}); raise it on the plugin if this is intended",
                bytesize::ByteSize(size),
                bytesize::ByteSize(limits.component)
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    match bytes.get(4..8) {
        Some([0x0d, 0x00, 0x01, 0x00]) => {}
        Some([0x01, 0x00, 0x00, 0x00]) => {
            return Err(compile_error(
                path,
                "it is a core WebAssembly module, not a component (build for wasm32-wasip2, or wrap it with `wasm-tools component new`)",
            ));
        }
        _ => return Err(compile_error(path, "not WebAssembly (bad magic number)")),
    }
    let hash = hex(&Sha256::digest(&bytes));
    let started = Instant::now();
    let (component, to_cache) = if use_cache {
        compile_cached(engine, path, &bytes, &hash)?
    } else {
        (Component::new(engine, &bytes).map_err(|err| compile_error(path, format!("{err:#}")))?, None)
    };
    let cached = use_cache && to_cache.is_none();
    let load_time = started.elapsed();

    let component_type = component.component_type();
    let exports: Vec<String> = component_type.exports(engine).map(|(name, _)| name.to_string()).collect();
    let imports: Vec<String> = component_type.imports(engine).map(|(name, _)| name.to_string()).collect();
    let Some(&(_, link)) = world::WORLDS.iter().find(|(export, _)| exports.iter().any(|e| e == export)) else {
        return Err(PluginError::UnknownWorld {
            path: path.to_path_buf(),
            worlds: world::exports(),
            exports: exports.join(", "),
            imports: imports.join(", "),
        });
    };

    let instantiate_error = |reason: String| PluginError::Instantiate { plugin: path.display().to_string(), reason };
    let mut linker: Linker<StoreState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|err| instantiate_error(format!("{err:#}")))?;
    forbid_blocking(&mut linker).map_err(|err| instantiate_error(format!("{err:#}")))?;
    deny_http(&mut linker, &component, engine).map_err(|err| instantiate_error(format!("{err:#}")))?;
    let pre = link(&mut linker, &component).map_err(|err| instantiate_error(format!("{err:#}")))?;
    let metrics = Arc::new(PluginMetrics::default());
    let mut plugin = Plugin {
        path: path.to_path_buf(),
        hash,
        size: bytes.len() as u64,
        info: PluginInfo { name: String::new(), version: String::new(), description: String::new() },
        functions: Functions::Scalar(Vec::new()),
        imports,
        exports,
        load_time,
        cached,
        instantiate_time: Duration::ZERO,
        pre,
        metrics,
        engine: engine.clone(),
        epochs,
    };
    let mut instance = Instance::new(Arc::new(plugin.clone()), limits)?;
    // The second instantiation is the representative one (the first maps the memory image).
    let started = Instant::now();
    drop(Instance::new(Arc::new(plugin.clone()), limits)?);
    plugin.instantiate_time = started.elapsed();
    // A failing describe: the guest's own words (a panic message) first, then the trap.
    let describe_error = |instance: &Instance, err: wasmtime::Error| {
        let printed = instance.stderr_since(0);
        let reason = if printed.is_empty() { format!("{err:#}") } else { format!("{printed} ({err:#})") };
        instantiate_error(format!("describe failed: {reason}"))
    };
    let (info, functions) =
        instance.bindings.describe(&mut instance.store).map_err(|err| describe_error(&instance, err))?;
    plugin.info = info;
    plugin.functions = functions;
    // Only components that loaded are cached: a refused one would stay on disk for nothing.
    if let Some(artifact) = to_cache {
        cache::store(&component, &artifact);
    }
    Ok(plugin)
}

/// Replaces the only WASI functions that can block in the host with ones that trap: waiting on
/// a pollable (`poll`, `pollable.block`, which is how a guest sleeps). Epoch interruption cannot
/// stop a call while it waits inside the host, so a UDF may not wait at all; everything else
/// weir links returns at once (no files, sockets or stdin are granted; output is buffered).
fn forbid_blocking(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap("poll", |_store, (_pollables,): (Vec<Resource<DynPollable>>,)| -> wasmtime::Result<(Vec<u32>,)> {
        Err(wasmtime::Error::msg("plugins may not wait (wasi:io/poll.poll): a UDF must not sleep or block"))
    })?;
    poll.func_wrap(
        "[method]pollable.block",
        |_store, (_pollable,): (Resource<DynPollable>,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(
                "plugins may not wait (wasi:io/poll.pollable.block): a UDF must not sleep or block",
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A resource type for `wasi:http` handles no plugin can ever obtain.
struct HttpDenied;

/// Links whatever the component imports from `wasi:http` to functions that trap.
///
/// ComponentizeJS (StarlingMonkey) components built with HTTP enabled import `wasi:http/types`
/// and `wasi:http/outgoing-handler`; a UDF gets no network, so the imports exist but every call
/// fails. Only `wasi:http` is stubbed, by its exact imported names: stubbing other WASI
/// interfaces this way would shadow the semver-compatible real ones. `wasi:http/types` re-exports
/// `wasi:io` resources (streams, pollables, errors): those are linked to the host's real types so
/// they match the `wasi:io` imports; its own resources get a type no plugin can ever obtain.
fn deny_http(linker: &mut Linker<StoreState>, component: &Component, engine: &Engine) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};

    let host_io = |interface: &str, resource: &str| -> Option<ResourceType> {
        match (interface.split('@').next()?, resource) {
            ("wasi:io/poll", "pollable") => Some(ResourceType::host::<DynPollable>()),
            ("wasi:io/streams", "input-stream") => Some(ResourceType::host::<DynInputStream>()),
            ("wasi:io/streams", "output-stream") => Some(ResourceType::host::<DynOutputStream>()),
            ("wasi:io/error", "error") => Some(ResourceType::host::<IoError>()),
            _ => None,
        }
    };
    let component_type = component.component_type();
    let imports: Vec<_> = component_type.imports(engine).collect();
    // The component's view of each wasi:io resource -> the host type weir links for it.
    let mut io_resources: Vec<(ResourceType, ResourceType)> = Vec::new();
    for (name, item) in &imports {
        let ComponentItem::ComponentInstance(instance) = &item.ty else { continue };
        for (export, item) in instance.exports(engine) {
            if let (ComponentItem::Resource(ty), Some(host)) = (&item.ty, host_io(name, export)) {
                io_resources.push((*ty, host));
            }
        }
    }
    for (name, item) in imports {
        if !name.starts_with("wasi:http/") {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
        let mut linked = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    linked.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::Error::msg(format!("plugins have no network access ({what})")))
                    })?;
                }
                ComponentItem::Resource(ty) => {
                    let host = io_resources
                        .iter()
                        .find(|(theirs, _)| *theirs == ty)
                        .map_or_else(ResourceType::host::<HttpDenied>, |(_, host)| *host);
                    linked.resource(export, host, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The component from the compile cache, or compiled now together with where its artifact goes
/// once the component is accepted.
fn compile_cached(
    engine: &Engine,
    path: &Path,
    bytes: &[u8],
    hash: &str,
) -> Result<(Component, Option<PathBuf>), PluginError> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let artifact = cache_dir().join(format!("{hash}-{:016x}.cwasm", hasher.finish()));
    if artifact.exists() {
        // SAFETY: the artifact was written by `Component::serialize` of this engine
        // configuration (the file name carries the compatibility hash) and is only read here.
        match unsafe { Component::deserialize_file(engine, &artifact) } {
            Ok(component) => {
                cache::touch(&artifact);
                return Ok((component, None));
            }
            Err(err) => {
                tracing::warn!(artifact = %artifact.display(), error = %err, "ignoring an unusable cached artifact")
            }
        }
    }
    // Python and JavaScript components take 10-25 s to compile: say so, once per component.
    tracing::info!(
        plugin = %path.display(),
        size = %bytesize::ByteSize(bytes.len() as u64),
        "compiling the plugin (first load of this component; later loads use the cache)"
    );
    let started = Instant::now();
    let component = Component::new(engine, bytes).map_err(|err| compile_error(path, format!("{err:#}")))?;
    tracing::info!(plugin = %path.display(), seconds = started.elapsed().as_secs_f64(), "compiled the plugin");
    Ok((component, Some(artifact)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One live instance of a plugin, with its own store and limits.
pub struct Instance {
    plugin: Arc<Plugin>,
    limits: Limits,
    store: Store<StoreState>,
    bindings: Bindings,
    logged: (usize, usize),
}

impl Instance {
    /// A fresh instance (microseconds with the pooling allocator).
    ///
    /// # Errors
    /// Instantiation failures (for example a start function over the limits).
    pub fn new(plugin: Arc<Plugin>, limits: Limits) -> Result<Self, PluginError> {
        let name: Arc<str> = Arc::from(plugin.info.name.as_str());
        let mut store = Store::new(&plugin.engine, StoreState::new(name, &limits, Arc::clone(&plugin.metrics)));
        store.limiter(StoreState::limiter);
        if plugin.epochs {
            store.set_epoch_deadline(deadline_ticks(limits.time));
        }
        let failed = |err: wasmtime::Error| PluginError::Instantiate {
            plugin: plugin.path.display().to_string(),
            reason: format!("{err:#}"),
        };
        let bindings = plugin.pre.instantiate(&mut store).map_err(failed)?;
        Ok(Self { plugin, limits, store, bindings, logged: (0, 0) })
    }

    /// Linear memory this instance holds (bytes).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes()
    }

    /// The plugin.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Runs one export call under the time limit, forwards what the guest printed, and turns
    /// a trap into a [`PluginError::Trap`].
    pub(crate) fn guarded<R>(
        &mut self,
        function: u32,
        call: impl FnOnce(&Bindings, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        if self.plugin.epochs {
            self.store.set_epoch_deadline(deadline_ticks(self.limits.time));
        }
        let stderr_before = self.logged.1;
        let result = call(&self.bindings, &mut self.store);
        match result {
            Ok(value) => {
                self.forward_output();
                Ok(value)
            }
            Err(err) => {
                // What the guest printed on stderr during a trapping call is the trap's reason
                // (the panic message): it goes into the error, not a second time into the log.
                let trap = self.trap(function, &err, stderr_before);
                self.logged.1 = self.store.data().stderr.contents().len();
                self.forward_output();
                Err(trap)
            }
        }
    }

    /// Whether captured output is filling up: the caller recycles the instance.
    pub fn needs_recycling(&self) -> bool {
        self.logged.0.max(self.logged.1) > CAPTURE_CAPACITY / 2
    }

    pub(crate) fn function_name(&self, function: u32) -> String {
        let names = self.plugin.functions.names();
        names.get(function as usize).map_or_else(|| format!("#{function}"), |name| (*name).to_owned())
    }

    /// What the guest printed on stderr since `before` (bytes), as one line without Rust's
    /// backtrace hint.
    fn stderr_since(&self, before: usize) -> String {
        let contents = self.store.data().stderr.contents();
        let printed = String::from_utf8_lossy(contents.get(before..).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = printed
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("note: run with"))
            .collect();
        lines.join(" ")
    }

    fn trap(&self, function: u32, err: &wasmtime::Error, stderr_before: usize) -> PluginError {
        let (trap, mut reason) = match err.downcast_ref::<Trap>() {
            Some(trap) => (trap_name(*trap).into_boxed_str(), trap.to_string()),
            None => ("error".into(), format!("{err:#}")),
        };
        let timed_out = err.downcast_ref::<Trap>() == Some(&Trap::Interrupt);
        // What the guest printed during this call (a panic message) says more than the trap.
        let printed = self.stderr_since(stderr_before);
        if !printed.is_empty() {
            reason = format!("{printed} ({reason})");
        }
        PluginError::Trap {
            plugin: self.plugin.info.name.clone(),
            version: self.plugin.info.version.clone(),
            function: self.function_name(function),
            trap,
            timed_out,
            reason,
        }
    }

    /// Names the instance's output in the log: the plugin's name in the pipeline and the step
    /// that calls it.
    pub fn set_origin(&mut self, plugin: &Arc<str>, step: &Arc<str>) {
        let state = self.store.data_mut();
        if !Arc::ptr_eq(&state.plugin, plugin) {
            state.plugin = Arc::clone(plugin);
        }
        if !Arc::ptr_eq(&state.step, step) {
            state.step = Arc::clone(step);
        }
    }

    /// Sends new guest stdout/stderr lines to the host log.
    fn forward_output(&mut self) {
        let state = self.store.data();
        let (plugin, step) = (&*state.plugin, &*state.step);
        for (stream, pipe, seen) in
            [("stdout", &state.stdout, &mut self.logged.0), ("stderr", &state.stderr, &mut self.logged.1)]
        {
            // Whole lines only: the end of a line still being written waits for the rest.
            let contents = pipe.contents();
            let Some(end) = contents.get(*seen..).and_then(|new| new.iter().rposition(|&b| b == b'\n')) else {
                continue;
            };
            for line in String::from_utf8_lossy(&contents[*seen..*seen + end]).lines() {
                state.metrics.log_guest(plugin, step, tracing::Level::INFO, stream, line);
            }
            *seen += end + 1;
        }
    }
}

fn deadline_ticks(limit: Duration) -> u64 {
    (limit.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1
}

fn trap_name(trap: Trap) -> String {
    match trap {
        Trap::Interrupt => "time limit exceeded (interrupt)".into(),
        Trap::StackOverflow => "stack overflow".into(),
        Trap::UnreachableCodeReached => "unreachable (a panic or abort in the plugin)".into(),
        Trap::MemoryOutOfBounds => "memory out of bounds".into(),
        other => other.to_string(),
    }
}
