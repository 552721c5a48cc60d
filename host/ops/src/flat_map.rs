//! `flat_map`: a plugin table function emits zero or more rows per input row; each output row
//! carries the input row's columns followed by the function's output columns.
//!
//! ```yaml
//! tokens: { type: flat_map, inputs: [docs], plugin: words, function: split_words, args: [body] }
//! ```
//! Rows the function fails on follow `on_error`, as for `udf`.

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
use serde::Deserialize;

use super::udf::{compile_args, evaluate_args, report_failures, resolve_function};
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    Operator, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError,
    TransformSpec,
};
use weir_engine::errors::{ErrorPolicy, RecordErrorHandler};
use weir_plugin::call::TableCaller;
use weir_plugin::convert::{to_arrow_field, type_list};
use weir_plugin::sandbox::LimitsConfig;
use weir_plugin::{Limits, PluginHandle, PluginKind};

/// `flat_map` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatMapConfig {
    /// Declared plugin name or `.wasm` path.
    pub plugin: Spanned<String>,
    /// Table function name.
    pub function: Spanned<String>,
    /// Argument expressions.
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    /// Sandbox limits for this step.
    pub limits: Option<LimitsConfig>,
}

impl TransformSpec for FlatMapConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        let (handle, limits, function) =
            resolve_function(&self.plugin, &self.function, self.limits.as_ref(), PluginKind::Table, ctx)?;
        let plugin = Arc::clone(&handle.current().plugin);
        let signature = &plugin.functions.table()[function as usize];
        let described = format!("{}.{}({})", plugin.info.name, signature.name, type_list(&signature.args));
        let args = compile_args(&self.args, &signature.args, &described, input, ctx, &self.function)?;
        let mut fields: Vec<_> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for field in &signature.output {
            if fields.iter().any(|f| f.name() == &field.name) {
                return Err(SpecIssue::at(
                    &self.function.referenced,
                    format!(
                        "the function's output column `{}` is also an input column; rename the input first",
                        field.name
                    ),
                ));
            }
            fields.push(to_arrow_field(field));
        }
        let schema = Arc::new(weir_engine::event_time::carry(input, Schema::new(fields)));
        let function = signature.name.clone();
        let factory = Arc::new(FlatMapFactory {
            schema: schema.clone(),
            handle,
            limits,
            function,
            args,
            described,
            step: ctx.component.clone(),
        });
        Ok(PlannedTransform { schema, factory, partitioning: Partitioning::Any })
    }
}

#[derive(Debug)]
struct FlatMapFactory {
    schema: SchemaRef,
    handle: Arc<PluginHandle>,
    limits: Limits,
    function: String,
    args: Vec<Arc<dyn PhysicalExpr>>,
    described: String,
    /// The step's name, for the guest's log lines.
    step: String,
}

impl OperatorFactory for FlatMapFactory {
    fn create(&self) -> OperatorInstance {
        let mut caller = TableCaller::new(Arc::clone(&self.handle), self.limits, &self.function);
        caller.set_step(&self.step);
        OperatorInstance::sync(FlatMap {
            schema: self.schema.clone(),
            caller,
            args: self.args.clone(),
            described: self.described.clone(),
            rows_seen: 0,
        })
    }
}

struct FlatMap {
    schema: SchemaRef,
    caller: TableCaller,
    args: Vec<Arc<dyn PhysicalExpr>>,
    described: String,
    rows_seen: u64,
}

impl Operator for FlatMap {
    fn process(
        &mut self,
        batch: RecordBatch,
        out: &mut Vec<RecordBatch>,
        errors: &mut RecordErrorHandler,
    ) -> Result<(), RuntimeError> {
        let rows = batch.num_rows();
        let args = evaluate_args(&self.args, &batch)?;
        // A step that fails on the first bad row needs only the first trapping row.
        self.caller.set_fail_fast(matches!(errors.policy(), ErrorPolicy::Fail | ErrorPolicy::Retry));
        let result = self.caller.call(&args, rows)?;
        report_failures(&result.failed, &batch, &args, self.rows_seen, &self.described, errors)?;
        self.rows_seen += rows as u64;
        if result.parents.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(result.parents);
        let mut columns =
            batch.columns().iter().map(|column| take(column, &indices, None)).collect::<Result<Vec<_>, _>>()?;
        columns.extend(result.columns);
        out.push(RecordBatch::try_new(self.schema.clone(), columns)?);
        Ok(())
    }

    fn runs_plugins(&self) -> bool {
        true
    }
}
