//! Plugin scalar functions callable from SQL expressions (`where: "is_fraud(card, amount)"`).
//!
//! Each function of each scalar plugin declared under `plugins:` is registered in the
//! pipeline's [`FunctionCatalog`](super::expr::FunctionCatalog) under its own name. Inside an
//! expression there is no per-row error policy: a row error becomes NULL (counted and logged),
//! a trap fails the job. Use a `udf` step when failing rows should be skipped or dead-lettered.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::ArrayRef;
use arrow::datatypes::DataType as ArrowType;
use datafusion_common::{DataFusionError, Result};
use datafusion_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use weir_plugin::call::{FailureKind, ScalarCaller};
use weir_plugin::convert::to_arrow_type;
use weir_plugin::registry::FunctionShape;
use weir_plugin::{Limits, PluginHandle};

/// One plugin function as a DataFusion scalar function.
#[derive(Debug)]
pub struct WasmFunction {
    name: String,
    handle: Arc<PluginHandle>,
    limits: Limits,
    signature: Signature,
    args: Vec<ArrowType>,
    return_type: ArrowType,
    /// Set when an expression calls the function: from then on, new versions must keep it.
    used: Arc<AtomicBool>,
    callers: Mutex<Vec<ScalarCaller>>,
}

impl WasmFunction {
    /// Function number `function` of a scalar plugin's current version, registered with the
    /// handle as a use that becomes live when an expression calls it.
    pub fn new(handle: Arc<PluginHandle>, limits: Limits, function: u32) -> Self {
        let current = handle.current();
        let signature = &current.plugin.functions.scalar()[function as usize];
        let args: Vec<ArrowType> = signature.args.iter().map(to_arrow_type).collect();
        let return_type = to_arrow_type(&signature.returns);
        let shape = FunctionShape::Scalar { args: args.clone(), returns: return_type.clone() };
        let used = handle.register_use("SQL expressions".into(), signature.name.clone(), shape, limits, false);
        Self {
            name: signature.name.clone(),
            return_type,
            signature: Signature::user_defined(Volatility::Immutable),
            args,
            handle,
            limits,
            used,
            callers: Mutex::new(Vec::new()),
        }
    }
}

impl PartialEq for WasmFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.handle, &other.handle)
    }
}

impl Eq for WasmFunction {}

impl Hash for WasmFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.handle.name().hash(state);
    }
}

/// The one coercion rule for plugin arguments, in SQL expressions and in `udf` / `flat_map`
/// steps alike: the declared type, NULL, or any number for a numeric parameter (cast to it).
pub fn argument_fits(given: &ArrowType, wanted: &ArrowType) -> bool {
    given == wanted || given.is_null() || (given.is_numeric() && wanted.is_numeric())
}

/// The argument types a plugin function (or aggregate) declared, if `given` can become them:
/// numbers convert to the declared numeric type (so `f(price, 3)` works for an int32 parameter);
/// anything else must match exactly: no silent number-to-string casts.
///
/// # Errors
/// A plan error naming both signatures.
pub fn coerce_to_declared(
    kind: &str,
    name: &str,
    declared: &[ArrowType],
    returns: &ArrowType,
    given: &[ArrowType],
) -> Result<Vec<ArrowType>> {
    if given.len() != declared.len() || !given.iter().zip(declared).all(|(g, w)| argument_fits(g, w)) {
        let show = |types: &[ArrowType]| types.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return datafusion_common::plan_err!(
            "plugin {kind} {name}({}) -> {returns} cannot take ({})",
            show(declared),
            show(given)
        );
    }
    Ok(declared.to_vec())
}

impl ScalarUDFImpl for WasmFunction {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, given: &[ArrowType]) -> Result<Vec<ArrowType>> {
        coerce_to_declared("function", &self.name, &self.args, &self.return_type, given)
    }

    fn return_type(&self, _arg_types: &[ArrowType]) -> Result<ArrowType> {
        // The planner asks while planning a call: the pipeline uses this function.
        self.used.store(true, Ordering::Relaxed);
        Ok(self.return_type.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args.iter().map(|value| value.to_array(rows)).collect::<Result<_>>()?;
        // One caller (one instance) per concurrent evaluation; idle ones are reused.
        let taken = self.callers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut caller = taken.unwrap_or_else(|| {
            // A trap fails the expression (and the step): the first trapping row is enough.
            let mut caller = ScalarCaller::new(Arc::clone(&self.handle), self.limits, &self.name);
            caller.set_fail_fast(true);
            caller
        });
        let result = weir_engine::blocking(|| caller.call(&arrays, rows));
        self.callers.lock().unwrap_or_else(PoisonError::into_inner).push(caller);
        let result = result.map_err(|err| DataFusionError::External(Box::new(err)))?;
        // A trap inside an expression fails the step (its error policy decides); rows the
        // function reported as errors are NULL, whatever value it returned for them.
        if let Some(trap) = result.failed.iter().find(|failure| failure.kind == FailureKind::Trap) {
            return Err(DataFusionError::Execution(format!("row {}: {}", trap.row, trap.reason)));
        }
        let Some(first) = result.failed.first() else { return Ok(ColumnarValue::Array(result.values)) };
        tracing::warn!(function = %self.name, failed = result.failed.len(), first = %first.reason, "rows failed in a plugin function; their results are NULL");
        let mut failed = vec![false; rows];
        for failure in &result.failed {
            failed[failure.row] = true;
        }
        let values = arrow::compute::nullif(&result.values, &arrow::array::BooleanArray::from(failed))?;
        Ok(ColumnarValue::Array(values))
    }
}
