-- Bounded presence history (README "Presence history retention", msc/README.md "Retention of
-- presence history"). Every superseded `m.presence`/`m.status` state event of a profile room
-- is noted here, in the same transaction that supersedes it, so the pruner finds what it may
-- delete without scanning `events`: it reads this table from its oldest due row.
CREATE TABLE presence_history (
    -- the superseded event (events.stream_ordering)
    stream_ordering BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    -- 1 once the pruner has seen the row and kept it for `presence_history_keep_last`; it is
    -- looked at again only when a newer version of the same room and type is due.
    kept BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX presence_history_due ON presence_history (kept, origin_server_ts);
CREATE INDEX presence_history_room ON presence_history (room_id, event_type, stream_ordering);

-- `current_state` is upserted by the room writer; the DO UPDATE branch fires this trigger.
CREATE TRIGGER presence_history_superseded AFTER UPDATE OF event_id ON current_state
WHEN OLD.event_type IN ('m.presence', 'm.status') AND OLD.state_key = '' AND OLD.event_id <> NEW.event_id
    AND EXISTS (SELECT 1 FROM profile_rooms WHERE room_id = OLD.room_id)
BEGIN
    INSERT OR IGNORE INTO presence_history (stream_ordering, room_id, event_type, origin_server_ts)
    SELECT e.stream_ordering, e.room_id, e.event_type, e.origin_server_ts
    FROM events e WHERE e.stream_ordering = OLD.stream_ordering;
END;

-- History written before this migration: one scan, once.
INSERT OR IGNORE INTO presence_history (stream_ordering, room_id, event_type, origin_server_ts)
SELECT e.stream_ordering, e.room_id, e.event_type, e.origin_server_ts
FROM events e JOIN profile_rooms p ON p.room_id = e.room_id
WHERE e.event_type IN ('m.presence', 'm.status') AND e.state_key = ''
    AND NOT EXISTS (SELECT 1 FROM current_state c
        WHERE c.room_id = e.room_id AND c.event_type = e.event_type AND c.state_key = '' AND c.event_id = e.event_id);
