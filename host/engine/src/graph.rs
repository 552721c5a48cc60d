//! The runnable job graph: validated components in topological order, each with what it runs
//! (a factory and its error policy) and the edges into it. The pipeline front end builds it; the
//! [`runner`](super::runner) runs it.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use weir_config::settings::Settings;

use super::component::{OperatorFactory, Partitioning, SinkFactory, SourceFactory};
use super::errors::ErrorPolicy;
use super::event_time::WatermarkStrategy;

/// Which output of a component an edge reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The component's data.
    Main,
    /// The dead-letter rows of a component with `on_error: dead-letter`.
    DeadLetter,
    /// Rows a window received too late (`<window>.late`); same schema as the window's input.
    Late,
}

/// An edge into a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputRef {
    /// Index of the upstream component in [`JobGraph::components`].
    pub component: usize,
    /// Which of its outputs.
    pub port: Port,
}

/// What a planned component runs.
#[derive(Debug, Clone)]
pub enum Runnable {
    /// A source, with its bad-record policy.
    Source {
        /// Creates subtask instances.
        factory: Arc<dyn SourceFactory>,
        /// Bad-record policy.
        on_error: ErrorPolicy,
        /// Watermarks from the `event_time` option, when declared.
        watermarks: Option<WatermarkStrategy>,
    },
    /// A transform, with its failed-row policy.
    Transform {
        /// Creates subtask instances.
        factory: Arc<dyn OperatorFactory>,
        /// Failed-row policy.
        on_error: ErrorPolicy,
        /// How input rows reach the subtasks.
        partitioning: Partitioning,
    },
    /// A sink, with its policy for rows the destination rejects.
    Sink {
        /// Opens the sink.
        factory: Arc<dyn SinkFactory>,
        /// Rejected-row policy.
        on_error: ErrorPolicy,
    },
}

/// One validated component.
#[derive(Debug, Clone)]
pub struct PlannedComponent {
    /// Its name (unique across the file).
    pub name: String,
    /// Source, transform or sink.
    pub role: Role,
    /// Its `type`.
    pub kind: String,
    /// Upstream edges (empty for sources).
    pub inputs: Vec<InputRef>,
    /// Number of subtasks.
    pub parallelism: usize,
    /// Output schema (for sinks: their input schema).
    pub schema: SchemaRef,
    /// What to run.
    pub runnable: Runnable,
}

/// A validated job, in topological order (every component after its inputs).
#[derive(Debug, Clone)]
pub struct JobGraph {
    /// The pipeline file it came from.
    pub file: PathBuf,
    /// Job-wide settings.
    pub settings: Settings,
    /// Components, inputs first.
    pub components: Vec<PlannedComponent>,
}

/// Which part of the graph a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Produces data.
    Source,
    /// Transforms data.
    Transform,
    /// Writes data out.
    Sink,
}
