//! The plugin registry of a running job: every plugin by name, its versions, the version that
//! serves now, and the rules for replacing it while the job runs (hot swap, rollback, canary).
//!
//! Steps never hold a plugin directly. They hold a [`PluginHandle`] and read its current
//! [`Version`] once per batch (one atomic load): a swap stores a new version, calls in progress
//! finish on the one they started with, and each subtask's next batch runs on the new one, so
//! no batch is processed twice or skipped. Before a version is stored it must fit every use the
//! job makes of the plugin ([`Use`]: same functions with the same signatures, the same
//! `state-version` for aggregates whose state the host keeps) and instantiate under every
//! use's limits; otherwise it is refused and the old version keeps serving.
//!
//! A new version is on probation for [`RollbackPolicy::window`]: while it is, a batch it traps
//! on (or cannot instantiate for) is run again on the version it replaced, so no row is lost,
//! and after more than [`RollbackPolicy::max_traps`] traps the old version is restored for
//! every subtask. Versions are named by the SHA-256 of the component (`hash`) plus the version
//! the plugin declares.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use arrow::datatypes::{DataType as ArrowType, Field};
use indexmap::IndexMap;

use super::canary::Canary;
use super::{Instance, Limits, Plugin, PluginError, PluginKind};
use weir_engine::metrics::LatencyHistogram;

/// How many earlier versions a plugin keeps for `rollback`.
pub const KEPT_VERSIONS: usize = 8;

/// When a new version is rolled back on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// Traps tolerated during the window; one more restores the previous version.
    pub max_traps: u64,
    /// How long after a swap the new version is on probation.
    pub window: Duration,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self { max_traps: 3, window: Duration::from_secs(60) }
    }
}

/// Why a version was not installed (or a registry operation could not be done).
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The component could not be loaded at all.
    #[error(transparent)]
    Load(#[from] PluginError),
    /// It does not fit how the job uses the plugin.
    #[error("plugin `{plugin}`: the new version {version} is refused: {reason}")]
    Incompatible {
        /// The plugin.
        plugin: String,
        /// The refused version.
        version: String,
        /// What does not fit.
        reason: String,
    },
    /// The pipeline pinned a hash.
    #[error("plugin `{plugin}` is pinned to hash {pinned} by the pipeline; remove `hash:` to allow swaps")]
    Pinned {
        /// The plugin.
        plugin: String,
        /// The pinned hash prefix.
        pinned: String,
    },
    /// No such plugin in the job.
    #[error("unknown plugin `{0}`")]
    Unknown(String),
    /// Nothing to roll back to.
    #[error("plugin `{0}` has no earlier version to roll back to")]
    NoHistory(String),
    /// `promote` or a report without a canary.
    #[error("plugin `{0}` has no canary running")]
    NoCanary(String),
    /// A canary of a kind that cannot be shadowed.
    #[error("plugin `{plugin}`: {reason}")]
    Unsupported {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: String,
    },
}

/// What a use needs from a function, in Arrow terms.
#[derive(Debug, Clone, PartialEq)]
pub enum FunctionShape {
    /// A scalar function.
    Scalar {
        /// Argument types.
        args: Vec<ArrowType>,
        /// Result type.
        returns: ArrowType,
    },
    /// A table function.
    Table {
        /// Argument types.
        args: Vec<ArrowType>,
        /// Output columns.
        output: Vec<Field>,
    },
    /// An aggregate function.
    Aggregate {
        /// Argument types.
        args: Vec<ArrowType>,
        /// Result type.
        returns: ArrowType,
        /// Encoding of the state the host keeps.
        state_version: u32,
    },
}

impl std::fmt::Display for FunctionShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |types: &[ArrowType]| types.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Self::Scalar { args, returns } => write!(f, "({}) -> {returns}", list(args)),
            Self::Table { args, output } => {
                let columns: Vec<String> = output.iter().map(|c| format!("{}: {}", c.name(), c.data_type())).collect();
                write!(f, "({}) -> rows of ({})", list(args), columns.join(", "))
            }
            Self::Aggregate { args, returns, state_version } => {
                write!(f, "({}) -> {returns}, state version {state_version}", list(args))
            }
        }
    }
}

/// Function `name` of `plugin`: its index and shape, if the plugin has it.
pub fn function_shape(plugin: &Plugin, name: &str) -> Option<(u32, FunctionShape)> {
    plugin.functions.shape(name)
}

