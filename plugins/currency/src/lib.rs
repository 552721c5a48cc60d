//! Currency and unit conversion UDFs.

/// Rates to euros used by `convert` (fixed table; a real deployment would join a rates table).
const EURO_RATES: &[(&str, f64)] = &[("EUR", 1.0), ("USD", 0.908), ("GBP", 1.17), ("CNY", 0.127), ("JPY", 0.0061)];

fn euro_rate(code: &str) -> Result<f64, String> {
    EURO_RATES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(code))
        .map(|(_, rate)| *rate)
        .ok_or_else(|| format!("unknown currency `{code}`"))
}

weir_plugin::scalar_udfs! {
    plugin: { name: "currency", version: "0.1.0", description: "Currency and unit conversion" },

    /// Nexmark q1: a dollar amount to euros at the benchmark's fixed rate of 0.908.
    fn dollar_to_euro(amount: i64) -> f64 {
        amount as f64 * 0.908
    }

    /// Converts `amount` from one currency to another (ISO codes); an unknown code rejects the row.
    fn convert(amount: f64, from: &str, to: &str) -> Result<f64, String> {
        Ok(amount * euro_rate(from)? / euro_rate(to)?)
    }

    /// Degrees Celsius to Fahrenheit.
    fn celsius_to_fahrenheit(celsius: f64) -> f64 {
        celsius * 1.8 + 32.0
    }
}
