//! `filter`: keeps the rows for which a SQL predicate is true (NULL counts as false).
//!
//! ```yaml
//! big: { type: filter, inputs: [bids], where: "price > 1000000" }
//! ```

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion_physical_expr::PhysicalExpr;
use serde::Deserialize;

use super::expr::compile_predicate;
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    Operator, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError,
    TransformSpec,
};
use weir_engine::errors::RecordErrorHandler;

/// `filter` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The SQL predicate.
    #[serde(rename = "where")]
    pub predicate: Spanned<String>,
}

impl TransformSpec for FilterConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        let compiled = compile_predicate(&self.predicate.value, input, &ctx.resource::<super::expr::FunctionCatalog>())
            .map_err(|err| SpecIssue::at(&self.predicate.referenced, format!("`where`: {err}")))?;
        let factory = Arc::new(FilterFactory { sql: self.predicate.value.clone(), predicate: compiled.physical });
        Ok(PlannedTransform { schema: input.clone(), factory, partitioning: Partitioning::Any })
    }
}

#[derive(Debug)]
struct FilterFactory {
    sql: String,
    predicate: Arc<dyn PhysicalExpr>,
}

impl OperatorFactory for FilterFactory {
    fn create(&self) -> OperatorInstance {
        OperatorInstance::sync(Filter { sql: self.sql.clone(), predicate: Arc::clone(&self.predicate) })
    }
}

struct Filter {
    sql: String,
    predicate: Arc<dyn PhysicalExpr>,
}

impl Operator for Filter {
    fn process(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
        _errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        let failed = |err: datafusion_common::DataFusionError| RuntimeError::Expression {
            expression: self.sql.clone(),
            reason: err.to_string(),
        };
        let mask =
            self.predicate.evaluate(&batch).and_then(|value| value.into_array(batch.num_rows())).map_err(failed)?;
        let mask = mask.as_boolean();
        if mask.true_count() == batch.num_rows() {
            out.push(batch);
        } else if mask.true_count() > 0 {
            out.push(filter_record_batch(&batch, mask)?);
        }
        Ok(())
    }
}
