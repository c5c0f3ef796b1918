//! Operator and experiment metrics, scraped at `GET /metrics` in the Prometheus text format
//! (the `prometheus` crate). Each server owns its own registry, so several servers in one
//! process (the tests) never mix their counts. They make the engine's promises checkable from
//! outside: a report that changes nothing writes nothing and publishes nothing.
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use serde_json::Value;

pub struct Metrics {
    registry: Registry,
    /// Inputs the presence engine processed (sync start/end, PUT, activity, deadline).
    pub presence_inputs: IntCounter,
    /// Changes others can see (each one a stream position and wake-ups).
    pub presence_public_changes: IntCounter,
    /// Changes only the user's own devices can see.
    pub presence_own_changes: IntCounter,
    /// Incremental syncs that read their presence changes from the viewer's inbox.
    pub presence_inbox_reads: IntCounter,
    /// Incremental syncs whose token was older than the inbox keeps (read every change).
    pub presence_inbox_fallbacks: IntCounter,
    /// Users whose deadline passed and were re-merged by the timer.
    pub presence_deadlines_fired: IntCounter,
    /// Presence rows written to the database (write-behind batches).
    pub presence_rows_written: IntCounter,
    /// `m.presence` / `m.status` state events written into profile rooms.
    pub profile_events_written: IntCounter,
    /// `/sync` requests answered.
    pub sync_requests: IntCounter,
    /// Long-polls that waited without building a first answer: nothing had concerned the
    /// user since their token (`SyncService::sync`).
    pub sync_quiet_starts: IntCounter,
    /// Changes of a public presence state, by cause (the experiment log's rows).
    pub effective_changes: IntCounterVec,
    /// Presence delivered in `/sync` responses, by route (`legacy` m.presence, `peek`).
    pub deliveries: IntCounterVec,
    /// Request latency by matched route and method.
    pub http_latency: HistogramVec,
    /// Users whose waiting long-poll a change woke (copied from the notifier at scrape time).
    pub wakeups: IntCounter,
    /// How long one write-behind flush of presence rows took.
    pub presence_flush_seconds: Histogram,
    /// How late the presence deadline timer woke, against the earliest deadline it fired.
    pub presence_timer_lag_seconds: Histogram,
    /// From a manual status write being queued to its group committing (queue + flush lag).
    pub presence_status_commit_seconds: Histogram,
    /// Writes committed together in one status transaction (group commit).
    pub presence_status_group_writes: Histogram,
    /// Sampled at scrape time.
    pub gauges: ScrapeGauges,
    /// The outgoing federation queue (`src/federation/sender`).
    pub federation: FederationMetrics,
}

