//! gcd(a, b) by Euclid's loop over 1024-row batches in arrow-udf's Python and JavaScript
//! runtimes, with the inputs of `weir bench languages` (`host/src/cli/bench_languages.rs`,
//! `gcd_inputs`): median nanoseconds per row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

const ROWS: usize = 1024;

fn inputs(data_type: &DataType) -> RecordBatch {
    let a = (0..ROWS as i64).map(|i| i * 7919 % 1_000_000 + 1);
    let b = (0..ROWS as i64).map(|i| i * 104_729 % 100_000 + 1);
    let (a, b): (ArrayRef, ArrayRef) = match data_type {
        DataType::Int32 => (
            Arc::new(Int32Array::from_iter_values(a.map(|v| v as i32))),
            Arc::new(Int32Array::from_iter_values(b.map(|v| v as i32))),
        ),
        _ => (Arc::new(Int64Array::from_iter_values(a)), Arc::new(Int64Array::from_iter_values(b))),
    };
    let schema = Schema::new(vec![Field::new("a", data_type.clone(), true), Field::new("b", data_type.clone(), true)]);
    RecordBatch::try_new(Arc::new(schema), vec![a, b]).expect("valid batch")
}

fn median_ns_per_row(mut call: impl FnMut()) -> f64 {
    for _ in 0..3 {
        call();
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(500) || samples.len() < 5 {
        let at = Instant::now();
        call();
        samples.push(at.elapsed().as_nanos() as f64 / ROWS as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

const PYTHON: &str = "
def gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
";

const JS: &str = "
export function gcd(a, b) {
    while (b != 0) {
        let t = b;
        b = a % b;
        a = t;
    }
    return a;
}
";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("| runtime | type | gcd @1024 (ns per row) |\n|---|---|---:|");
    for data_type in [DataType::Int64, DataType::Int32] {
        let batch = inputs(&data_type);
        let mut python = arrow_udf_python::Runtime::new().expect("python runtime");
        python
            .add_function("gcd", data_type.clone(), arrow_udf_python::CallMode::ReturnNullOnNullInput, PYTHON)
            .expect("python gcd");
        let ns = median_ns_per_row(|| {
            std::hint::black_box(python.call("gcd", &batch).expect("python call"));
        });
        println!("| arrow-udf-python (CPython, unsandboxed) | {data_type} | {ns:.1} |");
    }
    for data_type in [DataType::Int64, DataType::Int32] {
        let batch = inputs(&data_type);
        let mut js = arrow_udf_js::Runtime::new().await.expect("js runtime");
        js.add_function(
            "gcd",
            data_type.clone(),
            JS,
            arrow_udf_js::FunctionOptions::default().return_null_on_null_input(),
        )
        .await
        .expect("js gcd");
        let mut samples = Vec::new();
        for _ in 0..3 {
            js.call("gcd", &batch).await.expect("js call");
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) || samples.len() < 5 {
            let at = Instant::now();
            std::hint::black_box(js.call("gcd", &batch).await.expect("js call"));
            samples.push(at.elapsed().as_nanos() as f64 / ROWS as f64);
        }
        samples.sort_by(f64::total_cmp);
        println!("| arrow-udf-js (QuickJS, unsandboxed) | {data_type} | {:.1} |", samples[samples.len() / 2]);
    }
}
