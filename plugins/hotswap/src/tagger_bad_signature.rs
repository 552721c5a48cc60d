//! A broken `tagger` 2.0.0 (hot-swap tests): `tag` takes a string, so pipelines that call it
//! with an integer cannot use it and the swap must be refused.

weir_plugin::scalar_udfs! {
    plugin: { name: "tagger", version: "2.0.0-bad-signature", description: "Takes a string" },

    /// Tags by text.
    fn tag(seq: &str) -> String {
        format!("v2:{seq}")
    }
}
