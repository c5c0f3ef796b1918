-- Peeking over federation (MSC2444), both sides (src/peek/served.rs, src/peek/remote.rs).

-- Peeks other servers hold on our rooms: while one lasts, new events of the room go to that
-- server as if it were joined. A peek ends at expires_ts unless the server renews it.
CREATE TABLE federation_peeks_served (
    room_id TEXT NOT NULL,
    server TEXT NOT NULL,
    peek_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL,
    PRIMARY KEY (room_id, server, peek_id)
);
CREATE INDEX federation_peeks_served_server ON federation_peeks_served (server);

-- Our peeks of rooms on other servers, one per room (for our local peekers). active = 0: the
-- peek ended (DELETE sent, refused or lost); the row stays so events of that room are refused
-- while no local user is in it.
CREATE TABLE federation_peeks_out (
    room_id TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    peek_id TEXT NOT NULL,
    renewal_interval_ms BIGINT NOT NULL,
    active BIGINT NOT NULL
);
