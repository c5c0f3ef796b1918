//! The current state of a room, held in memory (copy-on-write) so auth checks, membership
//! questions and wake-ups never hit the database.
//!
//! Compact (issue #13): memberships are kept as (interned user id → event id, membership),
//! about 70 bytes each instead of a whole `m.room.member` event (~1 KB with its
//! `prev_content`). Every other state event (create, power levels, join rules, history
//! visibility, name, topic, profile-room `m.presence`/`m.status`, …) is few per room and is
//! kept as its JSON text (compressed in blocks: `state_text.rs`), decoded when read: parsed,
//! an event costs ~5 KB of small allocations against ~700 bytes of text, and with a profile
//! room per user the parsed form was most of the server's memory (10,000 users: ~450 of
//! 580 MB). The few values read on every `/sync` (room type, join rule, history visibility)
//! are kept decoded beside them.
//! Whole member events, for a `/sync` `state` section or `/state`, come from the
//! store through the bounded event cache (`Rooms::state_events`, `state_read.rs`).
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;

use super::event::Pdu;
use super::state_text::{NewText, Texts};
use crate::ground::user_ids::{intern_ix, UserIx};

const MEMBER: &str = "m.room.member";

/// A fresh [`RoomState::members_rev`]: unique across every state of the process.
fn next_members_rev() -> u64 {
    static REV: AtomicU64 = AtomicU64::new(1);
    REV.fetch_add(1, Ordering::Relaxed)
}

/// An event id without its heap allocation when it is a room-version-4+ reference hash
/// (`$` + 43 url-safe base64 characters = 32 bytes); other forms (`$local:server`, from
/// older room versions over federation) are kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventRef {
    Hash([u8; 32]),
    Text(Arc<str>),
}

impl EventRef {
    pub(crate) fn new(event_id: &str) -> Self {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if let Some(b64) = event_id.strip_prefix('$').filter(|b| b.len() == 43) {
            let mut bytes = [0u8; 32];
            // Only a canonical encoding (one that encodes back to the same text) is packed.
            if engine.decode_slice(b64, &mut bytes).ok() == Some(32) && engine.encode(bytes) == b64 {
                return Self::Hash(bytes);
            }
        }
        Self::Text(Arc::from(event_id))
    }

    pub(crate) fn to_id(&self) -> String {
        match self {
            Self::Hash(b) => format!("${}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)),
            Self::Text(t) => t.to_string(),
        }
    }

    pub(crate) fn is(&self, event_id: &str) -> bool {
        match self {
            Self::Hash(_) => *self == Self::new(event_id),
            Self::Text(t) => &**t == event_id,
        }
    }
}

/// A membership value (`content.membership` of an `m.room.member` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MembershipKind {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
    /// Absent or not one of the above (the auth rules refuse those, but stored state is
    /// loaded as it is).
    Unknown,
}

impl MembershipKind {
    fn parse(m: Option<&str>) -> Self {
        match m {
            Some("join") => Self::Join,
            Some("invite") => Self::Invite,
            Some("leave") => Self::Leave,
            Some("ban") => Self::Ban,
            Some("knock") => Self::Knock,
            _ => Self::Unknown,
        }
    }

    fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Self::Join => "join",
            Self::Invite => "invite",
            Self::Leave => "leave",
            Self::Ban => "ban",
            Self::Knock => "knock",
            Self::Unknown => return None,
        })
    }
}

/// What the state keeps of one `m.room.member` event.
#[derive(Debug, Clone)]
struct Member {
    event: EventRef,
    membership: MembershipKind,
    /// The member's number among interned ids (fits in what was padding).
    user: UserIx,
}

impl Member {
    fn of(pdu: &Pdu, user: UserIx) -> Self {
        Self { event: EventRef::new(&pdu.event_id), membership: MembershipKind::parse(pdu.membership()), user }
    }
}

/// Memberships by (interned) user id, in user-id order: a sorted vector, sized to what it
/// holds (a B-tree node is allocated for 11 entries; a profile room has one member).
#[derive(Debug, Clone, Default)]
struct Members(Vec<(Arc<str>, Member)>);

