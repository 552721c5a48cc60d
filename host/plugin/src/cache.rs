//! The on-disk cache of compiled components: one artifact per component hash and engine
//! configuration, written only for components that loaded, and bounded in size.
//!
//! Compiling a Python or JavaScript plugin takes 10-25 s and its artifact is 35-40 MB, so the
//! cache matters and grows with every rebuild. It lives in `$WEIR_CACHE_DIR` (default
//! `$XDG_CACHE_HOME/weir` or `~/.cache/weir`) and is kept under `$WEIR_CACHE_MAX_SIZE`
//! (default 1 GiB): after each new artifact, the least recently used ones are removed until
//! the rest fit (a cache hit marks an artifact as used). `weir plugin cache prune` does the same
//! on demand, or empties the cache with `--all`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytesize::ByteSize;
use wasmtime::component::Component;

/// The cache's size bound when `$WEIR_CACHE_MAX_SIZE` is not set.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// Where compiled components are cached.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("weir");
    }
    std::env::var_os("HOME")
        .map_or_else(|| std::env::temp_dir().join("weir-cache"), |home| PathBuf::from(home).join(".cache/weir"))
}

/// The size bound: `$WEIR_CACHE_MAX_SIZE` (`512MiB`, `2GB`) or [`DEFAULT_MAX_SIZE`].
pub fn max_size() -> u64 {
    std::env::var("WEIR_CACHE_MAX_SIZE")
        .ok()
        .and_then(|text| {
            text.parse::<ByteSize>()
                .inspect_err(|err| tracing::warn!(value = %text, error = %err, "ignoring WEIR_CACHE_MAX_SIZE"))
                .ok()
        })
        .map_or(DEFAULT_MAX_SIZE, |size| size.as_u64())
}

/// Writes a compiled component's artifact (atomically), then prunes the cache to its bound,
/// keeping the new artifact. Failures only cost the next load a compilation, so they are logged.
pub fn store(component: &Component, artifact: &Path) {
    let Ok(serialized) = component.serialize() else { return };
    let Some(dir) = artifact.parent() else { return };
    let temporary = artifact.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&temporary, serialized))
        .and_then(|()| std::fs::rename(&temporary, artifact));
    if let Err(err) = written {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot cache the compiled plugin");
        return;
    }
    let pruned = prune_dir(dir, max_size(), Some(artifact));
    if pruned.removed > 0 {
        tracing::info!(
            removed = pruned.removed,
            freed = %ByteSize(pruned.freed),
            kept = %ByteSize(pruned.kept),
            "pruned the plugin cache to its size bound (WEIR_CACHE_MAX_SIZE)"
        );
    }
}

/// Marks an artifact as just used (its modification time orders eviction).
pub fn touch(artifact: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(artifact) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// What a prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Artifacts removed.
    pub removed: usize,
    /// Bytes they held.
    pub freed: u64,
    /// Bytes of the artifacts kept.
    pub kept: u64,
}

/// Removes the least recently used artifacts of the cache until the rest fit in `max_size`.
pub fn prune(max_size: u64) -> Pruned {
    prune_dir(&cache_dir(), max_size, None)
}

fn prune_dir(dir: &Path, max_size: u64, keep: Option<&Path>) -> Pruned {
    let Ok(entries) = std::fs::read_dir(dir) else { return Pruned::default() };
    let mut artifacts: Vec<(SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .filter_map(|entry| {
            let metadata = entry.metadata().ok()?;
            Some((metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), metadata.len(), entry.path()))
        })
        .collect();
    artifacts.sort();
    let mut pruned = Pruned { kept: artifacts.iter().map(|(_, size, _)| size).sum(), ..Pruned::default() };
    for (_, size, path) in artifacts {
        if pruned.kept <= max_size {
            break;
        }
        if Some(path.as_path()) == keep {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            pruned.removed += 1;
            pruned.freed += size;
            pruned.kept -= size;
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_removes_the_least_recently_used_artifacts_first_and_keeps_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let at = |secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + secs);
        for (name, used) in [("a.cwasm", 1), ("b.cwasm", 3), ("c.cwasm", 2), ("new.cwasm", 0)] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![0u8; 100]).unwrap();
            std::fs::File::options().append(true).open(&path).unwrap().set_modified(at(used)).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), vec![0u8; 1000]).unwrap();
        let pruned = prune_dir(dir.path(), 250, Some(&dir.path().join("new.cwasm")));
        assert_eq!(pruned, Pruned { removed: 2, freed: 200, kept: 200 });
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["b.cwasm", "new.cwasm", "notes.txt"], "a and c were used least recently");
    }
}
