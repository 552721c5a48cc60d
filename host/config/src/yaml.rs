//! The location-aware YAML layer under pipeline files.
//!
//! A pipeline file is a map of sections (`sources`, `transforms`, `sinks`, `settings`), each a map
//! of named components. Every component's options are deserialized into the typed config of its
//! `type`, and every error must point at the file, line and column. serde loses locations when it
//! buffers (internally tagged enums, `flatten`), so instead each component node is cut out of the
//! file into a text that keeps its original line and column (earlier lines blanked, the first line
//! indented to its column) and deserialized on its own: errors and [`Spanned`] fields inside it
//! then carry positions in the original file.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use serde_saphyr::{Location, Spanned};

use crate::SpecIssue;

impl SpecIssue {
    fn from_saphyr(err: &serde_saphyr::Error) -> Self {
        let at = err.location().filter(|loc| loc.line() > 0).map(|loc| (loc.line(), loc.column()));
        let mut message = err.to_string();
        // serde-saphyr appends " at line X column Y"; the caller prints the position itself.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
            let key = key.split(',').next().unwrap_or(key);
            message = format!("the name `{key}` is used twice; names must be unique");
        }
        Self { at, message }
    }
}

/// A value with no position (for defaults of `Spanned` options).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned { value, referenced: Location::UNKNOWN, defined: Location::UNKNOWN }
}

/// `humantime` durations (`500ms`, `10m`) as optional strings: `#[serde(with = "duration_opt")]`.
pub mod duration_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes `Option<Duration>` from an optional string.
    ///
    /// # Errors
    /// A string that is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Required `humantime` durations: `#[serde(with = "duration")]`.
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes a `Duration` from a string.
    ///
    /// # Errors
    /// A string that is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A map that keeps the position of every key and value, in file order.
#[derive(Debug)]
pub struct SpannedMap<V>(pub Vec<(Spanned<String>, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to components")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(SpannedMap(Vec::new()))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(SpannedMap(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<V>>()? {
                    entries.push(entry);
                }
                Ok(SpannedMap(entries))
            }
        }
        deserializer.deserialize_any(MapVisitor(PhantomData))
    }
}

/// One named node of the second level (`transforms.big`), ready to deserialize on its own.
#[derive(Debug, Clone)]
pub struct Node {
    /// The section it is in (`sources`, `transforms`, `sinks`, `settings`).
    pub section: String,
    /// Its name (the key).
    pub name: String,
    /// Where the key is.
    pub key_at: (u64, u64),
    /// The node text, padded so positions match the original file.
    text: String,
}

impl Node {
    /// Deserializes the node into a typed config. Errors carry positions in the original file.
    ///
    /// # Errors
    /// Unknown keys, missing keys, wrong value types.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, SpecIssue> {
        deserialize(&self.text)
    }

    /// The node without its top-level entries named in `keys` (the options every component shares,
    /// read once by the pipeline layer), so a kind's typed config sees only its own options. The
    /// removed entries are blanked in place: every other position stays what it was in the file.
    ///
    /// # Errors
    /// YAML errors with their positions.
    pub fn without(&self, keys: &[&str]) -> Result<Node, SpecIssue> {
        let text = self.text.trim_end();
        let flow = text.trim_start().starts_with('{');
        let entries: SpannedMap<IgnoredAny> = deserialize(&self.text)?;
        let starts: Vec<usize> = entries.0.iter().map(|(key, _)| byte_offset(&key.referenced)).collect();
        // An entry runs to the next key, or to the closing brace of a flow mapping.
        let end = if flow { text.len() - 1 } else { text.len() };
        let mut bytes = self.text.clone().into_bytes();
        let mut kept = 0;
        for (i, (key, _)) in entries.0.iter().enumerate() {
            if !keys.contains(&key.value.as_str()) {
                kept += 1;
                continue;
            }
            let until = starts.iter().copied().filter(|&start| start > starts[i]).min().unwrap_or(end);
            for byte in &mut bytes[starts[i]..until] {
                if *byte != b'\n' {
                    *byte = b' ';
                }
            }
        }
        let mut text = String::from_utf8(bytes).expect("only ASCII bytes were replaced, by spaces");
        if kept == 0 && !flow {
            text.push_str("{}"); // a block mapping with nothing left is an empty mapping
        }
        Ok(Node { text, ..self.clone() })
    }
}

/// Deserializes a whole document.
///
/// # Errors
/// YAML errors with their positions.
pub fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, SpecIssue> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|err| SpecIssue::from_saphyr(&err))
}

/// A pipeline document split into sections and named nodes.
#[derive(Debug)]
pub struct Document {
    /// Top-level sections in file order: name, key position, nodes.
    pub sections: Vec<(String, (u64, u64), Vec<Node>)>,
}