impl Members {
    /// From memberships in any order; of two for one user the later wins.
    fn from_unsorted(all: Vec<(Arc<str>, Member)>) -> Self {
        let mut kept = latest_per_key_sorted(all, |a, b| a.0.cmp(&b.0));
        kept.shrink_to_fit();
        Self(kept)
    }

    fn find(&self, user_id: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(u, _)| (**u).cmp(user_id))
    }

    fn get(&self, user_id: &str) -> Option<&Member> {
        self.find(user_id).ok().map(|i| &self.0[i].1)
    }

    fn insert(&mut self, user: Arc<str>, member: Member) {
        match self.find(&user) {
            Ok(i) => self.0[i].1 = member,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (user, member));
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Member)> {
        self.0.iter().map(|(u, m)| (u, m))
    }

    fn values(&self) -> impl Iterator<Item = &Member> {
        self.0.iter().map(|(_, m)| m)
    }
}

/// The values of three state events read on every `/sync` and room check, kept decoded.
#[derive(Debug, Clone, Default)]
struct Derived {
    room_type: Option<Box<str>>,
    /// The create event's `room_version`: asked for every event built and every federation
    /// read, so kept here rather than parsed from the create event's text each time.
    room_version: Option<Box<str>>,
    join_rule: Option<Box<str>>,
    history_visibility: Option<Box<str>>,
}

