//! The cross-language parity functions in Rust: `plugins/parity-{rust,python,js,c}` implement
//! the same functions and must give identical results, NULLs and errors included.

/// Lowercase ASCII letters and digits; every other run of characters becomes one `-`.
fn slugify(text: &str) -> Result<String, String> {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    if slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        return Err("no letters or digits to make a slug of".into());
    }
    Ok(slug)
}

weir_plugin::scalar_udfs! {
    plugin: { name: "parity_rust", version: "0.1.0", description: "The cross-language parity functions, in Rust" },

    /// Nexmark q1: dollars to euros at 0.908.
    fn dollar_to_euro(amount: i64) -> f64 {
        amount as f64 * 0.908
    }

    /// `text` followed by `!` (the cheapest string function: measures the string path itself).
    fn exclaim(text: &str) -> String {
        format!("{text}!")
    }

    /// The text, or `(none)` for NULL: a function that sees NULLs.
    fn or_default(text: Option<&str>) -> String {
        text.unwrap_or("(none)").to_owned()
    }

    /// A URL slug: lowercase ASCII letters and digits joined by `-`; rejects text without any.
    fn slug(text: &str) -> Result<String, String> {
        slugify(text)
    }

    /// The greatest common divisor by Euclid's loop (the function RisingWave's arrow-udf
    /// benchmarks in Python and JavaScript, for a side-by-side measurement; not named `gcd`,
    /// which is a built-in SQL function a plugin may not replace).
    fn euclid_gcd(a: i64, b: i64) -> i64 {
        let (mut a, mut b) = (a, b);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    /// `gcd` over int32 (JavaScript gets Numbers instead of BigInts).
    fn euclid_gcd32(a: i32, b: i32) -> i32 {
        let (mut a, mut b) = (a, b);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
}
