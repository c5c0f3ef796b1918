-- PostgreSQL stays flat under presence churn (issue #13; README "Presence history retention",
-- msc/README.md "Retention of presence history").
--
-- The retention task deletes superseded `m.presence`/`m.status` events (`events`,
-- `event_relations`, `presence_history`); every change also updates `current_state`,
-- `presence_state` and `stream_reservation`, and the experiment log (`presence_changes`) is
-- trimmed. On PostgreSQL a deleted or updated row is a dead tuple whose space is reused only
-- after VACUUM. With the default thresholds (autovacuum when dead tuples exceed 50 + 20 % of
-- the table) a growing table waits longer and longer between vacuums, and the file keeps
-- growing by the dead tuples in between. Here the trigger is a fixed number of dead tuples
-- instead (scale factor 0): a vacuum runs after at most that many, whatever the table's size,
-- so the dead space is bounded by a constant and the file stays flat once retention deletes
-- as much as churn writes. The cost limit is raised so one vacuum of these tables is not
-- throttled behind the default cost delay.
ALTER TABLE events SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE event_relations SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE presence_history SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE current_state SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE presence_state SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE presence_changes SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE stream_reservation SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000
);
