//! `weir run`'s side of checkpoints: opens the job's checkpoint storage from
//! `settings.checkpoint` and picks what the run starts from: the job's latest complete
//! checkpoint (the default, so a restarted job resumes), the one given with `--restore`, or
//! nothing with `--fresh`.

use std::sync::Arc;

use weir_engine::checkpoint::CheckpointStorage;
use weir_engine::coordinator::{Checkpointing, RestorePoint};
use weir_engine::graph::JobGraph;
use weir_state::ObjectStoreCheckpoints;

/// What `weir run` was told about restoring.
#[derive(Debug, Default)]
pub struct RestoreChoice {
    /// `--restore <path>`.
    pub from: Option<String>,
    /// `--fresh`.
    pub fresh: bool,
    /// `--allow-non-restored-state`.
    pub allow_non_restored_state: bool,
}

/// Checkpointing for this run, or `None` when the pipeline has no `settings.checkpoint`.
///
/// # Errors
/// Unusable storage, a `--restore` path that is not a complete checkpoint, or `--restore` /
/// `--fresh` without `settings.checkpoint`.
pub async fn prepare(job: &JobGraph, choice: &RestoreChoice) -> Result<Option<Checkpointing>, String> {
    let Some(settings) = &job.settings.checkpoint else {
        if choice.from.is_some() || choice.fresh {
            return Err("--restore and --fresh need `settings.checkpoint` in the pipeline".into());
        }
        return Ok(None);
    };
    let job_id = job.settings.job_id(&job.file);
    let base_dir = job.file.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let storage: Arc<dyn CheckpointStorage> = Arc::new(
        ObjectStoreCheckpoints::for_job(settings, &job_id, &base_dir).map_err(|err| format!("checkpoint {err}"))?,
    );
    let restore = if choice.fresh {
        tracing::info!(job = %job_id, "starting fresh: the job's checkpoints are not restored");
        None
    } else if let Some(path) = &choice.from {
        let (from, id) =
            ObjectStoreCheckpoints::at_path(path, &settings.options).map_err(|err| format!("--restore: {err}"))?;
        let metadata = from.metadata(id).await.map_err(|err| format!("--restore: {err}"))?;
        Some(RestorePoint { storage: Arc::new(from), metadata })
    } else {
        storage
            .latest()
            .await
            .map_err(|err| err.to_string())?
            .map(|metadata| RestorePoint { storage: Arc::clone(&storage), metadata })
    };
    Ok(Some(Checkpointing {
        storage,
        settings: settings.clone(),
        job_id,
        restore,
        allow_non_restored_state: choice.allow_non_restored_state,
    }))
}
