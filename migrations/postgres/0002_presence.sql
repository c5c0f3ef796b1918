-- What the presence engine must keep across restarts (MSC3032 effective presence): the
-- manual status, the status message and the latest pro-active event. Device reports are not
-- kept: after a restart no device is live until it syncs again.
CREATE TABLE presence_state (
    user_id TEXT PRIMARY KEY,
    manual TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT
);
