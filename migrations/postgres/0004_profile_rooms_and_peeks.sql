-- MSC1769 profile rooms: one per local user, owned by the user, holding server-owned presence.
CREATE TABLE profile_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL UNIQUE
);

-- MSC2753 peeks: per device, they survive the client restarting its sync from a token and
-- end on /unpeek or logout.
CREATE TABLE peeks (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id)
);
CREATE INDEX peeks_room ON peeks (room_id);
