//! How often and how long to retry: exponential backoff with full jitter.
//!
//! After the `n`th failed attempt the runner waits a uniformly random time in
//! `[0, min(max, base * 2^(n-1))]` ("full jitter", as in AWS's *Exponential Backoff and
//! Jitter*): retries of many consumers that failed together spread out instead of hammering
//! the dependency in lockstep.

use std::time::Duration;

use rand::Rng;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; at least 1. After this many failures the
    /// message is dead-lettered.
    pub max_attempts: u32,
    /// The cap of the first wait.
    pub base: Duration,
    /// The largest cap any wait can have.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits capped at 100 ms, 200 ms, 400 ms, 800 ms.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The cap of the wait after `failed_attempts` failures (at least 1).
    pub fn cap(&self, failed_attempts: u32) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// A random wait in `[0, cap(failed_attempts)]`.
    pub fn delay(&self, failed_attempts: u32, rng: &mut impl Rng) -> Duration {
        let cap = self.cap(failed_attempts);
        if cap.is_zero() {
            return cap;
        }
        Duration::from_nanos(rng.gen_range(0..=cap.as_nanos().min(u128::from(u64::MAX)) as u64))
    }

    /// True when a message that failed `failed_attempts` times with a retriable error may be
    /// tried again.
    pub fn may_retry(&self, failed_attempts: u32) -> bool {
        failed_attempts < self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn caps_double_up_to_the_max() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let caps: Vec<u64> = (1..=6).map(|n| p.cap(n).as_millis() as u64).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.cap(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn delays_are_full_jitter_within_the_cap() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| p.delay(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= p.cap(3)));
        // Spread over the whole range, not clustered at the cap.
        assert!(delays.iter().any(|d| *d < p.cap(3) / 4));
        assert!(delays.iter().any(|d| *d > p.cap(3) * 3 / 4));
    }

    #[test]
    fn attempts_are_counted_with_the_first() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.may_retry(1) && p.may_retry(2));
        assert!(!p.may_retry(3));
        let once = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert!(!once.may_retry(1), "0 means a single attempt");
    }
}
