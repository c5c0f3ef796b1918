-- The room state at each event (issue #14): state groups, each a snapshot (parent NULL) or
-- a delta against a parent group, and per event the group of the state before and after it.
-- A message shares its group with the event before it; a state event adds a one-entry
-- delta. Delta chains are cut at 100 (a snapshot then). An entry with an empty event_id
-- removes its key (state resolution may drop one).
CREATE TABLE state_groups (
    group_id BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    parent BIGINT,
    chain_len BIGINT NOT NULL
);

CREATE TABLE state_group_entries (
    group_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL
);
CREATE INDEX state_group_entries_group ON state_group_entries (group_id);

-- Timeline events, soft-failed events and outliers whose state is known.
CREATE TABLE event_state_groups (
    event_id TEXT PRIMARY KEY,
    before_group BIGINT NOT NULL,
    after_group BIGINT NOT NULL
);
