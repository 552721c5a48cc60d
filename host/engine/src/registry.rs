//! The component kinds a pipeline can name in `type:`. The registry is built at start-up and
//! passed to the pipeline front end: the built-in sources, transforms, sinks and dimension tables
//! register in one place (the CLI's `registry()`), and a connector plugin registers its kinds with
//! the same calls when a pipeline loads it. Nothing reads a static list of kinds.

use std::sync::Arc;

use indexmap::IndexMap;
use weir_config::SpecIssue;
use weir_config::yaml::{Node, Spanned};

use super::component::{SinkSpec, SourceSpec, TransformSpec};
use super::table::TableSpec;

/// Reads a component's options into its typed config.
type Parse<T> = Arc<dyn Fn(&Node) -> Result<Box<T>, SpecIssue> + Send + Sync>;

/// Registering a `type` name twice for the same role.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a {role} type `{name}` is already registered")]
pub struct DuplicateKind {
    /// `source`, `transform`, `sink` or `table`.
    pub role: &'static str,
    /// The `type` name.
    pub name: String,
}

/// The kinds of one role, in registration order (errors list them in that order).
struct Kinds<T: ?Sized> {
    role: &'static str,
    parsers: IndexMap<String, Parse<T>>,
}

impl<T: ?Sized> Kinds<T> {
    fn new(role: &'static str) -> Self {
        Self { role, parsers: IndexMap::new() }
    }

    fn add(&mut self, name: String, parse: Parse<T>) -> Result<(), DuplicateKind> {
        if self.parsers.contains_key(&name) {
            return Err(DuplicateKind { role: self.role, name });
        }
        self.parsers.insert(name, parse);
        Ok(())
    }

    fn parse(&self, kind: &Spanned<String>, node: &Node) -> Result<Box<T>, SpecIssue> {
        let parse = self.parsers.get(&kind.value).ok_or_else(|| {
            let known: Vec<&str> = self.parsers.keys().map(String::as_str).collect();
            SpecIssue::at(
                &kind.referenced,
                format!("unknown {} type `{}`; known types: {}", self.role, kind.value, known.join(", ")),
            )
        })?;
        parse(node)
    }
}

/// Every component kind a job can use, by role and `type` name.
pub struct Registry {
    sources: Kinds<dyn SourceSpec>,
    transforms: Kinds<dyn TransformSpec>,
    sinks: Kinds<dyn SinkSpec>,
    tables: Kinds<dyn TableSpec>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            sources: Kinds::new("source"),
            transforms: Kinds::new("transform"),
            sinks: Kinds::new("sink"),
            tables: Kinds::new("table"),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.parsers.keys())
            .field("transforms", &self.transforms.parsers.keys())
            .field("sinks", &self.sinks.parsers.keys())
            .field("tables", &self.tables.parsers.keys())
            .finish()
    }
}

macro_rules! kind_methods {
    ($register:ident, $parse:ident, $names:ident, $field:ident, $spec:ident, $what:literal) => {
        #[doc = concat!("Registers a ", $what, " type: `parse` reads its options into its typed config.")]
        ///
        /// # Errors
        /// The name is already taken for this role.
        pub fn $register<S, F>(&mut self, name: impl Into<String>, parse: F) -> Result<(), DuplicateKind>
        where
            S: $spec + 'static,
            F: Fn(&Node) -> Result<S, SpecIssue> + Send + Sync + 'static,
        {
            self.$field.add(name.into(), Arc::new(move |node| parse(node).map(|spec| Box::new(spec) as Box<dyn $spec>)))
        }

        #[doc = concat!("Reads the options of a ", $what, " of type `kind`.")]
        ///
        /// # Errors
        /// An unknown type (listing the known ones), or the type's own config errors.
        pub fn $parse(&self, kind: &Spanned<String>, node: &Node) -> Result<Box<dyn $spec>, SpecIssue> {
            self.$field.parse(kind, node)
        }

        #[doc = concat!("The registered ", $what, " types, in registration order.")]
        pub fn $names(&self) -> impl Iterator<Item = &str> {
            self.$field.parsers.keys().map(String::as_str)
        }
    };
}

impl Registry {
    kind_methods!(register_source, parse_source, source_names, sources, SourceSpec, "source");
    kind_methods!(register_transform, parse_transform, transform_names, transforms, TransformSpec, "transform");
    kind_methods!(register_sink, parse_sink, sink_names, sinks, SinkSpec, "sink");
    kind_methods!(register_table, parse_table, table_names, tables, TableSpec, "dimension-table");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{PlanContext, PlannedSource};

    #[derive(Debug, serde::Deserialize)]
    struct Nothing {}

    impl SourceSpec for Nothing {
        fn plan(&self, _ctx: &PlanContext) -> Result<PlannedSource, SpecIssue> {
            Err(SpecIssue::new("not planned in this test"))
        }
    }

    fn node(text: &str) -> Node {
        weir_config::yaml::split(text).unwrap().sections.remove(0).2.remove(0)
    }

    #[test]
    fn kinds_register_once_and_unknown_types_list_the_known_ones() {
        let mut registry = Registry::default();
        registry.register_source("first", |node| node.without(&["type"])?.deserialize::<Nothing>()).unwrap();
        registry.register_source("second", |node| node.without(&["type"])?.deserialize::<Nothing>()).unwrap();
        let again = registry.register_source("first", |node| node.deserialize::<Nothing>()).unwrap_err();
        assert_eq!(again.to_string(), "a source type `first` is already registered");
        assert_eq!(registry.source_names().collect::<Vec<_>>(), ["first", "second"]);

        let declared = node("sources:\n  a: { type: third }\n");
        let kind = weir_config::yaml::unspanned("third".to_owned());
        let err = registry.parse_source(&kind, &declared).unwrap_err();
        assert_eq!(err.message, "unknown source type `third`; known types: first, second");
        let kind = weir_config::yaml::unspanned("second".to_owned());
        assert!(registry.parse_source(&kind, &declared).is_ok());
    }
}