impl Derived {
    fn note(&mut self, pdu: &Pdu) {
        if pdu.state_key.as_deref() != Some("") {
            return;
        }
        let field = |name: &str| pdu.content.get(name).and_then(serde_json::Value::as_str).map(Box::from);
        match pdu.kind.as_str() {
            "m.room.create" => {
                self.room_type = field("type");
                self.room_version = field("room_version");
            }
            "m.room.join_rules" => self.join_rule = field("join_rule"),
            "m.room.history_visibility" => self.history_visibility = field("history_visibility"),
            _ => {}
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RoomState {
    /// Every state event but memberships, as compressed text (`state_text.rs`).
    texts: Texts,
    derived: Derived,
    /// Memberships by (interned) user id.
    members: Members,
    /// Whole member events, kept only by a state built for federation auth and DAG reads
    /// ([`RoomState::from_events`]): the state at an event, replayed from the timeline. The
    /// cached current state of a room is compact and leaves this empty.
    whole_members: BTreeMap<Arc<str>, Arc<Pdu>>,
    keep_whole: bool,
    /// Changes with every change to `members` (see [`RoomState::members_rev`]).
    members_rev: u64,
}

impl RoomState {
    /// A state that keeps its member events whole too (federation: auth checks against the
    /// state at an event, `/state`, `send_join`). Not for the cached current state.
    pub fn from_events(events: impl IntoIterator<Item = Pdu>) -> Self {
        Self::built(events, true)
    }

    /// An empty state that keeps its member events whole (see [`RoomState::from_events`]).
    pub(crate) fn whole() -> Self {
        Self { keep_whole: true, ..Self::default() }
    }

    /// Whether member events are kept whole (see [`RoomState::from_events`]).
    pub(crate) fn keeps_whole(&self) -> bool {
        self.keep_whole
    }

    /// A compact state (memberships as ids) from events, as the room cache holds it.
    pub fn compact_from_events(events: impl IntoIterator<Item = Pdu>) -> Self {
        Self::built(events, false)
    }

    /// The state `events` (oldest first) add up to, built at once: texts compressed once per
    /// block and memberships sorted once, not once per event.
    fn built(events: impl IntoIterator<Item = Pdu>, keep_whole: bool) -> Self {
        let mut s = Self { keep_whole, ..Self::default() };
        let mut members = Vec::new();
        let mut others = Vec::new();
        for e in events {
            let Some(sk) = &e.state_key else { continue };
            if e.kind == MEMBER {
                let (user, ix) = intern_ix(sk);
                let e = Arc::new(e);
                if keep_whole {
                    s.whole_members.insert(user.clone(), e.clone());
                }
                members.push((user, Member::of(&e, ix)));
            } else {
                s.derived.note(&e);
                match serde_json::to_string(&e) {
                    Ok(json) => others.push((e, json)),
                    Err(err) => {
                        tracing::error!(event_id = %e.event_id, error = %err, "state event not kept: cannot encode it")
                    }
                }
            }
        }
        s.texts = Texts::build(others.iter().map(|(e, json)| NewText::of(e, json)));
        s.members = Members::from_unsorted(members);
        s.members_rev = next_members_rev();
        s
    }

    /// The state as the store keeps it: whole non-member events, and (user id, event id,
    /// membership) per member (`Store::load_room_state_compact`).
    /// Each non-member event comes with the JSON it was decoded from, which is what is kept.
    pub(crate) fn from_parts(events: Vec<(Pdu, String)>, members: Vec<(String, String, Option<String>)>) -> Self {
        let mut s = Self::default();
        let events: Vec<(Pdu, String)> =
            events.into_iter().filter(|(e, _)| e.kind != MEMBER && e.state_key.is_some()).collect();
        for (e, _) in &events {
            s.derived.note(e);
        }
        s.texts = Texts::build(events.iter().map(|(e, json)| NewText::of(e, json)));
        let members = members
            .into_iter()
            .map(|(user, event_id, membership)| {
                let (user, ix) = intern_ix(&user);
                let member = Member {
                    event: EventRef::new(&event_id),
                    membership: MembershipKind::parse(membership.as_deref()),
                    user: ix,
                };
                (user, member)
            })
            .collect();
        s.members = Members::from_unsorted(members);
        s.members_rev = next_members_rev();
        s
    }

    pub fn apply(&mut self, pdu: Arc<Pdu>) {
        let Some(sk) = &pdu.state_key else { return };
        if pdu.kind == MEMBER {
            let (user, ix) = intern_ix(sk);
            if self.keep_whole {
                self.whole_members.insert(user.clone(), pdu.clone());
            }
            self.members.insert(user, Member::of(&pdu, ix));
            self.members_rev = next_members_rev();
        } else {
            self.derived.note(&pdu);
            match serde_json::to_string(&*pdu) {
                Ok(json) => {
                    self.texts.put(NewText::of(&pdu, &json));
                }
                Err(e) => {
                    tracing::error!(event_id = %pdu.event_id, error = %e, "state event not kept: cannot encode it")
                }
            }
        }
    }

    /// A state event that is kept whole: any but `m.room.member`, and member events only in a
    /// state built by [`RoomState::from_events`] (otherwise see [`RoomState::event_id`] and
    /// `Rooms::state_event_of`).
    pub(crate) fn get(&self, kind: &str, state_key: &str) -> Option<&Arc<Pdu>> {
        if kind == MEMBER {
            return self.whole_members.get(state_key);
        }
        self.texts.get(kind, state_key)
    }

    /// Decode the non-member events at `keys` ahead of [`Self::get`], sharing the work of
    /// reading their text (see `Texts::preload`).
    pub(crate) fn preload(&self, keys: &[(&str, &str)]) {
        self.texts.preload(keys);
    }

    /// The id of the current state event at (`kind`, `state_key`), whatever its type.
    pub(crate) fn event_id(&self, kind: &str, state_key: &str) -> Option<String> {
        if kind == MEMBER {
            return self.members.get(state_key).map(|m| m.event.to_id());
        }
        self.texts.id(kind, state_key).map(EventRef::to_id)
    }

    /// Whether the current state event at (`kind`, `state_key`) is `event_id`.
    pub(crate) fn is_current(&self, kind: &str, state_key: &str, event_id: &str) -> bool {
        if kind == MEMBER {
            return self.members.get(state_key).is_some_and(|m| m.event.is(event_id));
        }
        self.texts.id(kind, state_key).is_some_and(|id| id.is(event_id))
    }

    /// The state events kept whole (all but memberships, unless built by
    /// [`RoomState::from_events`]).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        self.texts.events().chain(self.whole_members.values())
    }

    /// Every entry as ids, memberships included (what a state group stores).
    pub(crate) fn ids(&self) -> crate::store::state_groups::StateIds {
        let mut out: crate::store::state_groups::StateIds =
            self.texts.keys().map(|(k, sk, id)| ((k.to_owned(), sk.to_owned()), id.to_id())).collect();
        for (user, m) in self.members.iter() {
            out.insert((MEMBER.to_owned(), user.to_string()), m.event.to_id());
        }
        out
    }

    /// The ids of the current member events (every membership, any value).
    pub(crate) fn member_event_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.members.values().map(|m| m.event.to_id())
    }

    pub fn membership(&self, user_id: &str) -> Option<&str> {
        self.members.get(user_id).and_then(|m| m.membership.as_str())
    }

    /// Equal for two states only if their memberships are the same: a state cloned from
    /// another keeps its value until a member event is applied to it, which takes a value no
    /// other state has. Lets a caller skip comparing memberships after a non-member event.
    pub(crate) fn members_rev(&self) -> u64 {
        self.members_rev
    }

    /// Joined members as their interned ids, in user-id order.
    pub(crate) fn joined_ids(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.members.iter().filter(|(_, m)| m.membership == MembershipKind::Join).map(|(u, _)| u)
    }

    /// Joined members as the numbers of their interned ids, in user-id order.
    pub(crate) fn joined_ixs(&self) -> impl Iterator<Item = UserIx> + '_ {
        self.members.values().filter(|m| m.membership == MembershipKind::Join).map(|m| m.user)
    }

