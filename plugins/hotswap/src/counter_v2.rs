//! `counter` 2.0.0 (hot-swap tests): a new state encoding (version 2): a job holding version 1 states must refuse it.

include!("counter_state.rs");

weir_plugin::aggregate_udfs! {
    plugin: { name: "counter", version: "2.0.0", description: "Counts rows" },

    /// Rows seen (times 1).
    fn count_rows(value: i64) -> i64 {
        state: Count, version: 2,
        accumulate: |state| { let _ = value; state.rows += 1; },
        finish: |state| state.rows * 1,
    }
}
