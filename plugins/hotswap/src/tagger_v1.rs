//! `tagger` 1.0.0 (hot-swap tests): tags every row "v1".

weir_plugin::scalar_udfs! {
    plugin: { name: "tagger", version: "1.0.0", description: "Tags each row with the version that processed it" },

    /// The version that processed the row.
    fn tag(seq: i64) -> String {
        let _ = seq;
        "v1".to_owned()
    }
}