/// One way the job uses a plugin: a step calling a function (or SQL that may call it).
#[derive(Debug, Clone)]
pub struct Use {
    /// Who uses it (`transforms.tag`, or `SQL` for functions registered for expressions).
    pub user: String,
    /// The function.
    pub function: String,
    /// What the use was planned against.
    pub shape: FunctionShape,
    /// The limits its instances run under.
    pub limits: Limits,
    /// Whether the use is real: functions offered to SQL only count once an expression calls
    /// them (set by the planner).
    pub active: Arc<AtomicBool>,
}

/// Counters of one version.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// Batch calls (`plugin_calls_total`).
    pub calls: AtomicU64,
    /// Rows passed in.
    pub rows: AtomicU64,
    /// Traps (`plugin_traps_total`).
    pub traps: AtomicU64,
    /// Call durations (`plugin_call_seconds`).
    pub call_seconds: LatencyHistogram,
}

impl VersionStats {
    /// Counts one call of `rows` rows that took `elapsed`.
    pub fn record_call(&self, rows: usize, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.call_seconds.record(elapsed);
    }
}

/// One installed version of a plugin.
#[derive(Debug)]
pub struct Version {
    /// The loaded component.
    pub plugin: Arc<Plugin>,
    /// Increases with every install; callers compare it to notice a swap.
    pub generation: u64,
    /// Where it came from (`pipeline`, `watched <path>`, `reload <path>`, `upload`, `canary`).
    pub origin: String,
    /// When it was installed.
    pub installed_at: SystemTime,
    installed: Instant,
    /// The version it replaced while on probation (cleared when it is replaced in turn).
    fallback: ArcSwapOption<Version>,
    probation_traps: AtomicU64,
    /// Its counters.
    pub stats: VersionStats,
}

impl Version {
    fn new(plugin: Arc<Plugin>, generation: u64, origin: String, fallback: Option<Arc<Version>>) -> Self {
        Self {
            plugin,
            generation,
            origin,
            installed_at: SystemTime::now(),
            installed: Instant::now(),
            fallback: ArcSwapOption::new(fallback),
            probation_traps: AtomicU64::new(0),
            stats: VersionStats::default(),
        }
    }

    /// `<declared version>+<first 12 hex digits of the hash>`, as the API and logs show it.
    pub fn label(&self) -> String {
        format!("{}+{}", self.plugin.info.version, &self.plugin.hash[..12])
    }
}

/// A registry event, kept for the admin API (the last few per plugin).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwapEvent {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// `swap`, `rollback`, `automatic-rollback`, `refused`, `canary`, `promote`.
    pub action: String,
    /// The version concerned.
    pub version: String,
    /// Details.
    pub detail: String,
}

/// Registry-wide counters of one plugin.
#[derive(Debug, Default)]
pub struct HandleStats {
    /// Versions installed after the first (`plugin_swaps_total`).
    pub swaps: AtomicU64,
    /// Restores of an earlier version, asked for or automatic (`plugin_rollbacks_total`).
    pub rollbacks: AtomicU64,
    /// Of those, automatic ones.
    pub automatic_rollbacks: AtomicU64,
    /// Versions refused (`plugin_refused_versions_total`).
    pub refused: AtomicU64,
    /// Bytes of aggregate state the host keeps for the plugin, all groups of all steps
    /// (checked against `limits.state`).
    pub state_bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct HandleState {
    /// Earlier versions, newest last.
    history: Vec<Arc<Version>>,
    uses: Vec<Use>,
    next_generation: u64,
    events: VecDeque<SwapEvent>,
}

/// A named plugin of the job and its versions.
#[derive(Debug)]
pub struct PluginHandle {
    name: String,
    kind: PluginKind,
    /// The limits declared for the plugin (steps may override theirs).
    pub limits: Limits,
    /// The path it was declared with (where `reload` without a file reads from).
    pub path: PathBuf,
    pinned: Option<String>,
    /// Automatic rollback rules.
    pub policy: RollbackPolicy,
    current: ArcSwap<Version>,
    state: Mutex<HandleState>,
    canary: ArcSwapOption<Canary>,
    /// Counters.
    pub stats: HandleStats,
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl PluginHandle {
    /// A handle whose first version is `plugin`.
    pub fn new(
        name: String,
        plugin: Arc<Plugin>,
        limits: Limits,
        pinned: Option<String>,
        policy: RollbackPolicy,
    ) -> Self {
        let path = plugin.path.clone();
        let kind = plugin.kind();
        let first = Arc::new(Version::new(plugin, 1, "pipeline".into(), None));
        Self {
            name,
            kind,
            limits,
            path,
            pinned,
            policy,
            current: ArcSwap::new(first),
            state: Mutex::new(HandleState { next_generation: 2, ..HandleState::default() }),
            canary: ArcSwapOption::empty(),
            stats: HandleStats::default(),
        }
    }

    /// A handle over one fixed plugin, outside any registry (benchmarks, canary workers).
    pub fn fixed(plugin: Arc<Plugin>, limits: Limits) -> Arc<Self> {
        Arc::new(Self::new(plugin.info.name.clone(), plugin, limits, None, RollbackPolicy::default()))
    }

    /// The registry name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world every version implements.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The hash prefix the pipeline pinned, if any.
    pub fn pinned(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// The version serving now.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Earlier versions, newest last.
    pub fn history(&self) -> Vec<Arc<Version>> {
        self.lock().history.clone()
    }

    /// How the job uses the plugin.
    pub fn uses(&self) -> Vec<Use> {
        self.lock().uses.clone()
    }

    /// Recent events, oldest first.
    pub fn events(&self) -> Vec<SwapEvent> {
        self.lock().events.iter().cloned().collect()
    }

    /// The canary running beside the current version, if any.
    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandleState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn event(state: &mut HandleState, action: &str, version: &Version, detail: String) {
        Self::event_for(state, action, version.label(), detail);
    }

    fn event_for(state: &mut HandleState, action: &str, version: String, detail: String) {
        if state.events.len() == 32 {
            state.events.pop_front();
        }
        state.events.push_back(SwapEvent {
            at: unix_seconds(SystemTime::now()),
            action: action.into(),
            version,
            detail,
        });
    }

    /// Counts and records a file that could not even be loaded as a new version.
    pub fn refuse_unloadable(&self, error: &PluginError) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        Self::event_for(&mut self.lock(), "refused", "(not loadable)".into(), error.to_string());
        tracing::warn!(plugin = %self.name, error = %error, "new plugin version refused; the current one keeps serving");
    }

    /// Records a use made at planning time; returns the flag that says it is live.
    pub fn register_use(
        &self,
        user: String,
        function: String,
        shape: FunctionShape,
        limits: Limits,
        active: bool,
    ) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(active));
        self.lock().uses.push(Use { user, function, shape, limits, active: Arc::clone(&flag) });
        flag
    }

