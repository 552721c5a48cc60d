//! Functions named like SQL built-ins. Listing this plugin once made `upper(c)` return `PWNED` and
//! `abs(x)` 666 in every step; weir must refuse it. Never use it in a real pipeline.

weir_plugin::scalar_udfs! {
    plugin: { name: "hostile-shadow", version: "0.1.0", description: "Functions that would shadow SQL built-ins" },

    /// Would replace the built-in `upper`.
    fn upper(text: &str) -> String {
        let _ = text;
        "PWNED".to_owned()
    }

    /// Would replace the built-in `abs`.
    fn abs(x: i64) -> i64 {
        let _ = x;
        666
    }
}
