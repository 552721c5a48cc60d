//! `udf`: adds (or replaces) a column with a plugin's scalar function.
//!
//! ```yaml
//! eur: { type: udf, inputs: [bids], plugin: currency, function: dollar_to_euro, args: [price], as: price_eur, on_error: skip }
//! ```
//! `plugin` is a name declared under `plugins:` or a path to a `.wasm` file; `args` are SQL
//! expressions over the input. Rows the function rejects or traps on follow `on_error`: `fail`
//! (the job stops, naming plugin, version, function, trap and row), `skip` (the row is dropped
//! and counted) or `dead-letter` (the row, as JSON, plus the error go to the `dead_letter` sink).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
use serde::Deserialize;

use super::expr::compile_select_item;
use weir_config::SpecIssue;
use weir_config::yaml::Spanned;
use weir_engine::component::{
    Operator, OperatorFactory, OperatorInstance, Partitioning, PlanContext, PlannedTransform, RuntimeError,
    TransformSpec,
};
use weir_engine::errors::row_as_json;
use weir_engine::errors::{BadRecord, ErrorPolicy, RecordErrorHandler};
use weir_plugin::call::{RowFailure, ScalarCaller};
use weir_plugin::convert::{type_list, type_name};
use weir_plugin::registry::function_shape;
use weir_plugin::sandbox::LimitsConfig;
use weir_plugin::{Limits, PluginHandle, PluginKind};

/// `udf` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdfConfig {
    /// Declared plugin name or `.wasm` path.
    pub plugin: Spanned<String>,
    /// Function name.
    pub function: Spanned<String>,
    /// Argument expressions.
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    /// Output column name.
    #[serde(rename = "as")]
    pub output: Spanned<String>,
    /// Sandbox limits for this step (default: the plugin's).
    pub limits: Option<LimitsConfig>,
}

/// Resolves `plugin`/`function` of a step to a plugin of `kind`, its limits and the function's
/// index in the current version, and registers the use, so later versions must keep it.
pub fn resolve_function(
    plugin: &Spanned<String>,
    function: &Spanned<String>,
    limits: Option<&LimitsConfig>,
    kind: PluginKind,
    ctx: &PlanContext,
) -> Result<(Arc<PluginHandle>, Limits, u32), SpecIssue> {
    let step_limits =
        limits.map(LimitsConfig::resolve).transpose().map_err(|message| SpecIssue::at(&plugin.referenced, message))?;
    // A plugin named by path is loaded here, under the step's limits.
    let handle = ctx
        .resource::<weir_plugin::PluginRegistry>()
        .resolve(&plugin.value, &ctx.base_dir, step_limits.unwrap_or_default())
        .map_err(|message| SpecIssue::at(&plugin.referenced, message))?;
    let loaded = handle.current().plugin.clone();
    if loaded.kind() != kind {
        return Err(SpecIssue::at(
            &plugin.referenced,
            format!(
                "plugin `{}` is {} plugin; this step needs {} plugin",
                loaded.info.name,
                loaded.kind().described(),
                kind.described()
            ),
        ));
    }
    let Some((index, shape)) = function_shape(&loaded, &function.value) else {
        return Err(SpecIssue::at(
            &function.referenced,
            format!(
                "plugin `{}` has no function `{}`; it has: {}",
                loaded.info.name,
                function.value,
                loaded.functions.names().join(", ")
            ),
        ));
    };
    let limits = step_limits.unwrap_or(handle.limits);
    handle.register_use(ctx.component.clone(), function.value.clone(), shape, limits, true);
    Ok((handle, limits, index))
}

/// Compiles argument expressions and checks them against the function's declared types.
pub fn compile_args(
    args: &[Spanned<String>],
    declared: &[weir_plugin::bindings::DataType],
    signature: &str,
    input: &SchemaRef,
    ctx: &PlanContext,
    at: &Spanned<String>,
) -> Result<Vec<Arc<dyn PhysicalExpr>>, SpecIssue> {
    let mut exprs = Vec::new();
    let mut given = Vec::new();
    for arg in args {
        let mut compiled = compile_select_item(&arg.value, input, &ctx.resource::<super::expr::FunctionCatalog>())
            .map_err(|err| SpecIssue::at(&arg.referenced, format!("`args`: {err}")))?;
        let compiled = compiled
            .pop()
            .filter(|_| compiled.is_empty())
            .ok_or_else(|| SpecIssue::at(&arg.referenced, "`*` is not an argument"))?;
        given.push(compiled.field.data_type().to_string());
        exprs.push((compiled, arg));
    }
    let declared: Vec<arrow::datatypes::DataType> = declared.iter().map(weir_plugin::convert::to_arrow_type).collect();
    let matches = exprs.len() == declared.len()
        && exprs.iter().zip(&declared).all(|((c, _), d)| super::wasm_function::argument_fits(c.field.data_type(), d));
    if !matches {
        return Err(SpecIssue::at(&at.referenced, format!("{signature} is called with ({})", given.join(", "))));
    }
    // Numbers are cast to the declared type, as the same call in a `select` would be.
    exprs
        .into_iter()
        .zip(&declared)
        .map(|((compiled, arg), wanted)| {
            if compiled.field.data_type() == wanted {
                return Ok(compiled.physical);
            }
            datafusion_physical_expr::expressions::cast(compiled.physical, input, wanted.clone())
                .map_err(|err| SpecIssue::at(&arg.referenced, format!("`args`: {err}")))
        })
        .collect()
}

