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

/// The options every source, transform and sink may have, read once by the pipeline layer: a
/// kind's typed config never sees them.
pub const SHARED_OPTIONS: &[&str] = &["type", "inputs", "parallelism", "on_error", "dead_letter", "event_time"];

/// The options every dimension table may have, read by the lookup layer.
pub const SHARED_TABLE_OPTIONS: &[&str] = &["type", "cache", "lookup"];

/// Which of the shared options a kind takes, besides `type` (and `inputs`, which every transform
/// and sink needs). The pipeline layer refuses the others with an error naming the option and the
/// kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Supports {
    /// `on_error: fail | skip | dead-letter` and `dead_letter:`: the kind reports rows or records
    /// that fail.
    pub errors: bool,
    /// `on_error: retry`: failed rows are tried again until they succeed (a step that waits on an
    /// external system).
    pub retry: bool,
    /// `event_time:`: timestamps and watermarks (sources).
    pub event_time: bool,
    /// `parallelism:`: the number of subtasks (transforms).
    pub parallelism: bool,
    /// A `<name>.late` output with the rows that arrived too late.
    pub late_output: bool,
}

impl Supports {
    /// What every source takes: `event_time`.
    pub const SOURCE: Self =
        Self { errors: false, retry: false, event_time: true, parallelism: false, late_output: false };
    /// What every transform takes: `parallelism`.
    pub const TRANSFORM: Self =
        Self { errors: false, retry: false, event_time: false, parallelism: true, late_output: false };
    /// What every sink takes: nothing beyond `type` and `inputs`.
    pub const SINK: Self =
        Self { errors: false, retry: false, event_time: false, parallelism: false, late_output: false };
    /// Dimension tables: their shared options are `cache` and `lookup`.
    pub const TABLE: Self = Self::SINK;

    /// Also `on_error` (fail, skip, dead-letter) and `dead_letter`.
    #[must_use]
    pub const fn errors(self) -> Self {
        Self { errors: true, ..self }
    }

    /// Also `on_error: retry`.
    #[must_use]
    pub const fn retry(self) -> Self {
        Self { errors: true, retry: true, ..self }
    }

    /// Also `parallelism` (a source that splits its own work, such as a generator).
    #[must_use]
    pub const fn parallelism(self) -> Self {
        Self { parallelism: true, ..self }
    }

    /// Also a `.late` output.
    #[must_use]
    pub const fn late_output(self) -> Self {
        Self { late_output: true, ..self }
    }
}

/// A registered kind, found by its `type` name: what shared options it takes, and its parser.
pub struct Kind<'a, T: ?Sized> {
    /// The shared options the kind takes.
    pub supports: Supports,
    shared: &'static [&'static str],
    parse: &'a Parse<T>,
}

impl<T: ?Sized> Kind<'_, T> {
    /// Reads the node's own options (the shared ones removed) into the kind's typed config.
    ///
    /// # Errors
    /// The kind's config errors, with positions in the file.
    pub fn parse(&self, node: &Node) -> Result<Box<T>, SpecIssue> {
        (self.parse)(&node.without(self.shared)?)
    }
}

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
    shared: &'static [&'static str],
    parsers: IndexMap<String, (Supports, Parse<T>)>,
}

impl<T: ?Sized> Kinds<T> {
    fn new(role: &'static str, shared: &'static [&'static str]) -> Self {
        Self { role, shared, parsers: IndexMap::new() }
    }

    fn add(&mut self, name: String, supports: Supports, parse: Parse<T>) -> Result<(), DuplicateKind> {
        if self.parsers.contains_key(&name) {
            return Err(DuplicateKind { role: self.role, name });
        }
        self.parsers.insert(name, (supports, parse));
        Ok(())
    }

    fn find(&self, kind: &Spanned<String>) -> Result<Kind<'_, T>, SpecIssue> {
        let (supports, parse) = self.parsers.get(&kind.value).ok_or_else(|| {
            let known: Vec<&str> = self.parsers.keys().map(String::as_str).collect();
            SpecIssue::at(
                &kind.referenced,
                format!("unknown {} type `{}`; known types: {}", self.role, kind.value, known.join(", ")),
            )
        })?;
        Ok(Kind { supports: *supports, shared: self.shared, parse })
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
            sources: Kinds::new("source", SHARED_OPTIONS),
            transforms: Kinds::new("transform", SHARED_OPTIONS),
            sinks: Kinds::new("sink", SHARED_OPTIONS),
            tables: Kinds::new("table", SHARED_TABLE_OPTIONS),
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
        #[doc = concat!("Registers a ", $what, " type: which shared options it takes, and `parse`, which reads")]
        /// its own options (the node without the shared ones) into its typed config.
        ///
        /// # Errors
        /// The name is already taken for this role.
        pub fn $register<S, F>(
            &mut self,
            name: impl Into<String>,
            supports: Supports,
            parse: F,
        ) -> Result<(), DuplicateKind>
        where
            S: $spec + 'static,
            F: Fn(&Node) -> Result<S, SpecIssue> + Send + Sync + 'static,
        {
            let parse: Parse<dyn $spec> =
                Arc::new(move |node| parse(node).map(|spec| Box::new(spec) as Box<dyn $spec>));
            self.$field.add(name.into(), supports, parse)
        }

        #[doc = concat!("The ", $what, " type named `kind`.")]
        ///
        /// # Errors
        /// An unknown type, listing the known ones.
        pub fn $parse(&self, kind: &Spanned<String>) -> Result<Kind<'_, dyn $spec>, SpecIssue> {
            self.$field.find(kind)
        }

        #[doc = concat!("The registered ", $what, " types and what they support, in registration order.")]
        pub fn $names(&self) -> impl Iterator<Item = (&str, Supports)> {
            self.$field.parsers.iter().map(|(name, (supports, _))| (name.as_str(), *supports))
        }
    };
}

impl Registry {
    kind_methods!(register_source, source, sources, sources, SourceSpec, "source");
    kind_methods!(register_transform, transform, transforms, transforms, TransformSpec, "transform");
    kind_methods!(register_sink, sink, sinks, sinks, SinkSpec, "sink");
    kind_methods!(register_table, table, tables, tables, TableSpec, "dimension-table");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{PlanContext, PlannedSource};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
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
        registry.register_source("first", Supports::SOURCE, |node| node.deserialize::<Nothing>()).unwrap();
        registry.register_source("second", Supports::SOURCE.errors(), |node| node.deserialize::<Nothing>()).unwrap();
        let again =
            registry.register_source("first", Supports::SOURCE, |node| node.deserialize::<Nothing>()).unwrap_err();
        assert_eq!(again.to_string(), "a source type `first` is already registered");
        let names: Vec<&str> = registry.sources().map(|(name, _)| name).collect();
        assert_eq!(names, ["first", "second"]);

        let declared = node("sources:\n  a: { type: third, on_error: skip, event_time: { column: ts } }\n");
        let kind = weir_config::yaml::unspanned("third".to_owned());
        let err = registry.source(&kind).err().unwrap();
        assert_eq!(err.message, "unknown source type `third`; known types: first, second");
        let kind = weir_config::yaml::unspanned("second".to_owned());
        let second = registry.source(&kind).unwrap();
        assert_eq!(second.supports, Supports::SOURCE.errors());
        second.parse(&declared).expect("the shared options are not the kind's");
    }
}
