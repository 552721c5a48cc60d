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

/// One stateful subtask's state in a checkpoint: the operator's own bytes per key group
/// ([`crate::key_group`]), so that it can be handed to whichever subtask owns the group after a
/// restore at another parallelism, and state that belongs to no key (a step without `group_by`,
/// which runs as one subtask).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedState {
    /// Per key group.
    pub groups: std::collections::BTreeMap<u16, Vec<u8>>,
    /// State of no key.
    pub unkeyed: Option<Vec<u8>>,
}

/// State bytes that do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state does not decode: {0}")]
pub struct StateFormatError(pub String);

const KEYED_STATE_MAGIC: &[u8; 4] = b"WKS1";

impl KeyedState {
    /// The stored form: `WKS1`, a flag and the unkeyed bytes, the number of key groups, then per
    /// group its number, length and bytes (integers little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let size = self.groups.values().map(|bytes| bytes.len() + 10).sum::<usize>()
            + self.unkeyed.as_ref().map_or(0, Vec::len)
            + 17;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(KEYED_STATE_MAGIC);
        match &self.unkeyed {
            Some(bytes) => {
                out.push(1);
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for (group, bytes) in &self.groups {
            out.extend_from_slice(&group.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote.
    ///
    /// # Errors
    /// Another format, truncation, trailing bytes, a key group out of range or repeated.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateFormatError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != KEYED_STATE_MAGIC {
            return Err(StateFormatError("not keyed state (bad magic)".into()));
        }
        let unkeyed = match reader.take(1)?[0] {
            0 => None,
            1 => {
                let len = reader.len()?;
                Some(reader.take(len)?.to_vec())
            }
            flag => return Err(StateFormatError(format!("bad flag {flag}"))),
        };
        let count = u32::from_le_bytes(reader.take(4)?.try_into().expect("4 bytes"));
        let mut groups = std::collections::BTreeMap::new();
        for _ in 0..count {
            let group = u16::from_le_bytes(reader.take(2)?.try_into().expect("2 bytes"));
            if group >= crate::key_group::KEY_GROUPS {
                return Err(StateFormatError(format!("key group {group} out of range")));
            }
            let len = reader.len()?;
            if groups.insert(group, reader.take(len)?.to_vec()).is_some() {
                return Err(StateFormatError(format!("key group {group} appears twice")));
            }
        }
        if reader.at != bytes.len() {
            return Err(StateFormatError(format!("{} bytes after the end", bytes.len() - reader.at)));
        }
        Ok(Self { groups, unkeyed })
    }

    /// The state subtask `subtask` of `parallelism` restores from what every subtask of an
    /// earlier run wrote: the key groups it owns now, and the unkeyed state if it is subtask 0.
    ///
    /// # Errors
    /// A key group written by two subtasks, or unkeyed state written by two (a corrupt or
    /// mismatched checkpoint).
    pub fn for_subtask(
        written: impl IntoIterator<Item = Self>,
        subtask: usize,
        parallelism: usize,
    ) -> Result<Self, StateFormatError> {
        let owned = crate::key_group::key_groups_of(subtask, parallelism);
        let mut out = Self::default();
        for state in written {
            if let Some(bytes) = state.unkeyed {
                if out.unkeyed.is_some() {
                    return Err(StateFormatError("unkeyed state written by two subtasks".into()));
                }
                out.unkeyed = Some(bytes);
            }
            for (group, bytes) in state.groups {
                if owned.contains(&group) && out.groups.insert(group, bytes).is_some() {
                    return Err(StateFormatError(format!("key group {group} written by two subtasks")));
                }
            }
        }
        if subtask != 0 {
            out.unkeyed = None;
        }
        Ok(out)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], StateFormatError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
            StateFormatError(format!("truncated: {len} bytes wanted at {}, {} there", self.at, self.bytes.len()))
        })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn len(&mut self) -> Result<usize, StateFormatError> {
        let len = u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
        usize::try_from(len).map_err(|_| StateFormatError(format!("length {len} too large")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_group::{KEY_GROUPS, key_groups_of};

    fn state(groups: impl IntoIterator<Item = u16>, unkeyed: Option<&[u8]>) -> KeyedState {
        KeyedState {
            groups: groups.into_iter().map(|g| (g, format!("state of {g}").into_bytes())).collect(),
            unkeyed: unkeyed.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn keyed_state_round_trips_and_refuses_damage() {
        let original = state([0, 5, 127], Some(b"global"));
        let bytes = original.encode();
        assert_eq!(KeyedState::decode(&bytes).unwrap(), original);
        assert_eq!(KeyedState::decode(&KeyedState::default().encode()).unwrap(), KeyedState::default());
        for cut in 0..bytes.len() {
            assert!(KeyedState::decode(&bytes[..cut]).is_err(), "a cut at {cut} decodes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(KeyedState::decode(&longer).unwrap_err().0.contains("after the end"));
        let mut wrong_group = state([3], None).encode();
        let at = 4 + 1 + 4;
        wrong_group[at..at + 2].copy_from_slice(&KEY_GROUPS.to_le_bytes());
        assert!(KeyedState::decode(&wrong_group).unwrap_err().0.contains("out of range"));
    }

    #[test]
    fn state_written_at_two_subtasks_restores_at_one_and_at_three() {
        // Written by a run at parallelism 2: each subtask holds the key groups it owned.
        let written: Vec<KeyedState> =
            (0..2).map(|subtask| state(key_groups_of(subtask, 2), (subtask == 0).then_some(&b"global"[..]))).collect();
        let all: Vec<u16> = (0..KEY_GROUPS).collect();
        let one = KeyedState::for_subtask(written.clone(), 0, 1).unwrap();
        assert_eq!(one.groups.keys().copied().collect::<Vec<_>>(), all);
        assert_eq!(one.unkeyed.as_deref(), Some(&b"global"[..]));
        let mut seen = Vec::new();
        for subtask in 0..3 {
            let restored = KeyedState::for_subtask(written.clone(), subtask, 3).unwrap();
            let groups: Vec<u16> = restored.groups.keys().copied().collect();
            assert_eq!(groups, key_groups_of(subtask, 3).collect::<Vec<_>>(), "subtask {subtask} of 3");
            for (group, bytes) in &restored.groups {
                assert_eq!(bytes, &format!("state of {group}").into_bytes());
            }
            assert_eq!(restored.unkeyed.is_some(), subtask == 0);
            seen.extend(groups);
        }
        assert_eq!(seen, all, "every key group restored exactly once");
    }

    #[test]
    fn a_key_group_written_twice_is_refused() {
        let err = KeyedState::for_subtask([state([7], None), state([7], None)], 0, 1).unwrap_err();
        assert!(err.0.contains("key group 7 written by two subtasks"), "{err}");
    }
}