/// Outgoing federation, labelled by `kind` (`pdu`, `edu`) and, for transactions, `outcome`
/// (`sent`, `retry`, `rejected`): never by destination, so the series stay few.
pub struct FederationMetrics {
    /// Items put in a destination's queue.
    pub queued: IntCounterVec,
    /// Items a destination accepted (HTTP 200 to their transaction).
    pub sent: IntCounterVec,
    /// Items given up: rejected by the peer (4xx), or dropped (queue bound, stale typing).
    pub failed: IntCounterVec,
    /// Transaction attempts by outcome.
    pub transactions: IntCounterVec,
    /// Destinations waiting to retry after a failure (sampled at scrape time).
    pub backing_off: IntGauge,
    /// Presence across servers: `m.presence` EDUs queued, the user updates (`push` entries)
    /// they carry, and their content bytes.
    pub presence_edus: IntCounter,
    pub presence_updates_sent: IntCounter,
    pub presence_bytes_sent: IntCounter,
    /// Incoming `push` entries applied, and ignored (wrong server, malformed, nobody here may
    /// see the user, over the per-EDU bound).
    pub presence_updates_received: IntCounter,
    pub presence_updates_ignored: IntCounter,
    /// Full refreshes sent to destinations that came back.
    pub presence_refreshes: IntCounter,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl FederationMetrics {
    fn new(r: &Registry) -> Self {
        Self {
            queued: counter_vec(r, "seed_federation_queued_total", "Items queued for other servers", &["kind"]),
            sent: counter_vec(r, "seed_federation_sent_total", "Items other servers accepted", &["kind"]),
            failed: counter_vec(
                r,
                "seed_federation_failed_total",
                "Items given up (rejected, dropped from a full queue, stale)",
                &["kind"],
            ),
            transactions: counter_vec(
                r,
                "seed_federation_transactions_total",
                "Outgoing transaction attempts by outcome",
                &["outcome"],
            ),
            backing_off: gauge(r, "seed_federation_destinations_backing_off", "Destinations waiting to retry"),
            presence_edus: counter(
                r,
                "seed_federation_presence_edus_total",
                "m.presence EDUs queued for other servers",
            ),
            presence_updates_sent: counter(
                r,
                "seed_federation_presence_updates_sent_total",
                "User presence updates (push entries) queued for other servers",
            ),
            presence_bytes_sent: counter(
                r,
                "seed_federation_presence_bytes_sent_total",
                "Bytes of m.presence EDU content queued for other servers",
            ),
            presence_updates_received: counter(
                r,
                "seed_federation_presence_updates_received_total",
                "Remote user presence updates applied",
            ),
            presence_updates_ignored: counter(
                r,
                "seed_federation_presence_updates_ignored_total",
                "Remote user presence updates ignored (wrong server, malformed, not visible here, over the bound)",
            ),
            presence_refreshes: counter(
                r,
                "seed_federation_presence_refreshes_total",
                "Full presence refreshes sent to servers that came back",
            ),
        }
    }
}

/// Values read from the services when `/metrics` is scraped.
pub struct ScrapeGauges {
    pub tracked_users: IntGauge,
    pub pending_deadlines: IntGauge,
    pub open_long_polls: IntGauge,
    pub stream_position: IntGauge,
    pub db_pool_size: IntGauge,
    pub db_pool_idle: IntGauge,
    pub change_log_records: IntGauge,
    pub publish_queue: IntGauge,
    pub parked_long_polls: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Buckets for lags that should be a few milliseconds: 1 ms to 5 s.
const LAG_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new();
        let effective_changes = IntCounterVec::new(
            Opts::new("seed_presence_effective_changes_total", "Changes of a public presence state, by cause"),
            &["cause"],
        )
        .expect("valid metric");
        r.register(Box::new(effective_changes.clone())).expect("unique metric");
        let deliveries = IntCounterVec::new(
            Opts::new("seed_presence_deliveries_total", "Presence events delivered in /sync, by route"),
            &["route"],
        )
        .expect("valid metric");
        r.register(Box::new(deliveries.clone())).expect("unique metric");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("seed_http_request_duration_seconds", "Request latency by route"),
            &["method", "route"],
        )
        .expect("valid metric");
        r.register(Box::new(http_latency.clone())).expect("unique metric");
        let presence_flush_seconds = Histogram::with_opts(HistogramOpts::new(
            "seed_presence_flush_seconds",
            "Duration of one write-behind flush of presence rows",
        ))
        .expect("valid metric");
        r.register(Box::new(presence_flush_seconds.clone())).expect("unique metric");
        let gauges = ScrapeGauges {
            tracked_users: gauge(&r, "seed_presence_tracked_users", "Users the presence engine holds"),
            pending_deadlines: gauge(&r, "seed_presence_pending_deadlines", "Users with a presence deadline scheduled"),
            open_long_polls: gauge(&r, "seed_sync_waiting_users", "Users with an open long-poll subscription"),
            stream_position: gauge(&r, "seed_stream_position", "Current stream position"),
            db_pool_size: gauge(&r, "seed_db_pool_connections", "Database connections open"),
            db_pool_idle: gauge(&r, "seed_db_pool_idle_connections", "Database connections idle"),
            change_log_records: gauge(&r, "seed_experiment_log_records", "Records held in the change log"),
            publish_queue: gauge(&r, "seed_profile_publish_pending", "Users with a profile-room write pending"),
            parked_long_polls: gauge(&r, "seed_sync_parked_long_polls", "Long-polls waiting for a wake-up"),
        };
        Self {
            presence_inputs: counter(&r, "seed_presence_inputs_total", "Inputs the presence engine processed"),
            presence_public_changes: counter(
                &r,
                "seed_presence_public_changes_total",
                "Presence changes others can see",
            ),
            presence_own_changes: counter(&r, "seed_presence_own_changes_total", "Presence changes only the user sees"),
            presence_inbox_reads: counter(
                &r,
                "seed_presence_inbox_reads_total",
                "Incremental syncs that read presence changes from the viewer's inbox",
            ),
            presence_inbox_fallbacks: counter(
                &r,
                "seed_presence_inbox_fallbacks_total",
                "Incremental syncs that read every presence change (token older than the inbox)",
            ),
            presence_deadlines_fired: counter(
                &r,
                "seed_presence_deadlines_fired_total",
                "Users re-merged because a deadline passed",
            ),
            presence_rows_written: counter(
                &r,
                "seed_presence_rows_written_total",
                "Presence rows written to the database",
            ),
            profile_events_written: counter(
                &r,
                "seed_profile_events_written_total",
                "m.presence/m.status events written to profile rooms",
            ),
            sync_requests: counter(&r, "seed_sync_requests_total", "/sync requests answered"),
            sync_quiet_starts: counter(
                &r,
                "seed_sync_quiet_starts_total",
                "/sync long-polls that waited at once: nothing had concerned the user since their token",
            ),
            wakeups: counter(&r, "seed_sync_wakeups_total", "Waiting long-polls woken by a change"),
            effective_changes,
            deliveries,
            http_latency,
            presence_flush_seconds,
            presence_timer_lag_seconds: histogram(
                &r,
                "seed_presence_timer_lag_seconds",
                "How late the presence deadline timer fired after the earliest deadline it fired",
                LAG_BUCKETS.to_vec(),
            ),
            presence_status_commit_seconds: histogram(
                &r,
                "seed_presence_status_commit_seconds",
                "From a manual status write queued to its group committed",
                LAG_BUCKETS.to_vec(),
            ),
            presence_status_group_writes: histogram(
                &r,
                "seed_presence_status_group_writes",
                "Manual status writes committed in one transaction",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            ),
            gauges,
            federation: FederationMetrics::new(&r),
            registry: r,
        }
    }
}

