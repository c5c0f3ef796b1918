-- MSC2753: a peek lasts until its expiry unless the client renews it by peeking again.
-- Rows from before this column get 0 and are given a fresh lifetime when the server starts.
ALTER TABLE peeks ADD COLUMN expires_ts BIGINT NOT NULL DEFAULT 0;
