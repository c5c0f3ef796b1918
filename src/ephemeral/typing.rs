//! Typing notifications (spec "Typing Notifications"): in memory only, each typing user with
//! an expiry. Expiries live in one deadline queue run by one task; every change (start, stop,
//! expiry) takes a stream position and wakes the room's members.
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::error::Result;
use crate::ground::{Clock, Notifier, StreamHub, Timer};
use crate::rooms::Rooms;

/// Longest a client may ask to be shown typing for; longer requests are capped.
pub const MAX_TYPING_TIMEOUT_MS: u64 = 120_000;
/// What a client gets when it asks to type without a timeout.
pub const DEFAULT_TYPING_TIMEOUT_MS: u64 = 30_000;

/// Who is typing in one room and the stream position of the last change.
#[derive(Debug, Default, Clone)]
struct RoomTyping {
    users: BTreeSet<String>,
    pos: i64,
}

pub struct Typing {
    rooms: Arc<Rooms>,
    stream: Arc<StreamHub>,
    notifier: Arc<Notifier>,
    by_room: Mutex<HashMap<String, RoomTyping>>,
    /// (room id, user id) -> when the user stops typing.
    expiry: Arc<Timer<(String, String)>>,
}

impl Typing {
    pub fn new(rooms: Arc<Rooms>, stream: Arc<StreamHub>, notifier: Arc<Notifier>, clock: Clock) -> Arc<Self> {
        Arc::new(Self { rooms, stream, notifier, by_room: Default::default(), expiry: Timer::new(clock) })
    }

    /// Start (`Some(timeout)`) or stop (`None`) `user_id` typing in `room_id`. The caller has
    /// checked that the user is joined.
    pub async fn set(&self, room_id: &str, user_id: &str, timeout_ms: Option<u64>) -> Result<()> {
        let key = (room_id.to_owned(), user_id.to_owned());
        let changed = match timeout_ms {
            Some(t) => {
                let at = self.expiry.clock().now_ms() + t.min(MAX_TYPING_TIMEOUT_MS) as i64;
                self.expiry.schedule(key, at);
                self.change(room_id, |users| users.insert(user_id.to_owned()))
            }
            None => {
                self.expiry.cancel(&key);
                self.change(room_id, |users| users.remove(user_id))
            }
        };
        if let Some(pos) = changed {
            self.wake_members(room_id, pos).await?;
        }
        Ok(())
    }

    /// Apply `edit` to a room's typing set; if it changed, give the change a stream position.
    fn change(&self, room_id: &str, edit: impl FnOnce(&mut BTreeSet<String>) -> bool) -> Option<i64> {
        let pos = {
            let mut rooms = self.by_room.lock();
            let room = rooms.entry(room_id.to_owned()).or_default();
            if !edit(&mut room.users) {
                return None;
            }
            let pos = self.stream.allocate();
            // An emptied entry stays: its position tells a sync that the last typer stopped.
            room.pos = pos.pos;
            pos
        };
        let p = pos.pos;
        pos.complete();
        Some(p)
    }

    async fn wake_members(&self, room_id: &str, pos: i64) -> Result<()> {
        let state = self.rooms.state(room_id).await?;
        self.notifier.wake(state.members_with(&["join"]), pos);
        Ok(())
    }

    /// Expire typing users when their deadline passes, until `shutdown` fires.
    pub fn start(self: &Arc<Self>, workers: &crate::ground::Workers) {
        let this = self.clone();
        let handle = self.expiry.spawn(workers.signal(), move |due, _| {
            let this = this.clone();
            async move {
                for (room, user) in due {
                    if let Some(pos) = this.change(&room, |users| users.remove(&user)) {
                        if let Err(e) = this.wake_members(&room, pos).await {
                            tracing::warn!(error = %e, room = %room, "could not wake members after typing expired");
                        }
                    }
                }
            }
        });
        workers.track("typing expiry", handle);
    }

    /// The `m.typing` event of a room if it changed in `(since, upto]` (or, with no `since`,
    /// if anyone is typing). Only current members are listed.
    pub async fn event(&self, room_id: &str, since: Option<i64>, upto: i64) -> Result<Option<Value>> {
        let Some(room) = self.by_room.lock().get(room_id).cloned() else {
            return Ok(None);
        };
        if room.pos > upto {
            // Not yet visible at this watermark; the next sync sends it.
            return Ok(None);
        }
        match since {
            Some(s) if room.pos <= s => return Ok(None),
            None if room.users.is_empty() => return Ok(None),
            _ => {}
        }
        let state = self.rooms.state(room_id).await?;
        let users: Vec<&String> = room.users.iter().filter(|u| state.membership(u) == Some("join")).collect();
        if since.is_none() && users.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!({"type": "m.typing", "content": {"user_ids": users}})))
    }
}
