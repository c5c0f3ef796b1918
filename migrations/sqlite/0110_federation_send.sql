-- Federation transport (src/federation/sender, src/federation/inbox).

-- Outgoing PDUs not yet accepted by their destination, one row per (destination, event).
-- The sender reads the oldest rows of a destination as its next transaction and deletes them
-- once the destination answered 200, so what is here survives a restart and is sent then.
-- seq is allocated by the server (largest seq + 1 at start-up), in queueing order.
CREATE TABLE federation_outbox (
    seq BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    pdu TEXT NOT NULL,
    queued_ts BIGINT NOT NULL,
    UNIQUE (destination, event_id)
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, seq);

-- Answers to incoming transactions (`PUT /send/{txnId}`), so a repeated transaction gets the
-- first answer without being processed again, also after a restart. Pruned after a day.
CREATE TABLE federation_txn_answers (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX federation_txn_answers_ts ON federation_txn_answers (ts);
