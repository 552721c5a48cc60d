//! The checkpoint contract: what a checkpoint records (its metadata, written last as the commit
//! point) and the storage it is written to. The engine coordinates checkpoints; where their bytes
//! go is a [`CheckpointStorage`] from a crate above (`weir-state` keeps them in an object store).

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

/// Checkpoint ids increase over the life of a job, across restarts.
pub type CheckpointId = u64;

/// The version of the metadata layout; a checkpoint of another layout is refused on restore.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// One piece of state in storage, with what verifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateHandle {
    /// Where it is, relative to the checkpoint's directory.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// What one subtask of a component contributed to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskState {
    /// The subtask.
    pub subtask: usize,
    /// Its operator state, if it has any.
    pub state: Option<StateHandle>,
    /// A source subtask's position (the source's own encoding), the truth on restore.
    pub position: Option<String>,
}

/// What one component contributed to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentState {
    /// Its name in the pipeline (state is matched by name on restore).
    pub name: String,
    /// Its kind (`tumble`, `kafka`).
    pub kind: String,
    /// How many subtasks wrote it.
    pub parallelism: usize,
    /// Per subtask.
    pub subtasks: Vec<SubtaskState>,
}

/// A complete checkpoint: written last, after every piece of state, so that its presence is the
/// commit point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// [`CHECKPOINT_FORMAT`] when written.
    pub format: u32,
    /// The weir version that wrote it.
    pub weir_version: String,
    /// The job (`settings.job_id`).
    pub job_id: String,
    /// The checkpoint.
    pub id: CheckpointId,
    /// When it was triggered (milliseconds since the Unix epoch).
    pub triggered_at_ms: i64,
    /// When it completed.
    pub completed_at_ms: i64,
    /// Whether a user asked for it (kept until deleted by hand) rather than the interval.
    pub savepoint: bool,
    /// Every component's contribution.
    pub components: Vec<ComponentState>,
}

/// Why storage failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The storage could not be reached or written.
    #[error("checkpoint storage {location}: {reason}")]
    Unavailable {
        /// Where.
        location: String,
        /// Why.
        reason: String,
    },
    /// What was read is not what was written: a checksum, size or format mismatch.
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What does not match.
        reason: String,
    },
    /// A checkpoint that exists but cannot be used here (another job, another format).
    #[error("checkpoint {path} cannot be restored: {reason}")]
    Incompatible {
        /// The checkpoint.
        path: String,
        /// Why.
        reason: String,
    },
    /// No such checkpoint.
    #[error("no checkpoint {path}")]
    Missing {
        /// What was asked for.
        path: String,
    },
}

/// Where a job's checkpoints are kept.
///
/// A checkpoint's state is written first, piece by piece ([`write_state`](Self::write_state));
/// [`commit`](Self::commit) then writes its metadata, which makes it complete. A checkpoint without
/// metadata (a crash while writing it) is never used and is deleted by [`discard`](Self::discard)
/// or the next [`retain`](Self::retain).
#[async_trait::async_trait]
pub trait CheckpointStorage: Send + Sync + Debug {
    /// Where, for messages (no secrets).
    fn location(&self) -> String;

    /// Writes one piece of state of checkpoint `id` under `name` (`component/subtask`).
    async fn write_state(&self, id: CheckpointId, name: &str, bytes: Vec<u8>) -> Result<StateHandle, StorageError>;

    /// Reads a piece of state of checkpoint `id`, verifying its size and checksum.
    async fn read_state(&self, id: CheckpointId, handle: &StateHandle) -> Result<Vec<u8>, StorageError>;

    /// Completes a checkpoint by writing its metadata.
    async fn commit(&self, metadata: &CheckpointMetadata) -> Result<(), StorageError>;

    /// Deletes a checkpoint, complete or not.
    async fn discard(&self, id: CheckpointId) -> Result<(), StorageError>;

    /// Every checkpoint id present, complete or not, ascending.
    async fn ids(&self) -> Result<Vec<CheckpointId>, StorageError>;

    /// The metadata of a complete checkpoint, verified (checksum, format, job).
    async fn metadata(&self, id: CheckpointId) -> Result<CheckpointMetadata, StorageError>;

    /// Keeps the newest `retain` complete checkpoints and savepoints, deletes older complete
    /// checkpoints and every incomplete checkpoint older than the newest complete one; returns
    /// the ids deleted.
    async fn retain(&self, retain: usize) -> Result<Vec<CheckpointId>, StorageError> {
        let ids = self.ids().await?;
        let mut complete = Vec::new();
        let mut incomplete = Vec::new();
        for id in ids {
            match self.metadata(id).await {
                Ok(metadata) => complete.push((id, metadata.savepoint)),
                Err(StorageError::Missing { .. }) => incomplete.push(id),
                // A corrupt checkpoint is kept for inspection until newer ones replace it.
                Err(StorageError::Corrupt { .. } | StorageError::Incompatible { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let newest = complete.last().map(|(id, _)| *id);
        let checkpoints: Vec<CheckpointId> =
            complete.iter().filter(|(_, savepoint)| !savepoint).map(|(id, _)| *id).collect();
        let mut deleted = Vec::new();
        let surplus = checkpoints.len().saturating_sub(retain.max(1));
        for id in checkpoints.into_iter().take(surplus) {
            self.discard(id).await?;
            deleted.push(id);
        }
        for id in incomplete.into_iter().filter(|id| newest.is_some_and(|newest| *id < newest)) {
            self.discard(id).await?;
            deleted.push(id);
        }
        deleted.sort_unstable();
        Ok(deleted)
    }

    /// The newest complete checkpoint whose metadata verifies, skipping (and reporting) corrupt
    /// or incompatible ones; `None` if there is none.
    async fn latest(&self) -> Result<Option<CheckpointMetadata>, StorageError> {
        for id in self.ids().await?.into_iter().rev() {
            match self.metadata(id).await {
                Ok(metadata) => return Ok(Some(metadata)),
                Err(StorageError::Missing { .. }) => {}
                Err(err @ (StorageError::Corrupt { .. } | StorageError::Incompatible { .. })) => {
                    tracing::warn!(checkpoint = id, error = %err, "skipping a checkpoint that cannot be restored");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }
}
