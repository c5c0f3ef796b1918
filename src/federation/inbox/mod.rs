//! Incoming transactions (`PUT /_matrix/federation/v1/send/{txnId}`, spec "Transactions"):
//! PDUs go to the room service one room at a time in the order sent (different rooms
//! concurrently), EDUs to the services they concern. Idempotent per (origin, txnId): the
//! answer is kept in `federation_txn_answers` for a day, so a repeated transaction (also one
//! arriving while the first is still being processed, or after a restart) gets the first
//! answer and is not processed again.
mod data;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use ruma::{CanonicalJsonValue, RoomVersionId};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;

use crate::ephemeral::Ephemeral;
use crate::error::Result;
use crate::presence::federated::PresenceFederation;
use crate::presence::list_federation::{self, ListFederation};
use crate::rooms::Rooms;
use crate::store::Store;

/// Kept answers are forgotten after this long (peers retry within minutes).
const ANSWER_RETENTION_MS: i64 = 24 * 3_600_000;

/// The body of `PUT /send/{txnId}` (`origin` and `origin_server_ts` are not used: the
/// verified X-Matrix origin is the sender).
#[derive(Debug, Deserialize)]
pub struct Transaction {
    pub pdus: Vec<Value>,
    #[serde(default)]
    pub edus: Vec<Value>,
}

pub struct Inbox {
    store: Store,
    rooms: Arc<Rooms>,
    ephemeral: Arc<Ephemeral>,
    /// Transactions being processed, so a concurrent repeat waits for the first answer.
    in_flight: DashMap<(String, String), Arc<OnceCell<Value>>>,
    processed: AtomicU64,
    /// Presence across servers (`m.presence` EDUs, and who we last heard from).
    presence: std::sync::OnceLock<Arc<PresenceFederation>>,
    /// Presence lists across servers (`m.presence_invite`/`_accept`/`_deny`, and our drop).
    lists: std::sync::OnceLock<Arc<ListFederation>>,
}

impl Inbox {
    pub fn new(store: Store, rooms: Arc<Rooms>, ephemeral: Arc<Ephemeral>) -> Arc<Self> {
        Arc::new(Self {
            store,
            rooms,
            ephemeral,
            in_flight: DashMap::new(),
            processed: AtomicU64::new(0),
            presence: std::sync::OnceLock::new(),
            lists: std::sync::OnceLock::new(),
        })
    }

    /// Where `m.presence` EDUs go (set once at start-up; built after the inbox).
    pub fn attach_presence(&self, presence: Arc<PresenceFederation>) {
        let _ = self.presence.set(presence);
    }

    /// Where the presence-list EDUs go (set once at start-up).
    pub fn attach_lists(&self, lists: Arc<ListFederation>) {
        let _ = self.lists.set(lists);
    }

    /// Process a transaction from `origin` once and answer `{"pdus": {event_id: {} | {"error"}}}`.
    /// The caller has checked the spec's size limits.
    pub async fn transaction(&self, origin: &str, txn_id: &str, txn: Transaction) -> Result<Value> {
        if let Some(p) = self.presence.get() {
            p.heard_from(origin);
        }
        let key = (origin.to_owned(), txn_id.to_owned());
        let cell = self.in_flight.entry(key.clone()).or_default().clone();
        let answer = cell
            .get_or_try_init(|| async {
                if let Some(kept) = self.store.fed_txn_answer(origin, txn_id).await? {
                    return Ok::<_, crate::error::MatrixError>(
                        serde_json::from_str(&kept).unwrap_or(json!({"pdus": {}})),
                    );
                }
                let answer = self.process(origin, txn).await;
                let now = crate::rooms::now_ms();
                self.store.fed_put_txn_answer(origin, txn_id, &answer.to_string(), now).await?;
                if self.processed.fetch_add(1, Ordering::Relaxed).is_multiple_of(100) {
                    self.store.fed_prune_txn_answers(now - ANSWER_RETENTION_MS).await?;
                }
                Ok(answer)
            })
            .await
            .cloned();
        self.in_flight.remove(&key);
        answer
    }

    async fn process(&self, origin: &str, txn: Transaction) -> Value {
        // Per room, in the order sent.
        let mut by_room: Vec<(String, Vec<Value>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for pdu in txn.pdus {
            let Some(room_id) = pdu.get("room_id").and_then(Value::as_str).map(str::to_owned) else {
                tracing::info!(origin, "transaction PDU without a room_id ignored");
                continue;
            };
            let i = *index.entry(room_id.clone()).or_insert_with(|| {
                by_room.push((room_id, Vec::new()));
                by_room.len() - 1
            });
            by_room[i].1.push(pdu);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (room_id, pdus) in by_room {
            let (rooms, origin) = (self.rooms.clone(), origin.to_owned());
            tasks.spawn(async move { receive_room(&rooms, &origin, &room_id, pdus).await });
        }
        let edus = txn.edus;
        self.receive_edus(origin, &edus).await;
        let mut answers = Map::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(list) => answers.extend(list),
                Err(e) => tracing::error!(origin, error = %e, "processing a room's PDUs failed"),
            }
        }
        json!({"pdus": answers})
    }

    async fn receive_edus(&self, origin: &str, edus: &[Value]) {
        for edu in edus {
            let kind = edu.get("edu_type").and_then(Value::as_str).unwrap_or_default();
            let content = edu.get("content").unwrap_or(&Value::Null);
            let outcome = match kind {
                "m.typing" => self.ephemeral.remote_typing(origin, content).await,
                "m.receipt" => self.ephemeral.remote_receipts(origin, content).await,
                "m.presence" => match self.presence.get() {
                    Some(p) => p.receive(origin, content).await,
                    None => Ok(()),
                },
                list_federation::PRESENCE_INVITE
                | list_federation::PRESENCE_ACCEPT
                | list_federation::PRESENCE_DENY
                | list_federation::PRESENCE_DROP => match self.lists.get() {
                    Some(l) => l.receive(origin, kind, content).await,
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            if let Err(why) = outcome {
                tracing::debug!(origin, edu_type = kind, %why, "EDU ignored");
            }
        }
    }
}

/// One room's PDUs of a transaction, in order: (event id, `{}` or `{"error"}`) each.
async fn receive_room(rooms: &Rooms, origin: &str, room_id: &str, pdus: Vec<Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for pdu in pdus {
        let fallback = fallback_event_id(rooms, room_id, &pdu).await;
        match rooms.receive_pdu(origin, pdu).await {
            Ok(event_id) => out.push((event_id, json!({}))),
            Err(error) => match fallback {
                Some(event_id) => out.push((event_id, json!({"error": error}))),
                None => tracing::info!(origin, room_id, %error, "PDU refused (no event id to report it under)"),
            },
        }
    }
    out
}

/// The id a refused PDU is reported under: its reference hash in the room's version when the
/// room is known here, else the `event_id` it names (room versions 1 and 2 carry one).
async fn fallback_event_id(rooms: &Rooms, room_id: &str, pdu: &Value) -> Option<String> {
    let computed = async {
        let state = rooms.state(room_id).await.ok()?;
        let create = state.get("m.room.create", "")?;
        let version = create.content.get("room_version").and_then(Value::as_str).unwrap_or("1");
        let version = RoomVersionId::try_from(version).ok()?;
        let CanonicalJsonValue::Object(obj) = serde_json::from_value(pdu.clone()).ok()? else { return None };
        super::pdu::event_id(&obj, &version).ok()
    };
    match computed.await {
        Some(id) => Some(id),
        None => pdu.get("event_id").and_then(Value::as_str).filter(|id| id.len() <= 255).map(str::to_owned),
    }
}
