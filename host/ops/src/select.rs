//! `select`: computes output columns from SQL expressions (projection, renames, functions).
//!
//! ```yaml
//! eur: { type: select, inputs: [big], columns: ["auction", "price * 0.908 AS price_eur", "upper(channel) AS channel"] }
//! ```
//! `*` keeps every input column. Output names are the alias, the column name, or the SQL text.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
use serde::Deserialize;

use super::expr::compile_select_item;
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    Operator, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError,
    TransformSpec,
};
use weir_engine::errors::RecordErrorHandler;

/// `select` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// Output columns as SQL select items.
    pub columns: Spanned<Vec<Spanned<String>>>,
}

impl TransformSpec for SelectConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        if self.columns.value.is_empty() {
            return Err(SpecIssue::at(&self.columns.referenced, "`columns` is empty"));
        }
        let mut fields = Vec::new();
        let mut exprs = Vec::new();
        let mut sql = Vec::new();
        for item in &self.columns.value {
            let compiled = compile_select_item(&item.value, input, &ctx.resource::<super::expr::FunctionCatalog>())
                .map_err(|err| SpecIssue::at(&item.referenced, format!("`columns`: {err}")))?;
            for column in compiled {
                if fields.iter().any(|field: &arrow::datatypes::Field| field.name() == column.field.name()) {
                    return Err(SpecIssue::at(
                        &item.referenced,
                        format!(
                            "`columns`: the output column `{}` appears twice; rename one with AS",
                            column.field.name()
                        ),
                    ));
                }
                fields.push(column.field);
                exprs.push(column.physical);
                sql.push(item.value.clone());
            }
        }
        let schema = Arc::new(weir_engine::event_time::carry(input, Schema::new(fields)));
        let factory = Arc::new(SelectFactory { schema: schema.clone(), exprs, sql });
        Ok(PlannedTransform { schema, factory, partitioning: Partitioning::Any })
    }
}

#[derive(Debug)]
struct SelectFactory {
    schema: SchemaRef,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    sql: Vec<String>,
}

impl OperatorFactory for SelectFactory {
    fn create(&self) -> OperatorInstance {
        OperatorInstance::sync(Select { schema: self.schema.clone(), exprs: self.exprs.clone(), sql: self.sql.clone() })
    }
}

struct Select {
    schema: SchemaRef,
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    sql: Vec<String>,
}

impl Operator for Select {
    fn process(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
        _errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        let rows = batch.num_rows();
        let columns = self
            .exprs
            .iter()
            .zip(&self.sql)
            .map(|(expr, sql)| {
                expr.evaluate(&batch)
                    .and_then(|value| value.into_array(rows))
                    .map_err(|err| RuntimeError::Expression { expression: sql.clone(), reason: err.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }
}