    /// Whether `candidate` can replace the current version: same world, every live use's
    /// function present with the same shape, instantiable under every use's limits.
    ///
    /// # Errors
    /// [`SwapError::Pinned`] or [`SwapError::Incompatible`] naming what does not fit.
    pub fn check(&self, candidate: &Plugin) -> Result<(), SwapError> {
        if let Some(pinned) = &self.pinned {
            return Err(SwapError::Pinned { plugin: self.name.clone(), pinned: pinned.clone() });
        }
        let refuse = |reason: String| SwapError::Incompatible {
            plugin: self.name.clone(),
            version: format!("{}+{}", candidate.info.version, &candidate.hash[..12]),
            reason,
        };
        if candidate.kind() != self.kind {
            return Err(refuse(format!(
                "it implements the {:?} world, the job uses {:?}",
                candidate.kind(),
                self.kind
            )));
        }
        let uses = self.uses();
        for used in uses.iter().filter(|u| u.active.load(Ordering::Relaxed)) {
            match function_shape(candidate, &used.function) {
                None => {
                    return Err(refuse(format!("it has no function `{}`, which {} calls", used.function, used.user)));
                }
                Some((_, shape)) if shape != used.shape => {
                    let what = match (&shape, &used.shape) {
                        (
                            FunctionShape::Aggregate { state_version: new, .. },
                            FunctionShape::Aggregate { state_version: old, .. },
                        ) if new != old => format!(
                            "state version {new} cannot read the state kept for version {old} (`{}`, used by {})",
                            used.function, used.user
                        ),
                        _ => format!("`{}` is {shape}, but {} uses it as {}", used.function, used.user, used.shape),
                    };
                    return Err(refuse(what));
                }
                Some(_) => {}
            }
        }
        let mut limits: Vec<Limits> = uses.iter().map(|u| u.limits).collect();
        limits.push(self.limits);
        limits.dedup();
        let candidate = Arc::new(candidate.clone());
        for limits in limits {
            Instance::new(Arc::clone(&candidate), limits)
                .map_err(|err| refuse(format!("it cannot be instantiated under {limits:?}: {err}")))?;
        }
        Ok(())
    }

