//! `blackhole`: counts rows and discards them (benchmarks, dry runs).
//!
//! ```yaml
//! sinks:
//!   nowhere: { type: blackhole, inputs: [bids] }
//! ```

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_engine::component::{PlanContext, RuntimeError, Sink, SinkContext, SinkFactory, SinkSpec};

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

#[async_trait]
impl SinkFactory for Blackhole {
    async fn create(&self) -> Result<Box<dyn Sink>, RuntimeError> {
        Ok(Box::new(Blackhole) as Box<dyn Sink>)
    }
}

#[async_trait]
impl Sink for Blackhole {
    async fn write(&mut self, _batch: &RecordBatch, _ctx: &mut SinkContext) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), RuntimeError> {
        Ok(())
    }
}
