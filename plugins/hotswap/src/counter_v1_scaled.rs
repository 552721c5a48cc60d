//! `counter` 1.1.0 (hot-swap tests): the same state encoding (version 1), results times 1000, so a test sees both the carried state and the new code.

include!("counter_state.rs");

weir_plugin::aggregate_udfs! {
    plugin: { name: "counter", version: "1.1.0", description: "Counts rows" },

    /// Rows seen (times 1000).
    fn count_rows(value: i64) -> i64 {
        state: Count, version: 1,
        accumulate: |state| { let _ = value; state.rows += 1; },
        finish: |state| state.rows * 1000,
    }
}
