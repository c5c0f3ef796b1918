-- Account data (spec "Client Config"): one row per (user, room, type); room_id is '' for
-- global account data. stream_pos orders changes for /sync.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_user_pos ON account_data (user_id, stream_pos);

-- Receipts (spec "Receipts"): the latest per (room, user, type, thread); thread_id is ''
-- for unthreaded receipts. event_pos is the stream position of the receipted event, so a
-- receipt never moves backwards.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_pos BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_room_pos ON receipts (room_id, stream_pos);

-- Forgotten rooms (spec "Leaving rooms", /forget): valid while the user's membership is
-- still the one at membership_pos; a later join makes the row stale.
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
