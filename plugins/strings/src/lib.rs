//! String and URL utilities.

/// The value of query parameter `name` in a URL, percent-decoding not applied.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split(['&', ';']).find_map(|pair| match pair.split_once('=') {
        Some((key, value)) if key == name => Some(value),
        None if pair == name => Some(""),
        _ => None,
    })
}

/// The path of a URL, without scheme, host, query and fragment.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

weir_plugin::scalar_udfs! {
    plugin: { name: "strings", version: "0.1.0", description: "String and URL utilities" },

    /// The value of a query parameter (`url_param(url, 'channel_id')`), NULL when absent.
    fn url_param(url: &str, name: &str) -> Option<String> {
        query_param(url, name).map(str::to_owned)
    }

    /// Path segment number `index` (0-based) of a URL, NULL when there are fewer segments.
    fn url_path_segment(url: &str, index: i32) -> Option<String> {
        let index = usize::try_from(index).ok()?;
        path_of(url).split('/').filter(|segment| !segment.is_empty()).nth(index).map(str::to_owned)
    }

    /// How many times `needle` occurs in `text` (non-overlapping).
    fn count_occurrences(text: &str, needle: &str) -> Result<i64, String> {
        if needle.is_empty() {
            return Err("the needle is empty".into());
        }
        Ok(text.matches(needle).count() as i64)
    }

    /// Number of characters (Unicode scalar values).
    fn char_count(text: &str) -> i64 {
        text.chars().count() as i64
    }

    /// FNV-1a 64-bit hash of the UTF-8 bytes, for bucketing and sampling.
    fn fnv1a64(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
    }
}