    /// Users whose membership is one of `which`.
    pub fn members_with<'a>(&'a self, which: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
        self.members
            .iter()
            .filter(move |(_, m)| m.membership.as_str().is_some_and(|m| which.contains(&m)))
            .map(|(u, _)| &**u)
    }

    pub(crate) fn join_rule(&self) -> &str {
        self.derived.join_rule.as_deref().unwrap_or("invite")
    }

    pub(crate) fn history_visibility(&self) -> &str {
        self.derived.history_visibility.as_deref().unwrap_or("shared")
    }

    pub(crate) fn room_type(&self) -> Option<&str> {
        self.derived.room_type.as_deref()
    }

    /// The create event's `room_version`, as written (see [`super::dag::room_version`]).
    pub(crate) fn room_version(&self) -> Option<&str> {
        self.derived.room_version.as_deref()
    }

    /// Stripped state shown with an invite (spec: `invite_state`).
    pub(crate) fn stripped(&self) -> Vec<serde_json::Value> {
        const KEEP: &[&str] = &[
            "m.room.create",
            "m.room.name",
            "m.room.avatar",
            "m.room.topic",
            "m.room.join_rules",
            "m.room.canonical_alias",
            "m.room.encryption",
        ];
        self.texts
            .keys()
            .filter(|(kind, _, _)| KEEP.contains(kind))
            .filter_map(|(kind, state_key, _)| self.texts.get(kind, state_key))
            .map(|e| e.to_stripped())
            .collect()
    }

    /// Approximate heap bytes this state holds, for the size benchmark and test. Interned
    /// user ids are shared between rooms and not counted; the other events are counted by
    /// their entries and compressed text (decoded copies, kept only while a state object is
    /// read, are not).
    pub fn approx_bytes(&self) -> usize {
        let members = self.members.0.capacity() * std::mem::size_of::<(Arc<str>, Member)>();
        let text_ids: usize = self
            .members
            .values()
            .map(|m| match &m.event {
                EventRef::Hash(_) => 0,
                EventRef::Text(t) => t.len() + 16,
            })
            .sum();
        std::mem::size_of::<Self>() + members + text_ids + self.texts.approx_bytes()
    }
}

