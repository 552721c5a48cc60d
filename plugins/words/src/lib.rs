//! Table UDFs: zero or more output rows per input row.

weir_plugin::table_udfs! {
    plugin: { name: "words", version: "0.1.0", description: "Split text into rows" },

    /// One row per whitespace-separated word, with its 0-based position and its lowercase form.
    fn split_words(text: &str) -> (word: String, position: i32, lower: String) {
        text.split_whitespace()
            .enumerate()
            .map(|(position, word)| (word.to_owned(), position as i32, word.to_lowercase()))
            .collect::<Vec<_>>()
    }

    /// One row per item of a delimited list (`"a,b,c"`), items trimmed, empty items dropped.
    fn explode_list(list: &str, delimiter: &str) -> (item: String) {
        let delimiter = if delimiter.is_empty() { "," } else { delimiter };
        list.split(delimiter).map(str::trim).filter(|item| !item.is_empty()).map(|item| (item.to_owned(),)).collect::<Vec<_>>()
    }
}
