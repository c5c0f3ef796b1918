//! Counters an operator (and the benchmark) can read at `GET /_seed/metrics`, in the
//! Prometheus text format. They make the engine's promises checkable from outside: a report
//! that changes nothing writes nothing and publishes nothing.
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    /// Inputs the presence engine processed (sync start/end, PUT, activity, deadline).
    pub presence_inputs: AtomicU64,
    /// Changes others can see (each one a stream position and wake-ups).
    pub presence_public_changes: AtomicU64,
    /// Changes only the user's own devices can see.
    pub presence_own_changes: AtomicU64,
    /// Users whose deadline passed and were re-merged by the timer.
    pub presence_deadlines_fired: AtomicU64,
    /// Presence rows written to the database (write-behind batches).
    pub presence_rows_written: AtomicU64,
    /// `m.presence` / `m.status` state events written into profile rooms.
    pub profile_events_written: AtomicU64,
    /// `/sync` requests answered.
    pub sync_requests: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let counters = [
            ("seed_presence_inputs_total", "Inputs the presence engine processed", &self.presence_inputs),
            ("seed_presence_public_changes_total", "Presence changes others can see", &self.presence_public_changes),
            ("seed_presence_own_changes_total", "Presence changes only the user sees", &self.presence_own_changes),
            (
                "seed_presence_deadlines_fired_total",
                "Users re-merged because a deadline passed",
                &self.presence_deadlines_fired,
            ),
            ("seed_presence_rows_written_total", "Presence rows written to the database", &self.presence_rows_written),
            (
                "seed_profile_events_written_total",
                "m.presence/m.status events written to profile rooms",
                &self.profile_events_written,
            ),
            ("seed_sync_requests_total", "/sync requests answered", &self.sync_requests),
        ];
        let mut out = String::new();
        for (name, help, c) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        for (name, help, v) in gauges {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"));
        }
        out
    }
}
