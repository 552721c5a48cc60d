//! [`ObjectStoreCheckpoints`]: a job's checkpoints in an object store, each verified by checksums
//! when it is read back.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

use weir_engine::checkpoint::{
    CHECKPOINT_FORMAT, CheckpointId, CheckpointMetadata, CheckpointStorage, StateHandle, StorageError,
};

use std::path::Path;

use weir_config::settings::CheckpointSettings;

use crate::location::{Location, LocationError, StorageUrl};

/// The metadata object's name inside a checkpoint's directory.
pub const METADATA: &str = "_metadata";

/// The first word of the metadata's header line.
const MAGIC: &str = "weir-checkpoint";

/// One job's checkpoints under `<root>/<job_id>/`.
#[derive(Debug, Clone)]
pub struct ObjectStoreCheckpoints {
    location: Location,
    job_id: String,
    job_root: ObjectPath,
}

impl ObjectStoreCheckpoints {
    /// The checkpoints of `job_id` where `settings.checkpoint` keeps them (relative directories
    /// resolve against `base_dir`, the pipeline's directory).
    ///
    /// # Errors
    /// A storage URL or option that is not usable.
    pub fn for_job(settings: &CheckpointSettings, job_id: &str, base_dir: &Path) -> Result<Self, LocationError> {
        let url = match &settings.storage {
            Some(text) => StorageUrl::parse(text, base_dir)?,
            None => StorageUrl::Local(CheckpointSettings::default_storage()),
        };
        Ok(Self::new(Location::open(&url, &settings.options)?, job_id))
    }

    /// The checkpoint at `path`, `<root>/<job_id>/chk-<id>` (a directory or an `s3://` URL, as
    /// `weir run --restore` takes it), with the storage holding it; `options` as for the job's
    /// own storage.
    ///
    /// # Errors
    /// A path not of that form, or storage that is not usable.
    pub fn at_path(
        path: &str,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<(Self, CheckpointId), LocationError> {
        let fail = |reason: &str| LocationError { location: path.to_owned(), reason: reason.to_owned() };
        let shape = "expected <storage>/<job_id>/chk-<id>";
        let trimmed = path.trim_end_matches('/');
        let (rest, checkpoint) = trimmed.rsplit_once('/').ok_or_else(|| fail(shape))?;
        let id = checkpoint.strip_prefix("chk-").and_then(|id| id.parse().ok()).ok_or_else(|| fail(shape))?;
        let (root, job_id) = rest.rsplit_once('/').ok_or_else(|| fail(shape))?;
        let root = if root.is_empty() { "/" } else { root };
        let url = StorageUrl::parse(root, &std::env::current_dir().unwrap_or_default())?;
        Ok((Self::new(Location::open(&url, options)?, job_id), id))
    }

    /// The checkpoints of `job_id` at `location`.
    pub fn new(location: Location, job_id: &str) -> Self {
        let job_root = location.root.clone().join(job_id);
        Self { location, job_id: job_id.to_owned(), job_root }
    }

    /// The job whose checkpoints these are.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    fn checkpoint_dir(&self, id: CheckpointId) -> ObjectPath {
        self.job_root.clone().join(format!("chk-{id}"))
    }

    fn object(&self, id: CheckpointId, relative: &str) -> ObjectPath {
        relative.split('/').filter(|part| !part.is_empty()).fold(self.checkpoint_dir(id), |path, part| path.join(part))
    }

    fn describe(&self, path: &ObjectPath) -> String {
        format!("{}/{path}", self.location.describe.trim_end_matches('/'))
    }

    fn unavailable(&self, err: &object_store::Error) -> StorageError {
        StorageError::Unavailable { location: self.location(), reason: err.to_string() }
    }

    fn store(&self) -> &dyn ObjectStore {
        self.location.store.as_ref()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The metadata object: a header line with the format and the JSON's hash, then the JSON.
fn encode_metadata(metadata: &CheckpointMetadata) -> Vec<u8> {
    let json = serde_json::to_vec_pretty(metadata).expect("checkpoint metadata serializes");
    let mut out = format!("{MAGIC} {CHECKPOINT_FORMAT} sha256={}\n", sha256_hex(&json)).into_bytes();
    out.extend_from_slice(&json);
    out
}

fn decode_metadata(bytes: &[u8], path: &str) -> Result<CheckpointMetadata, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt { path: path.to_owned(), reason };
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("no header line".into()))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| corrupt("the header is not text".into()))?;
    let mut words = header.split(' ');
    let (Some(MAGIC), Some(format), Some(hash), None) = (words.next(), words.next(), words.next(), words.next()) else {
        return Err(corrupt(format!("not a weir checkpoint header: `{header}`")));
    };
    let format: u32 = format.parse().map_err(|_| corrupt(format!("bad format number `{format}`")))?;
    if format != CHECKPOINT_FORMAT {
        return Err(StorageError::Incompatible {
            path: path.to_owned(),
            reason: format!("it has checkpoint format {format}; this weir reads format {CHECKPOINT_FORMAT}"),
        });
    }
    let json = &bytes[newline + 1..];
    let expected = hash.strip_prefix("sha256=").ok_or_else(|| corrupt(format!("no checksum in `{header}`")))?;
    let actual = sha256_hex(json);
    if actual != expected {
        return Err(corrupt(format!("checksum mismatch (recorded {expected}, computed {actual})")));
    }
    serde_json::from_slice(json).map_err(|err| corrupt(format!("unreadable metadata: {err}")))
}

