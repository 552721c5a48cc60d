//! Functions for `weir bench plugins`: identities measure the cost of crossing the boundary,
//! `spin_sum` measures compute inside the guest.

weir_plugin::scalar_udfs! {
    plugin: { name: "bench_udfs", version: "0.1.0", description: "Benchmark functions" },

    /// Returns its argument.
    fn identity_i64(x: i64) -> i64 {
        x
    }

    /// Returns its argument.
    fn identity_str(s: &str) -> String {
        s.to_owned()
    }

    /// A CPU-bound loop: `rounds` steps of an xorshift over `x`.
    fn spin_sum(x: i64, rounds: i64) -> i64 {
        let mut state = x as u64 | 1;
        for _ in 0..rounds {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        state as i64
    }
}
