// The state every `counter` version keeps (included by each; the declared state version is what
// tells the host whether one version can read another's state).

use weir_plugin::Accumulator;

/// Rows counted so far.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Count {
    rows: i64,
}

impl Accumulator for Count {
    fn merge(&mut self, other: Self) {
        self.rows += other.rows;
    }
}
