//! `blackhole`: counts rows and discards them (benchmarks, dry runs).
//!
//! ```yaml
//! sinks:
//!   nowhere: { type: blackhole, inputs: [bids] }
//! ```

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::engine::component::{PlanContext, RuntimeError, Sink, SinkFactory, SinkKind, SinkSpec};
use crate::pipeline::SpecIssue;

/// Registration.
pub const SINK: SinkKind =
    SinkKind { name: "blackhole", parse: |node| Ok(Box::new(node.deserialize::<BlackholeConfig>()?)) };

/// `blackhole` options (only the common ones).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    #[serde(rename = "type")]
    _type: IgnoredAny,
    #[serde(default, rename = "inputs")]
    _inputs: IgnoredAny,
}

impl SinkSpec for BlackholeConfig {
    fn plan(&self, _input: &SchemaRef, _ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        Ok(Arc::new(Blackhole))
    }
}

#[derive(Debug)]
struct Blackhole;

impl SinkFactory for Blackhole {
    fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        Ok(Box::new(Blackhole))
    }
}

impl Sink for Blackhole {
    fn write(&mut self, _batch: &RecordBatch) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}
