//! The watched plugins directory: a `.wasm` file written there becomes the next version of the
//! plugin it belongs to, while the job runs.
//!
//! A file belongs to the registered plugin named like its stem (`tagger.wasm` → `tagger`), or
//! else to the only plugin whose component declares the same name. A file counts as completely
//! written when its writer closed it (inotify `CLOSE_WRITE`) or it was renamed into the directory
//! (the atomic way to publish a file), and its size then stays the same for [`SETTLE`].
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
    let (landed, files) = std::sync::mpsc::channel::<(PathBuf, Instant)>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let complete = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        if complete {
            for path in event.paths {
                if path.extension().is_some_and(|ext| ext == "wasm") {
                    let _ = landed.send((path, Instant::now()));
                }
            }
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

/// Loads files once they settled, coalescing repeated events for one file.
fn pick_up(files: &Receiver<(PathBuf, Instant)>, registry: &PluginRegistry) {
    let mut waiting: HashMap<PathBuf, (Instant, Option<u64>)> = HashMap::new();
    loop {
        match files.recv_timeout(SETTLE) {
            Ok((path, landed)) => {
                waiting.entry(path).or_insert((landed, None)).1 = None;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let mut ready = Vec::new();
        waiting.retain(|path, (landed, size)| {
            let now = std::fs::metadata(path).ok().map(|m| m.len());
            if now.is_some() && now == *size {
                ready.push((path.clone(), *landed));
                false
            } else {
                *size = now;
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
    let plugin = match super::load(path) {
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