    /// Checks `plugin` and makes it the current version.
    ///
    /// # Errors
    /// As for [`PluginHandle::check`]; a refusal is counted and logged, and the old version
    /// keeps serving.
    pub fn install(&self, plugin: Plugin, origin: String) -> Result<Arc<Version>, SwapError> {
        if let Err(err) = self.check(&plugin) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            let mut state = self.lock();
            let refused = Version::new(Arc::new(plugin), 0, origin, None);
            Self::event(&mut state, "refused", &refused, err.to_string());
            tracing::warn!(plugin = %self.name, version = %refused.label(), error = %err, "new plugin version refused; the current one keeps serving");
            return Err(err);
        }
        Ok(self.store(Arc::new(plugin), origin, "swap"))
    }

    fn store(&self, plugin: Arc<Plugin>, origin: String, action: &str) -> Arc<Version> {
        let mut state = self.lock();
        let previous = self.current();
        // The replaced version is the new one's fallback; its own fallback is no longer needed.
        previous.fallback.store(None);
        let version = Arc::new(Version::new(plugin, state.next_generation, origin, Some(Arc::clone(&previous))));
        state.next_generation += 1;
        state.history.push(previous);
        if state.history.len() > KEPT_VERSIONS {
            state.history.remove(0);
        }
        self.current.store(Arc::clone(&version));
        self.stats.swaps.fetch_add(1, Ordering::Relaxed);
        Self::event(&mut state, action, &version, version.origin.clone());
        tracing::info!(plugin = %self.name, version = %version.label(), origin = %version.origin, "plugin version swapped in");
        version
    }

    /// Restores the previous version.
    ///
    /// # Errors
    /// [`SwapError::NoHistory`] when there is none.
    pub fn rollback(&self) -> Result<Arc<Version>, SwapError> {
        let mut state = self.lock();
        let Some(previous) = state.history.pop() else {
            return Err(SwapError::NoHistory(self.name.clone()));
        };
        let replaced = self.current();
        replaced.fallback.store(None);
        self.current.store(Arc::clone(&previous));
        self.stats.rollbacks.fetch_add(1, Ordering::Relaxed);
        Self::event(&mut state, "rollback", &previous, format!("replacing {}", replaced.label()));
        tracing::info!(plugin = %self.name, version = %previous.label(), replaced = %replaced.label(), "plugin rolled back");
        Ok(previous)
    }

    /// A call on `version` trapped. While the version is on probation this returns the version
    /// to run the batch on instead, and restores it for everyone once the traps exceed the
    /// policy; otherwise `None` (the step's error policy applies).
    pub fn report_trap(&self, version: &Arc<Version>, error: &PluginError) -> Option<Arc<Version>> {
        version.stats.traps.fetch_add(1, Ordering::Relaxed);
        let fallback = version.fallback.load_full()?;
        if version.installed.elapsed() > self.policy.window {
            return None;
        }
        let traps = version.probation_traps.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(plugin = %self.name, version = %version.label(), traps, error = %error, "new plugin version trapped on probation; the batch runs on the previous version");
        if traps > self.policy.max_traps {
            self.restore(
                version,
                &fallback,
                &format!("{traps} traps within {:?} of the swap: {error}", self.policy.window),
            );
        }
        Some(fallback)
    }

    /// `version` could not be instantiated. On probation: restored at once, and the version to
    /// run on instead is returned.
    pub fn report_instantiation_failure(&self, version: &Arc<Version>, error: &PluginError) -> Option<Arc<Version>> {
        let fallback = version.fallback.load_full()?;
        self.restore(version, &fallback, &format!("cannot be instantiated: {error}"));
        Some(fallback)
    }

    /// Automatic rollback from `failed` to `fallback`, if `failed` still serves.
    fn restore(&self, failed: &Arc<Version>, fallback: &Arc<Version>, reason: &str) {
        let mut state = self.lock();
        if self.current().generation != failed.generation {
            return;
        }
        if state.history.last().is_some_and(|last| last.generation == fallback.generation) {
            state.history.pop();
        }
        self.current.store(Arc::clone(fallback));
        self.stats.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.stats.automatic_rollbacks.fetch_add(1, Ordering::Relaxed);
        Self::event(&mut state, "automatic-rollback", fallback, format!("{} rolled back: {reason}", failed.label()));
        tracing::error!(plugin = %self.name, failed = %failed.label(), restored = %fallback.label(), reason, "plugin version rolled back automatically");
    }

    /// Starts a canary of `candidate` beside the current version (replacing any earlier one).
    ///
    /// # Errors
    /// Incompatible candidates, and plugins whose functions cannot be compared (aggregates).
    pub fn start_canary(&self, candidate: Plugin, sample: f64) -> Result<Arc<Canary>, SwapError> {
        if self.kind == PluginKind::Aggregate {
            return Err(SwapError::Unsupported {
                plugin: self.name.clone(),
                reason:
                    "aggregate plugins cannot run as a canary (their state lives in the job); swap them with reload"
                        .into(),
            });
        }
        self.check(&candidate)?;
        let canary = Arc::new(Canary::start(Arc::new(candidate), self.limits, sample));
        let mut state = self.lock();
        Self::event(&mut state, "canary", canary.version(), format!("sampling {:.0}% of batches", sample * 100.0));
        self.canary.store(Some(Arc::clone(&canary)));
        Ok(canary)
    }

    /// Stops the canary and returns it (with its report).
    ///
    /// # Errors
    /// [`SwapError::NoCanary`].
    pub fn stop_canary(&self) -> Result<Arc<Canary>, SwapError> {
        self.canary.swap(None).ok_or_else(|| SwapError::NoCanary(self.name.clone()))
    }

    /// Makes the canary's version the current one.
    ///
    /// # Errors
    /// [`SwapError::NoCanary`], or the checks of [`PluginHandle::install`].
    pub fn promote(&self) -> Result<Arc<Version>, SwapError> {
        let canary = self.canary().ok_or_else(|| SwapError::NoCanary(self.name.clone()))?;
        let plugin = canary.version().plugin.as_ref().clone();
        let version = self.install(plugin, "promoted canary".into())?;
        self.canary.store(None);
        Ok(version)
    }
}