#[async_trait::async_trait]
impl CheckpointStorage for ObjectStoreCheckpoints {
    fn location(&self) -> String {
        self.describe(&self.job_root)
    }

    async fn write_state(&self, id: CheckpointId, name: &str, bytes: Vec<u8>) -> Result<StateHandle, StorageError> {
        let handle = StateHandle { path: name.to_owned(), size: bytes.len() as u64, sha256: sha256_hex(&bytes) };
        self.store()
            .put(&self.object(id, name), PutPayload::from(bytes))
            .await
            .map_err(|err| self.unavailable(&err))?;
        Ok(handle)
    }

    async fn read_state(&self, id: CheckpointId, handle: &StateHandle) -> Result<Vec<u8>, StorageError> {
        let path = self.object(id, &handle.path);
        let described = self.describe(&path);
        let bytes = match self.store().get(&path).await {
            Ok(result) => result.bytes().await.map_err(|err| self.unavailable(&err))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::Corrupt { path: described, reason: "the state file is missing".into() });
            }
            Err(err) => return Err(self.unavailable(&err)),
        };
        if bytes.len() as u64 != handle.size {
            return Err(StorageError::Corrupt {
                path: described,
                reason: format!("{} bytes, the checkpoint recorded {}", bytes.len(), handle.size),
            });
        }
        let actual = sha256_hex(&bytes);
        if actual != handle.sha256 {
            return Err(StorageError::Corrupt {
                path: described,
                reason: format!("checksum mismatch (recorded {}, computed {actual})", handle.sha256),
            });
        }
        Ok(bytes.to_vec())
    }

    async fn commit(&self, metadata: &CheckpointMetadata) -> Result<(), StorageError> {
        let path = self.object(metadata.id, METADATA);
        self.store()
            .put(&path, PutPayload::from(encode_metadata(metadata)))
            .await
            .map_err(|err| self.unavailable(&err))?;
        Ok(())
    }

    async fn discard(&self, id: CheckpointId) -> Result<(), StorageError> {
        let dir = self.checkpoint_dir(id);
        let objects: Vec<ObjectPath> = self
            .store()
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|err| self.unavailable(&err))?;
        // The metadata goes first: a checkpoint half deleted is incomplete, never complete with
        // missing state.
        let metadata = self.object(id, METADATA);
        let (first, rest): (Vec<_>, Vec<_>) = objects.into_iter().partition(|path| *path == metadata);
        for path in first.into_iter().chain(rest) {
            match self.store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(self.unavailable(&err)),
            }
        }
        // A local directory keeps its empty folders; remove them so the id disappears.
        if let Some(dir) = self.local_dir(id) {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }

    async fn ids(&self) -> Result<Vec<CheckpointId>, StorageError> {
        let listing =
            self.store().list_with_delimiter(Some(&self.job_root)).await.map_err(|err| self.unavailable(&err))?;
        let ids: BTreeSet<CheckpointId> = listing
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        Ok(ids.into_iter().collect())
    }

    async fn metadata(&self, id: CheckpointId) -> Result<CheckpointMetadata, StorageError> {
        let path = self.object(id, METADATA);
        let described = self.describe(&path);
        let bytes = match self.store().get(&path).await {
            Ok(result) => result.bytes().await.map_err(|err| self.unavailable(&err))?,
            Err(object_store::Error::NotFound { .. }) => return Err(StorageError::Missing { path: described }),
            Err(err) => return Err(self.unavailable(&err)),
        };
        let metadata = decode_metadata(&bytes, &described)?;
        if metadata.job_id != self.job_id {
            return Err(StorageError::Incompatible {
                path: described,
                reason: format!("it belongs to job `{}`, not `{}`", metadata.job_id, self.job_id),
            });
        }
        if metadata.id != id {
            return Err(StorageError::Corrupt {
                path: described,
                reason: format!("it says it is checkpoint {}, in the directory of {id}", metadata.id),
            });
        }
        Ok(metadata)
    }
}

