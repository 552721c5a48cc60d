//! `union`: merges several inputs with identical columns into one stream.
//!
//! Any transform or sink with several `inputs` already reads their union; `union` names it.
//! Rows keep their order within each input; across inputs the order is not defined.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Deserialize;

use weir_config::SpecIssue;
use weir_engine::component::{
    Operator, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError,
    TransformSpec,
};
use weir_engine::errors::RecordErrorHandler;

/// `union` options (only the common ones).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnionConfig {}

impl TransformSpec for UnionConfig {
    fn plan(&self, input: &SchemaRef, _ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        Ok(PlannedTransform { schema: input.clone(), factory: Arc::new(PassThrough), partitioning: Partitioning::Any })
    }
}

#[derive(Debug)]
struct PassThrough;

impl OperatorFactory for PassThrough {
    fn create(&self) -> OperatorInstance {
        OperatorInstance::sync(PassThrough)
    }
}

impl Operator for PassThrough {
    fn process(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
        _errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        out.push(batch);
        Ok(())
    }
}