/// The plugins of a job, by name: those declared under `plugins:`, and `.wasm` paths steps
/// name directly (registered under the file stem).
#[derive(Debug, Default)]
pub struct PluginRegistry {
    handles: RwLock<IndexMap<String, Arc<PluginHandle>>>,
}

impl PluginRegistry {
    /// Adds a plugin.
    pub fn insert(&self, handle: Arc<PluginHandle>) {
        self.handles.write().unwrap_or_else(PoisonError::into_inner).insert(handle.name().to_owned(), handle);
    }

    /// A plugin by name.
    pub fn get(&self, name: &str) -> Option<Arc<PluginHandle>> {
        self.handles.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every plugin, in declaration order.
    pub fn handles(&self) -> Vec<Arc<PluginHandle>> {
        self.handles.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// A plugin by name, or a `.wasm` path loaded on the spot (relative to `base`) under
    /// `limits` and registered under its file stem.
    ///
    /// # Errors
    /// Unknown names and load failures, as text for the step's error.
    pub fn resolve(&self, reference: &str, base: &Path, limits: Limits) -> Result<Arc<PluginHandle>, String> {
        if let Some(found) = self.get(reference) {
            return Ok(found);
        }
        if reference.ends_with(".wasm") {
            let path = if Path::new(reference).is_absolute() { reference.into() } else { base.join(reference) };
            let stem = path.file_stem().map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned());
            let mut name = stem.clone();
            let mut n = 1;
            while let Some(existing) = self.get(&name) {
                if existing.path == path {
                    return Ok(existing);
                }
                n += 1;
                name = format!("{stem}-{n}");
            }
            let plugin = super::load(&path, limits).map_err(|err| err.to_string())?;
            let handle = Arc::new(PluginHandle::new(name, Arc::new(plugin), limits, None, RollbackPolicy::default()));
            self.insert(Arc::clone(&handle));
            return Ok(handle);
        }
        let mut known: Vec<String> =
            self.handles.read().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        known.sort_unstable();
        Err(format!(
            "unknown plugin `{reference}`; declared plugins: [{}] (or give a path ending in .wasm)",
            known.join(", ")
        ))
    }

    /// The plugin a new file is a version of: the one whose registry name is the file's stem,
    /// else the only one whose plugin declares the same name.
    pub fn match_file(&self, stem: &str, declared_name: &str) -> Option<Arc<PluginHandle>> {
        if let Some(handle) = self.get(stem) {
            return Some(handle);
        }
        let matching: Vec<Arc<PluginHandle>> =
            self.handles().into_iter().filter(|h| h.current().plugin.info.name == declared_name).collect();
        (matching.len() == 1).then(|| matching.into_iter().next().expect("one"))
    }

    /// Loads `path` (off the data path) and installs it as the next version of `name`.
    ///
    /// # Errors
    /// Unknown plugins, load failures, refusals.
    pub fn reload(&self, name: &str, path: Option<&Path>, origin: &str) -> Result<Arc<Version>, SwapError> {
        let handle = self.get(name).ok_or_else(|| SwapError::Unknown(name.to_owned()))?;
        let path = path.map_or_else(|| handle.path.clone(), Path::to_path_buf);
        let plugin = super::load(&path, handle.limits).inspect_err(|err| handle.refuse_unloadable(err))?;
        handle.install(plugin, format!("{origin} {}", path.display()))
    }
}
