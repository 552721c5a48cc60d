//! The watched plugins directory: a `.wasm` file written there becomes the next version of the
//! plugin it belongs to, while the job runs.
//!
//! A file belongs to the registered plugin named like its stem (`tagger.wasm` → `tagger`), or
//! else to the only plugin whose component declares the same name. A file counts as completely
//! written when it was renamed into the directory (the atomic way to publish a file: taken at
//! once), or when its writer closed it (inotify `CLOSE_WRITE`) and its size then stayed the same
//! for [`SETTLE`] (a writer that closes and reopens, or several writers, get that much grace).
//! Loading and checking run on the watcher's own thread, never on the data path; a file that
//! fails to load or is refused is logged and the current version keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::PluginRegistry;

/// How long a file's size must stay the same before it is loaded.
pub const SETTLE: Duration = Duration::from_millis(20);

/// A running watch; dropping it stops watching.
pub struct PluginWatcher {
    _watcher: RecommendedWatcher,
    dir: PathBuf,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginWatcher").field("dir", &self.dir).finish()
    }
}

/// Errors of starting a watch.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the plugins directory {dir}: {reason}")]
pub struct WatchError {
    /// The directory.
    pub dir: PathBuf,
    /// Why.
    pub reason: String,
}

/// Starts watching `dir` for new plugin versions of `registry`'s plugins.
///
/// # Errors
/// A directory that does not exist or cannot be watched.
pub fn watch(dir: &Path, registry: Arc<PluginRegistry>) -> Result<PluginWatcher, WatchError> {
    let failed = |reason: String| WatchError { dir: dir.to_path_buf(), reason };
    if !dir.is_dir() {
        return Err(failed("not a directory".into()));
    }
    let (landed, files) = std::sync::mpsc::channel::<Landed>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let renamed = match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => false,
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => true,
            _ => return,
        };
        // A rename names the old and the new path; the new one is last.
        if let Some(path) = event.paths.last().filter(|path| path.extension().is_some_and(|ext| ext == "wasm")) {
            let _ = landed.send(Landed { path: path.clone(), at: Instant::now(), renamed });
        }
    })
    .map_err(|err| failed(err.to_string()))?;
    watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|err| failed(err.to_string()))?;
    std::thread::Builder::new()
        .name("weir-plugin-watch".into())
        .spawn(move || pick_up(&files, &registry))
        .map_err(|err| failed(err.to_string()))?;
    tracing::info!(dir = %dir.display(), "watching for new plugin versions");
    Ok(PluginWatcher { _watcher: watcher, dir: dir.to_path_buf() })
}

/// A file event worth a look.
struct Landed {
    path: PathBuf,
    at: Instant,
    renamed: bool,
}

/// Loads renamed files at once and closed ones once their size settled, coalescing repeated
/// events for one file.
fn pick_up(files: &Receiver<Landed>, registry: &PluginRegistry) {
    // Closed files waiting to settle: when the first event came, and the size last seen.
    let mut waiting: HashMap<PathBuf, (Instant, Option<u64>)> = HashMap::new();
    let size = |path: &Path| std::fs::metadata(path).ok().map(|m| m.len());
    loop {
        match files.recv_timeout(SETTLE) {
            Ok(Landed { path, at, renamed: true }) => {
                waiting.remove(&path);
                install(&path, at, registry);
                continue;
            }
            Ok(Landed { path, at, renamed: false }) => {
                let now = size(&path);
                waiting.entry(path).or_insert((at, None)).1 = now;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut ready = Vec::new();
        waiting.retain(|path, (landed, seen)| {
            let now = size(path);
            if now.is_some() && now == *seen {
                ready.push((path.clone(), *landed));
                false
            } else {
                *seen = now;
                now.is_some()
            }
        });
        for (path, landed) in ready {
            install(&path, landed, registry);
        }
    }
}

fn install(path: &Path, landed: Instant, registry: &PluginRegistry) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // Loaded under the limits of the plugin it is named after (the defaults for a new name).
    let limits = registry.get(&stem).map_or_else(super::Limits::default, |handle| handle.limits);
    let plugin = match super::load(path, limits) {
        Ok(plugin) => plugin,
        Err(err) => {
            match registry.get(&stem) {
                Some(handle) => handle.refuse_unloadable(&err),
                None => {
                    tracing::warn!(file = %path.display(), error = %err, "ignoring a plugin file that does not load")
                }
            }
            return;
        }
    };
    let Some(handle) = registry.match_file(&stem, &plugin.info.name) else {
        tracing::warn!(file = %path.display(), plugin = %plugin.info.name, "a plugin file matches no plugin of this job (name it after the plugin)");
        return;
    };
    if handle.current().plugin.hash == plugin.hash {
        return;
    }
    match handle.install(plugin, format!("watched {}", path.display())) {
        Ok(version) => tracing::info!(
            plugin = %handle.name(),
            version = %version.label(),
            pickup_ms = landed.elapsed().as_secs_f64() * 1e3,
            "new plugin version from the watched directory is serving"
        ),
        Err(err) => tracing::warn!(file = %path.display(), error = %err, "plugin file refused"),
    }
}
