-- Rooms shared with other servers (issue #14, part 1: the room DAG).

-- The server's signing key when it is not kept in a file (federation off and no
-- `signing_key_path`): every room event is signed from the first one, so the key must exist
-- before federation is switched on. One row, `ed25519 <version> <base64 seed>`.
CREATE TABLE server_signing_key (
    id BIGINT PRIMARY KEY,
    key_line TEXT NOT NULL
);

-- Forward extremities of the rooms that have more than one (a fork in the DAG). A room
-- without rows here has one extremity: its newest event.
CREATE TABLE room_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- Events known but not in the timeline: the auth chain received with a join (outliers) and
-- rejected events (`rejected` says why; never shown to clients). `json` is the stored Pdu.
CREATE TABLE room_outliers (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    json TEXT NOT NULL,
    rejected TEXT
);
