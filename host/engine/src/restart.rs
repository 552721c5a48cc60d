//! Restart strategies (Flink's `fixed-delay`, `exponential-delay`, `failure-rate`): whether, and
//! after how long, a job whose task failed is started again, within the process, from its last
//! complete checkpoint. [`runner::run_with`](crate::runner::run_with) consults them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use weir_config::settings::RestartStrategy;

/// A restart strategy and what it has counted so far.
#[derive(Debug)]
pub struct Restarts {
    strategy: RestartStrategy,
    restarts: u32,
    /// `failure-rate`: when the recent failures happened.
    failures: VecDeque<Instant>,
    /// `exponential-delay`: the next delay before jitter.
    backoff: Option<Duration>,
}

impl Restarts {
    /// Nothing counted yet.
    pub fn new(strategy: RestartStrategy) -> Self {
        Self { strategy, restarts: 0, failures: VecDeque::new(), backoff: None }
    }

    /// Restarts granted so far.
    pub fn count(&self) -> u32 {
        self.restarts
    }

    /// A task failed at `now` in a run that started at `run_started`: the delay before the job
    /// is started again, or `None` when the strategy gives up (the job fails).
    pub fn on_failure(&mut self, run_started: Instant, now: Instant) -> Option<Duration> {
        let delay = match &self.strategy {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay(fixed) => (self.restarts < fixed.attempts).then_some(fixed.delay),
            RestartStrategy::FailureRate(rate) => {
                self.failures.push_back(now);
                while self.failures.front().is_some_and(|&at| now.duration_since(at) > rate.interval) {
                    self.failures.pop_front();
                }
                (self.failures.len() <= rate.max_failures as usize).then_some(rate.delay)
            }
            RestartStrategy::ExponentialDelay(exponential) => {
                let backoff = match self.backoff {
                    Some(backoff) if now.duration_since(run_started) < exponential.reset_after => backoff,
                    _ => exponential.initial_backoff,
                };
                let next = backoff.mul_f64(exponential.multiplier.max(1.0)).min(exponential.max_backoff);
                self.backoff = Some(next);
                Some(jittered(backoff.min(exponential.max_backoff), exponential.jitter))
            }
        };
        if delay.is_some() {
            self.restarts += 1;
        }
        delay
    }
}

/// `delay` moved randomly by up to `jitter` of itself either way (so restarted jobs do not hit a
/// recovering system in step).
fn jittered(delay: Duration, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    if jitter == 0.0 {
        return delay;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let spread = f64::from(nanos % 10_000) / 10_000.0 * 2.0 - 1.0;
    delay.mul_f64((1.0 + spread * jitter).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_config::settings::{ExponentialDelay, FailureRate, FixedDelay};

    #[test]
    fn fixed_delay_gives_up_after_its_attempts() {
        let delay = Duration::from_millis(10);
        let mut restarts = Restarts::new(RestartStrategy::FixedDelay(FixedDelay { attempts: 2, delay }));
        let now = Instant::now();
        assert_eq!(restarts.on_failure(now, now), Some(delay));
        assert_eq!(restarts.on_failure(now, now), Some(delay));
        assert_eq!(restarts.on_failure(now, now), None);
        assert_eq!(restarts.count(), 2);
        assert_eq!(Restarts::new(RestartStrategy::None).on_failure(now, now), None);
    }

    #[test]
    fn failure_rate_counts_failures_within_its_interval() {
        let strategy = FailureRate { max_failures: 2, interval: Duration::from_secs(60), delay: Duration::ZERO };
        let mut restarts = Restarts::new(RestartStrategy::FailureRate(strategy));
        let t0 = Instant::now();
        assert!(restarts.on_failure(t0, t0).is_some());
        assert!(restarts.on_failure(t0, t0 + Duration::from_secs(1)).is_some());
        assert!(restarts.on_failure(t0, t0 + Duration::from_secs(2)).is_none(), "three within a minute");
        assert!(restarts.on_failure(t0, t0 + Duration::from_secs(200)).is_some(), "the old ones expired");
    }

    #[test]
    fn exponential_delay_grows_to_its_maximum_and_resets_after_a_quiet_run() {
        let strategy = ExponentialDelay {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
            multiplier: 2.0,
            reset_after: Duration::from_secs(3600),
            jitter: 0.0,
        };
        let mut restarts = Restarts::new(RestartStrategy::ExponentialDelay(strategy));
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..4).map(|_| restarts.on_failure(t0, t0).unwrap().as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 3, 3]);
        let later = t0 + Duration::from_secs(7200);
        assert_eq!(restarts.on_failure(t0, later), Some(Duration::from_secs(1)), "a long run resets the delay");
        let jittered = jittered(Duration::from_secs(10), 0.1);
        assert!(jittered >= Duration::from_secs(9) && jittered <= Duration::from_secs(11), "{jittered:?}");
    }
}
