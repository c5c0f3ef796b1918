//! Rate limits (governor's GCRA), answered with `429 M_LIMIT_EXCEEDED` and `retry_after_ms`:
//! login and registration per IP, login per user (password guessing from many IPs), and
//! presence status changes per user.
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{MatrixError, Result};

pub struct AuthLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    login_per_user: Option<DefaultKeyedRateLimiter<String>>,
    presence_per_user: Option<DefaultKeyedRateLimiter<String>>,
}

fn keyed(quota: Option<Quota>) -> Option<DefaultKeyedRateLimiter<String>> {
    quota.map(RateLimiter::keyed)
}

fn refused<K: std::hash::Hash + Eq + Clone>(limiter: &Option<DefaultKeyedRateLimiter<K>>, key: &K) -> Result<()> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        MatrixError::LimitExceeded { retry_after_ms: wait.as_millis().max(1) as u64 }
    })
}

impl AuthLimiter {
    /// `per_second == 0` disables the limit (benchmarks).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self { limiter, login_per_user: None, presence_per_user: None }
    }

    /// Every limit from the configuration (each `0` rate disables its limit).
    pub fn from_config(c: &crate::config::Config) -> Self {
        let burst = |b: u32, rate: NonZeroU32| NonZeroU32::new(b).unwrap_or(rate);
        let login = NonZeroU32::new(c.login_rate_per_user_per_minute)
            .map(|r| Quota::per_minute(r).allow_burst(burst(c.login_rate_per_user_burst, r)));
        let presence = NonZeroU32::new(c.presence_rate_per_second)
            .map(|r| Quota::per_second(r).allow_burst(burst(c.presence_rate_burst, r)));
        Self {
            login_per_user: keyed(login),
            presence_per_user: keyed(presence),
            ..Self::new(c.auth_rate_per_second, c.auth_rate_burst)
        }
    }

    pub fn check(&self, ip: IpAddr) -> Result<()> {
        refused(&self.limiter, &ip)
    }

    /// A login attempt for `user_id`, from any IP.
    pub fn check_login(&self, user_id: &str) -> Result<()> {
        refused(&self.login_per_user, &user_id.to_owned())
    }

    /// A manual presence change by `user_id`.
    pub fn check_presence(&self, user_id: &str) -> Result<()> {
        refused(&self.presence_per_user, &user_id.to_owned())
    }
}
