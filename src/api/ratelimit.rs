//! Per-IP rate limit for login and registration (governor's GCRA), answered with
//! `429 M_LIMIT_EXCEEDED` and `retry_after_ms`.
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{MatrixError, Result};

pub struct AuthLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl AuthLimiter {
    /// `per_second == 0` disables the limit (benchmarks).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter }
    }

    pub fn check(&self, ip: IpAddr) -> Result<()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            MatrixError::LimitExceeded { retry_after_ms: wait.as_millis().max(1) as u64 }
        })
    }
}
