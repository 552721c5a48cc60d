//! `counter` 1.0.0 (hot-swap tests): counts rows; state version 1.

include!("counter_state.rs");

weir_plugin::aggregate_udfs! {
    plugin: { name: "counter", version: "1.0.0", description: "Counts rows" },

    /// Rows seen (times 1).
    fn count_rows(value: i64) -> i64 {
        state: Count, version: 1,
        accumulate: |state| { let _ = value; state.rows += 1; },
        finish: |state| state.rows * 1,
    }
}