impl ObjectStoreCheckpoints {
    /// The directory of a checkpoint when the storage is a local directory.
    fn local_dir(&self, id: CheckpointId) -> Option<std::path::PathBuf> {
        let base = std::path::Path::new(&self.location.describe);
        (base.is_absolute() && self.location.root.as_ref().is_empty())
            .then(|| base.join(self.checkpoint_dir(id).as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::checkpoint::{ComponentState, SubtaskState};

    fn storage(dir: &std::path::Path, job: &str) -> ObjectStoreCheckpoints {
        let url = crate::StorageUrl::parse(dir.to_str().unwrap(), dir).unwrap();
        let location = Location::open(&url, std::iter::empty()).unwrap();
        ObjectStoreCheckpoints::new(location, job)
    }

    async fn checkpoint(storage: &ObjectStoreCheckpoints, id: CheckpointId, state: &[u8]) -> CheckpointMetadata {
        let handle = storage.write_state(id, "window/0", state.to_vec()).await.unwrap();
        let metadata = CheckpointMetadata {
            format: CHECKPOINT_FORMAT,
            weir_version: "test".into(),
            job_id: storage.job_id().to_owned(),
            id,
            triggered_at_ms: 1,
            completed_at_ms: 2,
            savepoint: false,
            components: vec![ComponentState {
                name: "window".into(),
                kind: "tumble".into(),
                parallelism: 1,
                subtasks: vec![SubtaskState { subtask: 0, state: Some(handle), position: None }],
            }],
        };
        storage.commit(&metadata).await.unwrap();
        metadata
    }

    fn state_handle(metadata: &CheckpointMetadata) -> &StateHandle {
        metadata.components[0].subtasks[0].state.as_ref().unwrap()
    }

    #[tokio::test]
    async fn a_committed_checkpoint_reads_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), "job");
        let written = checkpoint(&storage, 1, b"window state").await;
        let latest = storage.latest().await.unwrap().unwrap();
        assert_eq!(latest, written);
        assert_eq!(storage.read_state(1, state_handle(&latest)).await.unwrap(), b"window state");
    }

    #[tokio::test]
    async fn a_checkpoint_without_metadata_is_never_restored_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), "job");
        checkpoint(&storage, 1, b"one").await;
        // Checkpoint 2 was torn: its state is there, its metadata never written.
        storage.write_state(2, "window/0", b"two".to_vec()).await.unwrap();
        assert_eq!(storage.ids().await.unwrap(), vec![1, 2]);
        assert_eq!(storage.latest().await.unwrap().unwrap().id, 1);
        checkpoint(&storage, 3, b"three").await;
        let deleted = storage.retain(1).await.unwrap();
        assert_eq!(deleted, vec![1, 2]);
        assert_eq!(storage.ids().await.unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_metadata_falls_back_to_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), "job");
        checkpoint(&storage, 1, b"one").await;
        checkpoint(&storage, 2, b"two").await;
        let file = dir.path().join("job/chk-2").join(METADATA);
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        let err = storage.metadata(2).await.unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(storage.latest().await.unwrap().unwrap().id, 1);
    }

    #[tokio::test]
    async fn a_truncated_state_file_is_reported_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), "job");
        let metadata = checkpoint(&storage, 1, b"window state").await;
        let file = dir.path().join("job/chk-1/window/0");
        std::fs::write(&file, b"window").unwrap();
        let err = storage.read_state(1, state_handle(&metadata)).await.unwrap_err();
        assert!(err.to_string().contains("6 bytes, the checkpoint recorded 12"), "{err}");
        std::fs::write(&file, b"window stat!").unwrap();
        let err = storage.read_state(1, state_handle(&metadata)).await.unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[tokio::test]
    async fn a_checkpoint_of_another_job_or_format_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let writer = storage(dir.path(), "other");
        checkpoint(&writer, 1, b"x").await;
        // The same directory read as job `job`: copy other's checkpoint there.
        std::fs::create_dir_all(dir.path().join("job")).unwrap();
        std::fs::rename(dir.path().join("other/chk-1"), dir.path().join("job/chk-1")).unwrap();
        let reader = storage(dir.path(), "job");
        let err = reader.metadata(1).await.unwrap_err();
        assert!(err.to_string().contains("belongs to job `other`, not `job`"), "{err}");
        let file = dir.path().join("job/chk-1").join(METADATA);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replacen("weir-checkpoint 1 ", "weir-checkpoint 9 ", 1)).unwrap();
        let err = reader.metadata(1).await.unwrap_err();
        assert!(err.to_string().contains("checkpoint format 9; this weir reads format 1"), "{err}");
        assert!(reader.latest().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn retain_keeps_the_newest_checkpoints_and_every_savepoint() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path(), "job");
        checkpoint(&storage, 1, b"1").await;
        let mut savepoint = checkpoint(&storage, 2, b"2").await;
        savepoint.savepoint = true;
        storage.commit(&savepoint).await.unwrap();
        for id in 3..=5 {
            checkpoint(&storage, id, b"n").await;
        }
        assert_eq!(storage.retain(2).await.unwrap(), vec![1, 3]);
        assert_eq!(storage.ids().await.unwrap(), vec![2, 4, 5]);
    }
}
