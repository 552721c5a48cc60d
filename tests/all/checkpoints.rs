//! Checkpoints (issue 22): settings, and checkpoint storage against S3-compatible storage
//! (s3s-fs on 9000, started by tests/services.sh). The local-directory cases are unit tests of
//! `weir-state`.

use std::collections::BTreeMap;

use object_store::{ObjectStoreExt, PutPayload};
use weir_engine::checkpoint::{
    CHECKPOINT_FORMAT, CheckpointMetadata, CheckpointStorage, ComponentState, StorageError, SubtaskState,
};
use weir_state::{Location, ObjectStoreCheckpoints, StorageUrl};

use crate::support::{Workspace, unique};

#[test]
fn checkpoint_settings_are_checked_and_refused_until_checkpoints_are_taken() {
    let ws = Workspace::new();
    let pipeline = |settings: &str| {
        format!(
            "settings: {settings}\nsources:\n  s: {{ type: generator, count: 1, columns: {{ n: {{ sequence: {{ start: 1 }} }} }} }}\nsinks:\n  out: {{ type: blackhole, inputs: [s] }}\n"
        )
    };
    let err = ws.load(&pipeline("{ checkpoint: { intervall: 10s } }")).expect_err("a misspelt option").to_string();
    assert!(err.contains("intervall"), "names the unknown option: {err}");
    let err = ws.load(&pipeline("{ job_id: q5, checkpoint: { interval: 1s } }")).expect_err("refused").to_string();
    assert!(err.contains("`checkpoint` is not available yet"), "says why: {err}");
    ws.load(&pipeline("{ job_id: q5 }")).expect("job_id is accepted");
}

fn s3_options() -> BTreeMap<String, String> {
    [
        ("endpoint", "http://127.0.0.1:9000"),
        ("region", "us-east-1"),
        ("access_key_id", "weir"),
        ("secret_access_key", "weir-secret"),
        ("allow_http", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn metadata(job: &str, id: u64, state: Option<weir_engine::checkpoint::StateHandle>) -> CheckpointMetadata {
    CheckpointMetadata {
        format: CHECKPOINT_FORMAT,
        weir_version: env!("CARGO_PKG_VERSION").into(),
        job_id: job.into(),
        id,
        triggered_at_ms: 0,
        completed_at_ms: 1,
        savepoint: false,
        components: vec![ComponentState {
            name: "window".into(),
            kind: "window".into(),
            parallelism: 1,
            subtasks: vec![SubtaskState { subtask: 0, state, position: Some("{\"offset\":42}".into()) }],
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_in_s3_compatible_storage_are_committed_last_and_verified() {
    let prefix = unique("checkpoints");
    let url = StorageUrl::parse(&format!("s3://weir-test/{prefix}"), std::path::Path::new(".")).unwrap();
    let location = Location::open(&url, &s3_options()).expect("an s3 location");
    let store = location.store.clone();
    let checkpoints = ObjectStoreCheckpoints::new(location, "job");

    let state = checkpoints.write_state(1, "window/0", b"state of checkpoint 1".to_vec()).await.unwrap();
    assert!(checkpoints.latest().await.unwrap().is_none(), "state without metadata is not a checkpoint");
    checkpoints.commit(&metadata("job", 1, Some(state.clone()))).await.unwrap();
    let latest = checkpoints.latest().await.unwrap().expect("checkpoint 1 is complete");
    assert_eq!(latest, metadata("job", 1, Some(state.clone())));
    assert_eq!(checkpoints.read_state(1, &state).await.unwrap(), b"state of checkpoint 1");

    // A torn checkpoint 2 (state written, the process killed before its metadata).
    checkpoints.write_state(2, "window/0", b"torn".to_vec()).await.unwrap();
    assert_eq!(checkpoints.ids().await.unwrap(), vec![1, 2]);
    assert_eq!(checkpoints.latest().await.unwrap().unwrap().id, 1, "the torn checkpoint is skipped");

    // The state object of checkpoint 1 overwritten with other bytes of the same size.
    let object = object_store::path::Path::from(format!("{prefix}/job/chk-1/window/0"));
    store.put(&object, PutPayload::from(b"state of checkpoint X".to_vec())).await.unwrap();
    let err = checkpoints.read_state(1, &state).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }) && err.to_string().contains("checksum mismatch"), "{err}");

    // Checkpoint 3 completes: retaining one deletes 1 and the torn 2.
    let state = checkpoints.write_state(3, "window/0", b"three".to_vec()).await.unwrap();
    checkpoints.commit(&metadata("job", 3, Some(state))).await.unwrap();
    assert_eq!(checkpoints.retain(1).await.unwrap(), vec![1, 2]);
    assert_eq!(checkpoints.ids().await.unwrap(), vec![3]);
}
