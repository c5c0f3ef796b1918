-- Presence of users on other servers, as their servers announced it in m.presence EDUs
-- (README "Presence across servers"). Written behind (batched) when what local viewers see
-- changes, not on every re-announcement; kept so a restart does not forget the other servers'
-- users until they announce them again. device_kinds: comma-separated; currently_active 0/1.
CREATE TABLE remote_presence (
    user_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    last_active_ts BIGINT,
    currently_active BIGINT NOT NULL,
    status_msg TEXT,
    device_kinds TEXT NOT NULL
);
