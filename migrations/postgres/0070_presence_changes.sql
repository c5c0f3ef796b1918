-- The experiment change log (msc/README.md §8): one row per change of a user's effective
-- presence. Bounded by the server (experiment_log_retention_ms, experiment_log_max_records).
CREATE TABLE presence_changes (
    seq BIGINT PRIMARY KEY,
    ts BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    old_presence TEXT NOT NULL,
    new_presence TEXT NOT NULL,
    cause TEXT NOT NULL,
    device_kinds TEXT NOT NULL,
    hidden BIGINT NOT NULL
);
CREATE INDEX presence_changes_ts ON presence_changes (ts);
