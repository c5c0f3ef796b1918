//! The clock engines with timers read (STYLE.md: "Read the clock through an injected `Clock`
//! in engines with timers; tests advance it"). [`Clock::system`] is the wall clock; a
//! [`Clock::manual`] one only moves when a test calls [`Clock::advance`], and its sleepers
//! wake when it passes their deadline, so timer tests run without real sleeps.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Milliseconds since the Unix epoch on the system clock.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// A cheap, cloneable handle on the system clock or on a manual one.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<watch::Sender<i64>>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system"),
            Some(t) => write!(f, "Clock::manual({})", *t.borrow()),
        }
    }
}

impl Clock {
    /// The wall clock (what the server runs on).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock standing at `start_ms` until [`Clock::advance`] moves it.
    pub fn manual(start_ms: i64) -> Self {
        Self { manual: Some(Arc::new(watch::channel(start_ms).0)) }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            None => system_now_ms(),
            Some(t) => *t.borrow(),
        }
    }

    /// Move a manual clock forward by `ms`, waking whoever sleeps until a time it passes.
    /// Panics on the system clock: only tests move time.
    pub fn advance(&self, ms: i64) {
        let t = self.manual.as_ref().expect("only a manual clock can be advanced");
        t.send_modify(|now| *now += ms.max(0));
    }

    /// Resolves once the clock reads at least `at_ms`.
    pub async fn sleep_until(&self, at_ms: i64) {
        match &self.manual {
            None => tokio::time::sleep(Duration::from_millis((at_ms - system_now_ms()).max(0) as u64)).await,
            Some(t) => {
                let mut rx = t.subscribe();
                let _ = rx.wait_for(|now| *now >= at_ms).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_advanced_past_their_deadline() {
        let clock = Clock::manual(1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(1_500).await }
        });
        clock.advance(499);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke before its deadline");
        clock.advance(1);
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.expect("woke").expect("joined");
        assert_eq!(clock.now_ms(), 1_500);
    }
}