impl TransformSpec for UdfConfig {
    fn plan(&self, input: &SchemaRef, ctx: &PlanContext) -> Result<PlannedTransform, SpecIssue> {
        let (handle, limits, function) =
            resolve_function(&self.plugin, &self.function, self.limits.as_ref(), PluginKind::Scalar, ctx)?;
        let plugin = Arc::clone(&handle.current().plugin);
        let signature = &plugin.functions.scalar()[function as usize];
        let described = format!(
            "{}.{}({}) -> {}",
            plugin.info.name,
            signature.name,
            type_list(&signature.args),
            type_name(&signature.returns)
        );
        let args = compile_args(&self.args, &signature.args, &described, input, ctx, &self.function)?;
        let output = Field::new(&self.output.value, weir_plugin::convert::to_arrow_type(&signature.returns), true);
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let position = fields.iter().position(|f| f.name() == output.name());
        match position {
            Some(at) => fields[at] = output,
            None => fields.push(output),
        }
        let schema = Arc::new(weir_engine::event_time::carry(input, Schema::new(fields)));
        let replace = position.unwrap_or(input.fields().len());
        let function = signature.name.clone();
        let factory = Arc::new(UdfFactory {
            schema: schema.clone(),
            handle,
            limits,
            function,
            args,
            replace,
            described,
            step: ctx.component.clone(),
        });
        Ok(PlannedTransform { schema, factory, partitioning: Partitioning::Any })
    }
}

#[derive(Debug)]
struct UdfFactory {
    schema: SchemaRef,
    handle: Arc<PluginHandle>,
    limits: Limits,
    function: String,
    args: Vec<Arc<dyn PhysicalExpr>>,
    replace: usize,
    described: String,
    /// The step's name, for the guest's log lines.
    step: String,
}

impl OperatorFactory for UdfFactory {
    fn create(&self) -> OperatorInstance {
        let mut caller = ScalarCaller::new(Arc::clone(&self.handle), self.limits, &self.function);
        caller.set_step(&self.step);
        OperatorInstance::sync(Udf {
            schema: self.schema.clone(),
            caller,
            args: self.args.clone(),
            replace: self.replace,
            described: self.described.clone(),
            rows_seen: 0,
        })
    }
}

struct Udf {
    schema: SchemaRef,
    caller: ScalarCaller,
    args: Vec<Arc<dyn PhysicalExpr>>,
    replace: usize,
    described: String,
    rows_seen: u64,
}

/// Evaluates argument expressions on a batch.
pub fn evaluate_args(args: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>, RuntimeError> {
    args.iter()
        .map(|expr| {
            expr.evaluate(batch)
                .and_then(|value| value.into_array(batch.num_rows()))
                .map_err(|err| RuntimeError::Expression { expression: expr.to_string(), reason: err.to_string() })
        })
        .collect()
}

/// Applies the error policy to failed rows: each goes to `errors` with the row as JSON.
///
/// # Errors
/// The first failed row under `fail`.
pub fn report_failures(
    failed: &[RowFailure],
    batch: &RecordBatch,
    args: &[ArrayRef],
    first_row: u64,
    described: &str,
    errors: &mut RecordErrorHandler,
) -> Result<(), RuntimeError> {
    for failure in failed {
        let raw = row_as_json(batch, failure.row);
        errors.handle(BadRecord {
            position: format!(
                "input row {} of {described}, called with ({})",
                first_row + failure.row as u64,
                argument_values(args, failure.row)
            ),
            raw: &raw,
            reason: failure.reason.clone(),
        })?;
    }
    Ok(())
}

/// The longest argument value an error shows, in characters.
const SHOWN_ARGUMENT: usize = 64;

/// One row's argument values as SQL would print them, each cut at [`SHOWN_ARGUMENT`] characters.
fn argument_values(args: &[ArrayRef], row: usize) -> String {
    args.iter()
        .map(|array| {
            let value = if array.is_null(row) {
                "NULL".to_string()
            } else {
                arrow::util::display::array_value_to_string(array, row).unwrap_or_else(|_| "?".into())
            };
            let quoted =
                matches!(array.data_type(), arrow::datatypes::DataType::Utf8 | arrow::datatypes::DataType::LargeUtf8);
            let mut shown: String = value.chars().take(SHOWN_ARGUMENT).collect();
            if shown.len() < value.len() {
                shown.push('…');
            }
            if quoted { format!("'{shown}'") } else { shown }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Operator for Udf {
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
        let mut columns = batch.columns().to_vec();
        if self.replace < columns.len() {
            columns[self.replace] = result.values;
        } else {
            columns.push(result.values);
        }
        let output = RecordBatch::try_new(self.schema.clone(), columns)?;
        if result.failed.is_empty() {
            out.push(output);
        } else {
            // Failed rows were handed to the error policy: they do not continue.
            let mut keep = vec![true; rows];
            for failure in &result.failed {
                keep[failure.row] = false;
            }
            out.push(filter_record_batch(&output, &BooleanArray::from(keep))?);
        }
        Ok(())
    }

    fn runs_plugins(&self) -> bool {
        true
    }
}
