-- Federation (server-server API): other servers' signing keys, as fetched and verified.

-- The latest verified key response of each server (`GET /_matrix/key/v2/server`), kept as
-- the server signed it so this server can serve it again as a notary.
CREATE TABLE federation_key_responses (
    server_name TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL
);

-- Every key ever seen per server (current and old), so signatures made with a key that has
-- since been rotated can still be checked. expired_ts is NULL for a current key.
CREATE TABLE federation_server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    PRIMARY KEY (server_name, key_id)
);
