//! Aggregate UDFs whose state the host keeps: an exact percentile (the values themselves) and a
//! HyperLogLog distinct count (a fixed 4 KiB of registers, however many rows).

use serde::{Deserialize, Serialize};
use weir_plugin::Accumulator;

/// Every value seen, and the fraction asked for.
#[derive(Default, Serialize, Deserialize)]
pub struct Values {
    values: Vec<f64>,
    fraction: f64,
}

impl Accumulator for Values {
    fn merge(&mut self, other: Self) {
        if self.values.is_empty() {
            self.fraction = other.fraction;
        }
        self.values.extend(other.values);
    }
}

/// The continuous percentile (linear interpolation between the two nearest ranks), as SQL's
/// `percentile_cont`.
fn percentile_of(state: &Values) -> Option<f64> {
    let mut values = state.values.clone();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let position = state.fraction.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (below, above) = (position.floor() as usize, position.ceil() as usize);
    let weight = position - below as f64;
    Some(values[below] + (values[above] - values[below]) * weight)
}

/// HyperLogLog registers (precision 12: 4096 registers, about 1.6 % standard error).
#[derive(Serialize, Deserialize)]
pub struct Registers(Vec<u8>);

const PRECISION: u32 = 12;

impl Default for Registers {
    fn default() -> Self {
        Self(vec![0; 1 << PRECISION])
    }
}

impl Accumulator for Registers {
    fn merge(&mut self, other: Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = (*mine).max(theirs);
        }
    }
}

/// SplitMix64: a well-mixed 64-bit hash of an integer.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Registers {
    fn add(&mut self, value: i64) {
        let hash = mix(value as u64);
        let register = (hash >> (64 - PRECISION)) as usize;
        let rank = (hash << PRECISION).leading_zeros().min(64 - PRECISION) as u8 + 1;
        self.0[register] = self.0[register].max(rank);
    }

    fn estimate(&self) -> i64 {
        let m = self.0.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.0.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.0.iter().filter(|&&r| r == 0).count();
        let estimate = if raw <= 2.5 * m && zeros > 0 { m * (m / zeros as f64).ln() } else { raw };
        estimate.round() as i64
    }
}

weir_plugin::aggregate_udfs! {
    plugin: { name: "sketches", version: "0.1.0", description: "Percentiles and distinct counts as aggregates" },

    /// The `fraction` percentile of `value` (0.99 for p99), interpolated like percentile_cont.
    fn percentile(value: f64, fraction: f64) -> Option<f64> {
        state: Values, version: 1,
        accumulate: |state| { state.values.push(value); state.fraction = fraction; },
        finish: |state| percentile_of(&state),
    }

    /// About how many distinct values (HyperLogLog, ~1.6 % standard error, 4 KiB of state).
    fn approx_distinct_hll(value: i64) -> i64 {
        state: Registers, version: 1,
        accumulate: |state| state.add(value),
        finish: |state| state.estimate(),
    }
}
