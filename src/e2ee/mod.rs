//! End-to-end encryption, server side (client-server spec v1.11 "End-to-End Encryption"):
//! the server stores and relays keys and to-device messages; it never decrypts anything.
//!
//! - `keys`: device keys, one-time and fallback keys (`/keys/upload`, `/query`, `/claim`);
//! - `cross_signing`: cross-signing keys and signatures;
//! - `device_lists`: who must re-fetch whose keys (`device_lists` in `/sync`, `/keys/changes`);
//! - `to_device`: `/sendToDevice` and `to_device` in `/sync`;
//! - `backup`: server-side key backup (`/room_keys`).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::accounts::{Accounts, Session};
use crate::error::Result;
use crate::ground::{Notifier, StreamHub};
use crate::rooms::Rooms;
use crate::store::Store;

pub mod backup;
mod backup_data;
pub mod cross_signing;
mod data;
pub mod device_lists;
pub mod keys;
pub mod to_device;

/// Bounds on what clients may store (every user-controlled input has one).
pub mod limits {
    /// A device-keys or cross-signing-key object, serialized.
    pub const MAX_KEY_OBJECT_BYTES: usize = 16 * 1024;
    /// One one-time or fallback key, serialized.
    pub const MAX_ONE_TIME_KEY_BYTES: usize = 4 * 1024;
    /// One-time keys in one `/keys/upload`.
    pub const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize = 1000;
    /// Unclaimed one-time keys kept per device (clients keep ~50).
    pub const MAX_ONE_TIME_KEYS_PER_DEVICE: i64 = 10_000;
    /// Fallback keys (one per algorithm) in one upload.
    pub const MAX_FALLBACK_KEYS_PER_UPLOAD: usize = 16;
    /// Key ids (`algorithm:id`, device ids, user ids).
    pub const MAX_ID_BYTES: usize = 255;
    /// Users in one `/keys/query`, devices in one `/keys/claim`, keys in one signatures upload.
    pub const MAX_QUERY_USERS: usize = 1000;
    pub const MAX_CLAIM_DEVICES: usize = 1000;
    pub const MAX_SIGNED_OBJECTS: usize = 1000;
    /// Recipient devices of one `/sendToDevice`.
    pub const MAX_TO_DEVICE_RECIPIENTS: usize = 10_000;
    /// Undelivered to-device messages kept per device; beyond that senders get 429.
    pub const MAX_TO_DEVICE_QUEUE: i64 = 1000;
    /// To-device messages in one `/sync` response (the rest come in the next one).
    pub const MAX_TO_DEVICE_PER_SYNC: i64 = 100;
    /// Key-backup sessions in one upload.
    pub const MAX_BACKUP_SESSIONS_PER_UPLOAD: usize = 10_000;
    /// One backed-up session, serialized.
    pub const MAX_BACKUP_SESSION_BYTES: usize = 16 * 1024;
}

/// The one-time-key algorithm every client uploads; `/sync` always reports its count so a
/// client with none left knows to upload more.
pub const SIGNED_CURVE25519: &str = "signed_curve25519";
/// MSC2732's unstable names, still read by some clients.
pub const UNSTABLE_FALLBACK_KEYS: &str = "org.matrix.msc2732.fallback_keys";
pub const UNSTABLE_UNUSED_FALLBACK_TYPES: &str = "org.matrix.msc2732.device_unused_fallback_key_types";

/// Unclaimed one-time keys per algorithm and the unused fallback-key algorithms of a device.
#[derive(Debug, Clone, Default)]
pub struct KeyCounts {
    pub one_time: BTreeMap<String, i64>,
    pub unused_fallback: Vec<String>,
}

type DeviceKey = (String, String);

pub struct E2ee {
    store: Store,
    rooms: Arc<Rooms>,
    accounts: Arc<Accounts>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    max_to_device_bytes: usize,
    /// Each user's newest device-list change, by user and by position (all users, loaded at
    /// start).
    device_list_pos: device_lists::DeviceListLog,
    /// Key counts per device, loaded on first use; dropped on every change.
    key_counts: DashMap<DeviceKey, Arc<KeyCounts>>,
    key_counts_gen: AtomicU64,
    /// Per device: (messages queued, queue seen empty at). Equal numbers mean nothing waits,
    /// so a `/sync` costs no query; a missing entry means "not known, ask the database".
    to_device_seen: DashMap<DeviceKey, (u64, u64)>,
    /// `/sendToDevice` calls served; every 1000th prunes old transaction ids.
    to_device_sends: AtomicU64,
}

impl E2ee {
    pub async fn new(
        store: Store,
        rooms: Arc<Rooms>,
        accounts: Arc<Accounts>,
        stream: Arc<StreamHub>,
        notifier: Arc<Notifier>,
        max_to_device_bytes: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let device_list_pos = device_lists::DeviceListLog::default();
        for (user, pos) in store.e2e_device_list_changes().await? {
            device_list_pos.note(&user, pos);
        }
        Ok(Arc::new(Self {
            store,
            rooms,
            accounts,
            stream,
            notifier,
            max_to_device_bytes,
            device_list_pos,
            key_counts: DashMap::new(),
            key_counts_gen: AtomicU64::new(0),
            to_device_seen: DashMap::new(),
            to_device_sends: AtomicU64::new(0),
        }))
    }

    /// Unclaimed one-time keys and unused fallback keys of a device (cached).
    pub async fn key_counts(&self, user_id: &str, device_id: &str) -> Result<Arc<KeyCounts>> {
        let key = (user_id.to_owned(), device_id.to_owned());
        if let Some(c) = self.key_counts.get(&key) {
            return Ok(c.clone());
        }
        let gen = self.key_counts_gen.load(Ordering::SeqCst);
        let one_time = self.store.e2e_one_time_key_counts(user_id, device_id).await?.into_iter().collect();
        let unused_fallback = self.store.e2e_unused_fallback_algorithms(user_id, device_id).await?;
        let counts = Arc::new(KeyCounts { one_time, unused_fallback });
        if gen == self.key_counts_gen.load(Ordering::SeqCst) {
            self.key_counts.insert(key, counts.clone());
        }
        Ok(counts)
    }

    fn forget_key_counts(&self, user_id: &str, device_id: &str) {
        self.key_counts_gen.fetch_add(1, Ordering::SeqCst);
        self.key_counts.remove(&(user_id.to_owned(), device_id.to_owned()));
    }

    /// A new device (login, registration): others must fetch its keys once it has some.
    pub async fn device_added(&self, session: &Session) -> Result<()> {
        self.forget_key_counts(&session.user_id, &session.device_id);
        self.to_device_seen.remove(&(session.user_id.clone(), session.device_id.clone()));
        self.device_list_changed(&session.user_id).await
    }

    /// A device is gone (logout, deletion): its keys and its to-device inbox go with it.
    pub async fn device_removed(&self, session: &Session) -> Result<()> {
        self.store.e2e_delete_device(&session.user_id, &session.device_id).await?;
        self.forget_key_counts(&session.user_id, &session.device_id);
        self.to_device_seen.remove(&(session.user_id.clone(), session.device_id.clone()));
        self.device_list_changed(&session.user_id).await
    }
}