/// Splits a pipeline document into sections and their named nodes.
///
/// # Errors
/// YAML syntax errors and a document that is not a map of maps.
pub fn split(text: &str) -> Result<Document, SpecIssue> {
    let top: SpannedMap<SpannedMap<IgnoredAny>> = deserialize(text)?;

    // Every key's byte offset: a node's text ends where the next key after it begins.
    let mut key_offsets: Vec<usize> = Vec::new();
    for (section_key, section) in &top.0 {
        key_offsets.push(byte_offset(&section_key.referenced));
        for (key, _) in &section.value.0 {
            key_offsets.push(byte_offset(&key.referenced));
        }
    }
    key_offsets.sort_unstable();

    let sections = top
        .0
        .iter()
        .map(|(section_key, section)| {
            let nodes = section
                .value
                .0
                .iter()
                .map(|(key, value)| {
                    let start = byte_offset(&value.referenced);
                    let end = key_offsets.iter().copied().find(|&offset| offset > start).unwrap_or(text.len());
                    let (line, column) = (value.referenced.line(), value.referenced.column());
                    let mut node_text = "\n".repeat(line.saturating_sub(1) as usize);
                    node_text.push_str(&" ".repeat(column.saturating_sub(1) as usize));
                    node_text.push_str(flow_node(&text[start..end]));
                    Node {
                        section: section_key.value.clone(),
                        name: key.value.clone(),
                        key_at: (key.referenced.line(), key.referenced.column()),
                        text: node_text,
                    }
                })
                .collect();
            (section_key.value.clone(), (section_key.referenced.line(), section_key.referenced.column()), nodes)
        })
        .collect();
    Ok(Document { sections })
}

/// A flow node (`{ ... }` or `[ ... ]`) ends at its closing bracket, not at the next key: in a
/// flow-style section the text up to the next key also holds `,` or the parent's `}`.
fn flow_node(text: &str) -> &str {
    let (open, close) = match text.as_bytes().first() {
        Some(b'{') => (b'{', b'}'),
        Some(b'[') => (b'[', b']'),
        _ => return text,
    };
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        match quote {
            Some(b'"') if byte == b'\\' => i += 1,
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None if byte == b'"' || byte == b'\'' => quote = Some(byte),
            None if byte == open || byte == b'{' || byte == b'[' => depth += 1,
            None if byte == close || byte == b'}' || byte == b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &text[..=i];
                }
            }
            None => {}
        }
        i += 1;
    }
    text
}

fn byte_offset(location: &Location) -> usize {
    location.span().byte_offset().unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Filter {
        #[serde(rename = "type")]
        kind: String,
        inputs: Vec<Spanned<String>>,
        #[serde(rename = "where")]
        predicate: Spanned<String>,
    }

    const DOC: &str = "\
sources:
  bids: { type: nexmark, events: 10 }
transforms:
  big:
    type: filter
    inputs: [bids]
    where: \"price > 1\"
  flow: { type: filter, inputs: [big], where: \"price > 2\" }
sinks:
  out: { type: blackhole, inputs: [flow] }
";

    #[test]
    fn nodes_keep_their_original_positions() {
        let doc = split(DOC).unwrap();
        let names: Vec<_> = doc.sections.iter().map(|(name, _, _)| name.as_str()).collect();
        assert_eq!(names, ["sources", "transforms", "sinks"]);
        let transforms = &doc.sections[1].2;
        assert_eq!(transforms[0].name, "big");
        assert_eq!(transforms[0].key_at, (4, 3));
        let big: Filter = transforms[0].deserialize().unwrap();
        assert_eq!(big.predicate.value, "price > 1");
        assert_eq!(big.predicate.referenced.line(), 7);
        let flow: Filter = transforms[1].deserialize().unwrap();
        assert_eq!(flow.inputs[0].referenced.line(), 8);
        assert_eq!(flow.predicate.referenced.line(), 8);
    }

    #[test]
    fn unknown_keys_point_at_the_key() {
        let text = DOC.replace("    where:", "    wher:");
        let doc = split(&text).unwrap();
        let err = doc.sections[1].2[0].deserialize::<Filter>().unwrap_err();
        assert_eq!(err.at.map(|(line, _)| line), Some(7), "{err:?}");
        assert!(err.message.contains("wher"), "{}", err.message);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(rename = "where")]
        predicate: Spanned<String>,
    }

    #[test]
    fn shared_options_are_removed_and_positions_kept() {
        let doc = split(DOC).unwrap();
        for (i, line) in [(0, 7), (1, 8)] {
            let node = doc.sections[1].2[i].without(&["type", "inputs"]).unwrap();
            let own: Own = node.deserialize().unwrap();
            assert_eq!(own.predicate.referenced.line(), line);
        }
        let only_shared = doc.sections[2].2[0].without(&["type", "inputs"]).unwrap();
        let err = only_shared.deserialize::<Own>().unwrap_err();
        assert!(err.message.contains("where"), "{err:?}");
        let last = split("a:\n  b: { where: x, type: filter }\n").unwrap();
        let own: Own = last.sections[0].2[0].without(&["type"]).unwrap().deserialize().unwrap();
        assert_eq!(own.predicate.value, "x");
        let block = split("a:\n  b:\n    type: filter\n    event_time:\n      column: ts\n    where: y\n").unwrap();
        let own: Own = block.sections[0].2[0].without(&["type", "event_time"]).unwrap().deserialize().unwrap();
        assert_eq!(own.predicate.referenced.line(), 6);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = split("sources:\n  a: { type: x\n").unwrap_err();
        assert!(err.at.is_some(), "{err:?}");
    }
}
