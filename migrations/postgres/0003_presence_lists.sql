-- Presence lists (seeds 001/004): `owner` follows `target`'s presence once `target` accepts.
-- `state` is 'pending' (invited, not yet accepted) or 'accepted'. The server loads the whole
-- table at start; the index on `target` serves "who asked to follow me".
CREATE TABLE presence_list (
    owner TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'accepted')),
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (owner, target)
);
CREATE INDEX presence_list_target ON presence_list (target);
