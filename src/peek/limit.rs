//! Per-user rate limit for `/peek` (MSC2753 "Security considerations": servers should rate
//! limit `/peek`), answered with `429 M_LIMIT_EXCEEDED` and `retry_after_ms`.
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{MatrixError, Result};

pub struct UserLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl UserLimiter {
    /// `per_second == 0` disables the limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter }
    }

    pub fn check(&self, user_id: &str) -> Result<()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&user_id.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            MatrixError::LimitExceeded { retry_after_ms: wait.as_millis().max(1) as u64 }
        })
    }
}
