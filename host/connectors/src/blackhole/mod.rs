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

use weir_config::SpecIssue;
use weir_engine::component::{
    BoxFuture, Durability, PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec,
};

/// `blackhole` options (only the common ones).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

impl SinkSpec for BlackholeConfig {
    fn plan(&self, _input: &SchemaRef, _ctx: &PlanContext) -> Result<Arc<dyn SinkFactory>, SpecIssue> {
        Ok(Arc::new(Blackhole))
    }
}

#[derive(Debug)]
struct Blackhole;

impl SinkFactory for Blackhole {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn Sink>, RuntimeError>> {
        Box::pin(async { Ok(Box::new(Blackhole) as Box<dyn Sink>) })
    }
}

impl Sink for Blackhole {
    fn durability(&self) -> Durability {
        Durability::OnWrite
    }

    fn write<'a>(
        &'a mut self,
        _batch: &'a RecordBatch,
        _ctx: &'a mut SinkContext,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
}
