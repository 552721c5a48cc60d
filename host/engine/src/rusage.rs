//! Resource usage of this process from `getrusage`: CPU time (user + sys, the Nexmark "per core"
//! denominator) and peak resident set size.

use std::time::Duration;

fn self_usage() -> libc::rusage {
    // SAFETY: getrusage writes into the struct we pass; RUSAGE_SELF is always valid.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

/// CPU time (user + sys) of this process so far, all threads.
pub fn cpu_time() -> Duration {
    let usage = self_usage();
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Peak resident set size of this process so far, in bytes (Linux reports kilobytes).
pub fn peak_rss_bytes() -> u64 {
    self_usage().ru_maxrss.max(0) as u64 * 1024
}
