-- End-to-end encryption (spec "End-to-End Encryption"): the server stores and relays keys,
-- it never decrypts. JSON objects are kept as the client signed them (TEXT).

-- Device keys (`/keys/upload` device_keys), one row per device.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each is handed out once by `/keys/claim`, then deleted.
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- Fallback keys (MSC2732, spec v1.2): one per (device, algorithm); claimed when no one-time
-- key is left, and then marked used (used = 1) but kept until replaced.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through `/keys/signatures/upload`: signer's key signing_key_id signed
-- target_user_id's key target_key_id (a device id or a master key's public key).
CREATE TABLE e2e_signatures (
    signer_user_id TEXT NOT NULL,
    signing_key_id TEXT NOT NULL,
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (signer_user_id, signing_key_id, target_user_id, target_key_id)
);
CREATE INDEX e2e_signatures_target ON e2e_signatures (target_user_id);

-- Device-list changes: the stream position of each user's newest change (keys, devices,
-- cross-signing); `/sync` device_lists.changed and `/keys/changes` compare it with `since`.
CREATE TABLE e2e_device_list_changes (
    user_id TEXT PRIMARY KEY,
    stream_pos BIGINT NOT NULL
);

-- To-device messages waiting for their device. delivered_in is the sync token (stream
-- position) of the response that carried the message; a later sync with since >= it deletes it.
CREATE TABLE e2e_to_device (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL,
    delivered_in BIGINT,
    PRIMARY KEY (user_id, device_id, stream_pos)
);

-- Transaction ids of `/sendToDevice` per sending device, for idempotent retries.
CREATE TABLE e2e_to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Server-side key backup (spec "Server-side key backups"): versions per user; deleted
-- versions keep their number (never reused).
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL,
    deleted BIGINT NOT NULL,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified BIGINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
