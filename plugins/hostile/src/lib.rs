//! Hostile UDFs: every function misbehaves in one way the sandbox must contain. Never use them
//! in a real pipeline; `tests/all/plugins.rs` loads each and checks that weir stays up, reports a
//! typed error, and keeps other pipelines running.

use std::hint::black_box;

fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX { 0 } else { recurse(depth + 1) + 1 }
}

weir_plugin::scalar_udfs! {
    plugin: { name: "hostile", version: "0.1.0", description: "Misbehaving functions for sandbox tests" },

    /// Never returns (a busy loop).
    fn spin(x: i64) -> i64 {
        let mut counter = black_box(x);
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }

    /// Allocates until the memory limit stops it.
    fn hog_memory(x: i64) -> i64 {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![black_box(x as u8); 1 << 20]);
            black_box(&hoard);
        }
    }

    /// Recurses until the stack limit stops it.
    fn deep_recursion(x: i64) -> i64 {
        recurse(x as u64) as i64
    }

    /// Panics (a trap) for the value 13, doubles every other value.
    fn panic_on_13(x: i64) -> i64 {
        if x == 13 {
            panic!("13 is unlucky");
        }
        x * 2
    }

    /// Tries to read a file; returns its first line or the error.
    fn read_file(path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map(|text| text.lines().next().unwrap_or_default().to_owned()).map_err(|err| format!("read_file: {err}"))
    }

    /// Tries to read an environment variable.
    fn read_env(name: &str) -> Result<String, String> {
        std::env::var(name).map_err(|err| format!("read_env: {err}"))
    }

    /// Tries to open a TCP connection.
    fn connect(address: &str) -> Result<String, String> {
        std::net::TcpStream::connect(address).map(|_| "connected".to_owned()).map_err(|err| format!("connect: {err}"))
    }

    /// Sleeps for `millis` milliseconds (a call that waits inside the host).
    fn nap(millis: i64) -> i64 {
        std::thread::sleep(std::time::Duration::from_millis(millis as u64));
        millis
    }

    /// Prints to stdout and stderr (captured by the host, capped).
    fn chatty(x: i64) -> i64 {
        println!("chatty says {x} on stdout");
        eprintln!("chatty says {x} on stderr");
        x
    }

    /// Reports a row error whose message says "trapped" for even values, traps (panics) on 13,
    /// returns every other value: a row error must never pass for a trap, nor a trap for a row
    /// error, whatever their messages say.
    fn errs_or_traps(x: i64) -> Result<i64, String> {
        if x == 13 {
            panic!("13 traps for real");
        }
        if x % 2 == 0 { Err(format!("{x} is even, so this row error says it trapped")) } else { Ok(x) }
    }

    /// Reports a counter named after its argument: one new metric series per distinct value.
    fn metric_per_value(x: i64) -> i64 {
        weir_plugin::counter_add(&format!("series_{x}"), 1);
        x
    }

    /// Returns a string of `megabytes` MiB per row.
    fn huge_output(megabytes: i64) -> String {
        "x".repeat((megabytes.max(0) as usize) << 20)
    }
}
