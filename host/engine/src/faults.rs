//! Faults injected on purpose, for tests of recovery: `WEIR_FAULTS=snapshot@per_second#2,...`
//! makes the 2nd snapshot of component `per_second` fail (counted over the whole process, so a
//! restarted job does not meet the same fault again). Points: `process` (a stateful step takes a
//! batch), `snapshot` (it copies its state at a barrier), `restore` (it starts from a
//! checkpoint), `close` (a sink closes at the end of its input). Without the variable nothing is
//! checked beyond one branch. Each injected fault is logged (`injected fault`) and fails the
//! task like any other error, so the job's restart strategy takes over.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::component::RuntimeError;

/// `(point, component)` → (the occurrence that fails, occurrences so far).
type Plan = Mutex<HashMap<(String, String), (u64, u64)>>;

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let text = std::env::var("WEIR_FAULTS").ok().filter(|text| !text.trim().is_empty())?;
        let mut faults = HashMap::new();
        for entry in text.split(',') {
            let parsed = entry.trim().split_once('@').and_then(|(point, rest)| {
                let (component, nth) = rest.split_once('#')?;
                Some(((point.to_owned(), component.to_owned()), (nth.parse::<u64>().ok()?, 0)))
            });
            match parsed {
                Some((key, value)) => {
                    faults.insert(key, value);
                }
                None => tracing::error!(entry, "WEIR_FAULTS: expected point@component#n; entry ignored"),
            }
        }
        Some(Mutex::new(faults))
    })
    .as_ref()
}

/// Fails when `WEIR_FAULTS` asks for a fault at this occurrence of `point` in `component`.
///
/// # Errors
/// [`RuntimeError::Injected`] at the planned occurrence.
pub fn check(point: &str, component: &str) -> Result<(), RuntimeError> {
    let Some(plan) = plan() else { return Ok(()) };
    let mut plan = plan.lock().expect("not poisoned");
    let Some((nth, seen)) = plan.get_mut(&(point.to_owned(), component.to_owned())) else { return Ok(()) };
    *seen += 1;
    if *seen == *nth {
        tracing::warn!(point, component, occurrence = *nth, "injected fault");
        return Err(RuntimeError::Injected(format!("{point} #{nth} of `{component}` (WEIR_FAULTS)")));
    }
    Ok(())
}
