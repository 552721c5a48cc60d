//! Key groups: keyed state is divided into a fixed number of hash buckets, [`KEY_GROUPS`], and a
//! keyed operator's subtask owns a contiguous range of them (Flink's max-parallelism idea). Rows
//! are routed by their key's group, and state is checkpointed per key group, so a job
//! checkpointed at one parallelism restores at another: each new subtask reads the key groups of
//! its range, whichever subtask wrote them.
//!
//! The number is fixed for the life of a job's checkpoints: changing it would move keys between
//! groups. 128 is Flink's default maximum parallelism for jobs of up to 128 subtasks per step.

use std::ops::Range;

use arrow::array::ArrayRef;

/// How many key groups keyed state is divided into; also the highest parallelism of a keyed step.
pub const KEY_GROUPS: u16 = 128;

/// The hash that places keys in key groups: fixed seeds, so every subtask and every run (and
/// every weir version that reads the checkpoint) puts a key in the same group.
const KEY_HASH: datafusion_common::hash_utils::RandomState =
    datafusion_common::hash_utils::RandomState::with_seed(0x5745_4952); // "WEIR"

/// The hash of each row's key (the values of `columns`, row by row).
///
/// # Errors
/// Key types that cannot be hashed (refused when the pipeline is planned).
pub fn key_hashes(columns: &[&ArrayRef], rows: usize) -> Result<Vec<u64>, arrow::error::ArrowError> {
    let mut hashes = vec![0u64; rows];
    datafusion_common::hash_utils::create_hashes(columns.iter().copied(), &KEY_HASH, &mut hashes)
        .map_err(|err| arrow::error::ArrowError::ComputeError(err.to_string()))?;
    Ok(hashes)
}

/// The key group of a key hash (multiply-shift: uniform without a division per row).
pub fn key_group(hash: u64) -> u16 {
    ((u128::from(hash) * u128::from(KEY_GROUPS)) >> 64) as u16
}

/// The subtask that owns `key_group` when the step runs with `parallelism` subtasks.
pub fn subtask_of(key_group: u16, parallelism: usize) -> usize {
    usize::from(key_group) * parallelism / usize::from(KEY_GROUPS)
}

/// The key groups subtask `subtask` of `parallelism` owns (the inverse of [`subtask_of`]).
pub fn key_groups_of(subtask: usize, parallelism: usize) -> Range<u16> {
    let groups = usize::from(KEY_GROUPS);
    let start = (subtask * groups).div_ceil(parallelism);
    let end = ((subtask + 1) * groups).div_ceil(parallelism);
    start as u16..end.min(groups) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_group_has_exactly_one_owner_at_every_parallelism() {
        for parallelism in 1..=usize::from(KEY_GROUPS) {
            let mut next = 0u16;
            for subtask in 0..parallelism {
                let range = key_groups_of(subtask, parallelism);
                assert_eq!(range.start, next, "parallelism {parallelism}, subtask {subtask}: ranges are contiguous");
                assert!(!range.is_empty(), "parallelism {parallelism}, subtask {subtask} owns no key group");
                for group in range.clone() {
                    assert_eq!(subtask_of(group, parallelism), subtask, "parallelism {parallelism}, group {group}");
                }
                next = range.end;
            }
            assert_eq!(next, KEY_GROUPS, "parallelism {parallelism}: every key group is owned");
        }
    }

    #[test]
    fn key_groups_spread_hashes_evenly() {
        let mut counts = vec![0u32; usize::from(KEY_GROUPS)];
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..128_000 {
            // xorshift: a stand-in for well-mixed key hashes
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            counts[usize::from(key_group(state))] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 800 && *max < 1200, "uneven key groups: {min}..{max}");
    }

    #[test]
    fn the_key_hash_is_fixed_across_runs() {
        // A checkpoint written by one run is read by the next: a key must land in the same group.
        let keys: ArrayRef = std::sync::Arc::new(arrow::array::StringArray::from(vec!["sensor-1", "sensor-2"]));
        let hashes = key_hashes(&[&keys], 2).unwrap();
        let groups: Vec<u16> = hashes.iter().map(|h| key_group(*h)).collect();
        assert_eq!(groups, key_hashes(&[&keys], 2).unwrap().iter().map(|h| key_group(*h)).collect::<Vec<_>>());
        assert_ne!(hashes[0], hashes[1]);
    }
}
