//! A broken `tagger` 2.0.0 (hot-swap tests): every call traps (a panic), so it must be rolled
//! back within its probation window without losing a row.

weir_plugin::scalar_udfs! {
    plugin: { name: "tagger", version: "2.0.0-traps", description: "Panics on every call" },

    /// Panics.
    fn tag(seq: i64) -> String {
        panic!("tagger 2.0.0-traps cannot tag {seq}")
    }
}