/// `items` (given oldest first) sorted by `order`, keeping only the last of the items it finds
/// equal: the room-state builders' "a later event at the same key replaces an earlier one".
pub(super) fn latest_per_key_sorted<T>(mut items: Vec<T>, order: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    // Stable: equal items stay in the given order.
    items.sort_by(&order);
    // `dedup_by` keeps the first of a run; swapping in each later one leaves the last.
    items.dedup_by(|later, kept| {
        let same = order(later, kept).is_eq();
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    items
}

/// The newest event per (type, state key) among `events` (given oldest first): the state a
/// series of state changes adds up to, whole events (members included).
pub(crate) fn latest_per_key(events: impl IntoIterator<Item = Pdu>) -> Vec<Arc<Pdu>> {
    let mut by_key: BTreeMap<(String, String), Arc<Pdu>> = BTreeMap::new();
    for e in events {
        if let Some(sk) = e.state_key.clone() {
            by_key.insert((e.kind.clone(), sk), Arc::new(e));
        }
    }
    by_key.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A join as Seed writes it: display name, avatar, and the invite it replaces.
    fn member(room: &str, user: &str, membership: &str) -> Pdu {
        let mut unsigned = serde_json::Map::new();
        unsigned.insert("prev_content".into(), json!({"membership": "invite"}));
        unsigned.insert("prev_sender".into(), json!("@creator:localhost"));
        let mut e = Pdu {
            event_id: String::new(),
            room_id: room.into(),
            sender: user.into(),
            kind: MEMBER.into(),
            state_key: Some(user.into()),
            content: json!({"membership": membership, "displayname": user, "avatar_url": "mxc://localhost/abcdefghijkl"}),
            origin_server_ts: 1_764_000_000_000,
            depth: 7,
            prev_events: vec!["$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg".into()],
            unsigned,
            ..Default::default()
        };
        // A reference-hash-shaped id (43 url-safe base64 characters), unique per event.
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{room}{user}{membership}{}", e.depth).as_bytes());
        e.event_id = format!("${}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest));
        e
    }

    #[test]
    fn memberships_are_answered_without_the_events() {
        let room = "!r:localhost";
        let mut s = RoomState::default();
        let mut ids = Vec::new();
        for (i, m) in ["join", "invite", "leave", "ban", "knock"].into_iter().enumerate() {
            let e = member(room, &format!("@u{i}:localhost"), m);
            ids.push(e.event_id.clone());
            s.apply(Arc::new(e));
        }
        assert_eq!(s.membership("@u0:localhost"), Some("join"));
        assert_eq!(s.membership("@u3:localhost"), Some("ban"));
        assert_eq!(s.membership("@nobody:localhost"), None);
        let joined_or_invited: Vec<&str> = s.members_with(&["join", "invite"]).collect();
        assert_eq!(joined_or_invited, ["@u0:localhost", "@u1:localhost"]);
        assert_eq!(s.event_id(MEMBER, "@u2:localhost").as_deref(), Some(ids[2].as_str()));
        assert!(s.is_current(MEMBER, "@u2:localhost", &ids[2]));
        assert!(!s.is_current(MEMBER, "@u2:localhost", &ids[1]));
        let mut listed: Vec<String> = s.member_event_ids().collect();
        listed.sort();
        ids.sort();
        assert_eq!(listed, ids);
        // A later membership replaces the earlier one.
        s.apply(Arc::new(member(room, "@u2:localhost", "join")));
        assert_eq!(s.membership("@u2:localhost"), Some("join"));
        assert_eq!(s.members_with(&["join"]).count(), 2);
    }

    /// Issue #13: a membership costs a small fixed record, not a ~1 KB event. Prints the
    /// figures (`cargo test --lib rooms::state -- --nocapture`); `benches/room_state.rs`
    /// measures the real heap.
    #[test]
    fn a_membership_costs_under_100_bytes() {
        const N: usize = 1_000;
        let room = "!big:localhost";
        let events: Vec<Pdu> = (0..N).map(|i| member(room, &format!("@user{i:05}:localhost"), "join")).collect();
        let whole_json: usize = events.iter().map(|e| serde_json::to_vec(e).unwrap().len()).sum();
        let s = RoomState::compact_from_events(events);
        let per_member = s.approx_bytes() / N;
        println!(
            "{N} members: compact ~{per_member} B per membership; the events are {} B each as JSON",
            whole_json / N
        );
        assert!(std::mem::size_of::<Member>() <= 48, "{}", std::mem::size_of::<Member>());
        assert!(per_member < 100, "{per_member} bytes per membership");
        assert!(whole_json / N > 400);
    }

    #[test]
    fn event_refs_round_trip() {
        let hash = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg";
        assert!(matches!(EventRef::new(hash), EventRef::Hash(_)));
        assert_eq!(EventRef::new(hash).to_id(), hash);
        assert!(EventRef::new(hash).is(hash));
        for other in ["$abc:example.org", "$", "", "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zh"] {
            // The last one has non-zero trailing bits: not canonical, kept as text.
            let r = EventRef::new(other);
            assert_eq!(r.to_id(), other);
            assert!(r.is(other));
        }
        assert!(!EventRef::new(hash).is("$abc:example.org"));
    }
}