impl Metrics {
    pub fn inc(counter: &IntCounter) {
        counter.inc();
    }

    pub fn add(counter: &IntCounter, n: u64) {
        counter.inc_by(n);
    }

    pub fn effective_change(&self, cause: &str) {
        self.effective_changes.with_label_values(&[cause]).inc();
    }

    /// Count the presence a `/sync` response delivers: legacy `m.presence` events, and
    /// `m.presence`/`m.status` state of peeked profile rooms (MSC2753 `rooms.peek`).
    pub fn count_deliveries(&self, response: &Value) {
        let legacy = response["presence"]["events"].as_array().map_or(0, Vec::len);
        let mut peek = 0;
        if let Some(rooms) = response["rooms"]["peek"].as_object() {
            for room in rooms.values() {
                for section in [&room["state"]["events"], &room["timeline"]["events"]] {
                    peek += section.as_array().map_or(0, |evs| {
                        evs.iter().filter(|e| matches!(e["type"].as_str(), Some("m.presence" | "m.status"))).count()
                    });
                }
            }
        }
        if legacy > 0 {
            self.deliveries.with_label_values(&["legacy"]).inc_by(legacy as u64);
        }
        if peek > 0 {
            self.deliveries.with_label_values(&["peek"]).inc_by(peek as u64);
        }
    }

    /// The text exposition of every metric (gauges must be set by the caller first).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
