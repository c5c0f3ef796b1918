//! The non-member state events a room's cached state keeps ([`super::state`]), as text
//! compressed in blocks (issue #13): a profile room's nine non-member state events are ~6 KB of
//! JSON, and 10,000 users' profile rooms held ~60 MB of it.
//!
//! The texts of neighbouring events (in (type, state key) order) are compressed together, one
//! LZ4 block (`lz4_flex`) of up to [`BLOCK_TEXT`] bytes of text, against a fixed dictionary of
//! what event texts share (field names in the order events are written, the usual types and
//! contents). Together, because the events of one room repeat one another's ids: the room id,
//! the sender, the same three `auth_events`, and each event's predecessor in `prev_events`. That
//! is random base64, which a dictionary cannot know and LZ4 does not shrink alone. A profile
//! room's nine texts: 5,955 bytes of JSON, 4,027 compressed one by one, ~2,200 as one block.
//!
//! A change rewrites one block; a block that grows past twice [`BLOCK_TEXT`] is split, so a
//! room with many state events never recompresses more than that for one change. The two
//! events every presence change rewrites, `m.presence` and `m.status`, are each a block of
//! their own ([`KEPT_ALONE`]): a profile room is three blocks, and a presence change
//! recompresses ~0.6 KB, not the ~5 KB of the others. Each entry keeps its type, state key
//! and event id decoded, so ids and lookups never decompress; the event itself is decoded on
//! first use and kept only while this state object lives (a clone, which the next change
//! builds on, leaves it behind).
//!
//! The dictionary is part of this process only (nothing compressed is stored or sent), so it
//! may change between versions freely.
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use super::event::Pdu;
use super::state::EventRef;

/// What event texts share, in the order `Pdu` writes its fields.
const DICTIONARY: &[u8] = concat!(
    r#"{"type":"m.room.guest_access","content":{"guest_access":"forbidden"}}"#,
    r#"{"type":"m.room.history_visibility","content":{"history_visibility":"shared"}}"#,
    r#"{"type":"m.room.join_rules","content":{"join_rule":"invite"}}{"join_rule":"public"}"#,
    r#"{"type":"m.room.name","content":{"name":""}}{"type":"m.room.topic","content":{"topic":""}}"#,
    r##"{"type":"m.room.canonical_alias","content":{"alias":"#"}}"##,
    r#"{"type":"m.room.encryption","content":{"algorithm":"m.megolm.v1.aes-sha2"}}"#,
    r#"{"type":"m.profile","content":{"m.profile":{"fn":""}}}"#,
    r#"{"type":"m.status","content":{}}{"type":"m.status","content":{"status":""}}"#,
    r#"{"type":"m.presence","content":{"currently_active":false,"presence":"offline"}}"#,
    r#"{"currently_active":true,"presence":"online"}{"presence":"unavailable"}"#,
    r#"{"type":"m.room.power_levels","state_key":"","content":{"ban":100,"events":{},"events_default":100,"#,
    r#""invite":100,"kick":100,"redact":100,"state_default":100,"users":{"@":100},"users_default":0},"#,
    r#""events":{"m.room.name":50,"m.room.power_levels":100,"m.room.history_visibility":100,"#,
    r#""events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"notifications":{"room":50}"#,
    r#"{"type":"m.room.member","state_key":"@","content":{"displayname":"","membership":"join"}}"#,
    r#"{"avatar_url":"mxc://","membership":"leave"}{"membership":"invite"}"#,
    r#"{"type":"m.room.create","state_key":"","content":{"creator":"@","room_version":"10","type":"org.matrix.msc1769.profile"},"#,
    r#""origin_server_ts":1,"depth":1,"prev_events":[],"hashes":{"sha256":""},"#,
    r#""unsigned":{"age_ts":1,"replaces_state":"$","prev_content":{}},"redacts":"$","#,
    r#"{"event_id":"$","room_id":"!","sender":"@","type":"m.room.","state_key":"","content":{},"#,
    r#""origin_server_ts":17,"depth":1,"prev_events":["$"],"auth_events":["$","$","$"],"#,
    r#""hashes":{"sha256":""},"signatures":{"":{"ed25519:":""}}}"#,
)
.as_bytes();

/// Text of one block, in bytes, before a new block is started when blocks are built; a block
/// that a change grows past twice this is split.
pub(crate) const BLOCK_TEXT: usize = 8 * 1024;

/// The state that changes with every presence change (MSC3032's `m.presence` and `m.status`):
/// each is kept in a block of its own, so a change recompresses that event's ~0.6 KB instead
/// of its room's whole block (~5 KB), and reading it back decompresses no more (issue #13:
/// the publisher's compressing and decompressing was ~6 % of the server's CPU under the
/// 10,000-user load). What it costs: such an event shares no ids with its neighbours
/// (~200 bytes more per event, compressed).
const KEPT_ALONE: &[&str] = &["m.presence", "m.status"];

fn kept_alone(kind: &str) -> bool {
    KEPT_ALONE.contains(&kind)
}

/// Whether an event of `kind` with `len` bytes of text starts a new block after `text_len`
/// bytes of text (`last_alone`: whether the block's last event is kept alone; `None` for an
/// empty block).
fn starts_block(text_len: usize, last_alone: Option<bool>, kind: &str, len: usize) -> bool {
    last_alone.is_some_and(|alone| alone || text_len + len > BLOCK_TEXT || kept_alone(kind))
}

/// Event types named by their static text instead of a copy per entry.
const KNOWN_TYPES: &[&str] = &[
    "m.presence",
    "m.profile",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.create",
    "m.room.encryption",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
    "m.room.name",
    "m.room.pinned_events",
    "m.room.power_levels",
    "m.room.server_acl",
    "m.room.third_party_invite",
    "m.room.tombstone",
    "m.room.topic",
    "m.space.child",
    "m.space.parent",
    "m.status",
];

fn kind_of(kind: &str) -> Cow<'static, str> {
    match KNOWN_TYPES.iter().find(|k| **k == kind) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(kind.to_owned()),
    }
}

/// Compressed text; cloning shares it.
#[derive(Debug, Clone)]
struct Block {
    packed: Arc<[u8]>,
    /// The text's length in bytes.
    len: u32,
}

impl Block {
    /// `None` for a text over 4 GiB (a block holds at most twice [`BLOCK_TEXT`] plus one event,
    /// and an event is at most 64 KiB: never).
    fn new(text: &[u8]) -> Option<Self> {
        let len = u32::try_from(text.len()).ok()?;
        let packed = lz4_flex::block::compress_with_dict(text, DICTIONARY);
        Some(Self { packed: Arc::from(packed), len })
    }

    /// The text back. `None` only if the bytes were damaged in memory.
    fn text(&self) -> Option<Vec<u8>> {
        if self.len == 0 {
            return Some(Vec::new());
        }
        lz4_flex::block::decompress_with_dict(&self.packed, self.len as usize, DICTIONARY).ok()
    }
}

/// One kept event: its key and id, and where its text is.
#[derive(Debug)]
struct Entry {
    kind: Cow<'static, str>,
    state_key: Box<str>,
    id: EventRef,
    block: u32,
    /// The text's place in its block's text.
    start: u32,
    len: u32,
    decoded: OnceLock<Option<Arc<Pdu>>>,
}

impl Clone for Entry {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind.clone(),
            state_key: self.state_key.clone(),
            id: self.id.clone(),
            block: self.block,
            start: self.start,
            len: self.len,
            decoded: OnceLock::new(),
        }
    }
}

impl Entry {
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// Kept events in (type, state key) order, their texts in blocks (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct Texts {
    entries: Vec<Entry>,
    blocks: Vec<Block>,
}

/// One event to keep: type, state key, id and JSON text.
pub(crate) struct NewText<'a> {
    pub kind: &'a str,
    pub state_key: &'a str,
    pub event_id: &'a str,
    pub json: &'a str,
}

impl<'a> NewText<'a> {
    /// `pdu` (a state event) with its JSON text.
    pub(crate) fn of(pdu: &'a Pdu, json: &'a str) -> Self {
        Self { kind: &pdu.kind, state_key: pdu.state_key.as_deref().unwrap_or_default(), event_id: &pdu.event_id, json }
    }
}

impl Texts {
    /// Kept events from events in any order; of two at one (type, state key) the later wins.
    pub(crate) fn build<'a>(items: impl IntoIterator<Item = NewText<'a>>) -> Self {
        let kept = super::state::latest_per_key_sorted(items.into_iter().collect(), |a: &NewText<'a>, b| {
            (a.kind, a.state_key).cmp(&(b.kind, b.state_key))
        });
        let mut texts = Self { entries: Vec::with_capacity(kept.len()), blocks: Vec::new() };
        let mut text: Vec<u8> = Vec::new();
        for item in kept {
            let open = texts.blocks.len() as u32;
            let last_alone = texts.entries.last().filter(|e| e.block == open).map(|e| kept_alone(&e.kind));
            if starts_block(text.len(), last_alone, item.kind, item.json.len()) {
                texts.close_block(&mut text);
            }
            let (Ok(start), Ok(len)) = (u32::try_from(text.len()), u32::try_from(item.json.len())) else { continue };
            text.extend_from_slice(item.json.as_bytes());
            texts.entries.push(Entry {
                kind: kind_of(item.kind),
                state_key: item.state_key.into(),
                id: EventRef::new(item.event_id),
                block: texts.blocks.len() as u32,
                start,
                len,
                decoded: OnceLock::new(),
            });
        }
        if !text.is_empty() {
            texts.close_block(&mut text);
        }
        texts
    }

    /// Compress `text` as the next block (the entries already point at it).
    fn close_block(&mut self, text: &mut Vec<u8>) {
        let block = Block::new(text).unwrap_or_else(|| {
            // Unreachable (see `Block::new`); the entries of the block are dropped rather
            // than pointed at text that is not there.
            tracing::error!(bytes = text.len(), "state text block too large; its events are not kept");
            let ix = self.blocks.len() as u32;
            self.entries.retain(|e| e.block != ix);
            Block { packed: Arc::from(Vec::new()), len: 0 }
        });
        self.blocks.push(block);
        text.clear();
    }

    fn position(&self, kind: &str, state_key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| (&*e.kind, &*e.state_key).cmp(&(kind, state_key)))
    }

    /// Keep `item`, replacing the event at its (type, state key). Rewrites one block. `false`
    /// (logged) only if that block's text was damaged in memory; nothing changes then.
    pub(crate) fn put(&mut self, item: NewText<'_>) -> bool {
        let json = item.json.as_bytes();
        let Ok(len) = u32::try_from(json.len()) else { return false };
        let at = self.position(item.kind, item.state_key);
        if self.blocks.is_empty() {
            self.blocks.push(Block { packed: Arc::from(Vec::new()), len: 0 });
        }
        // The block the event goes into, and where in its text: its own place, or right after
        // the entry before it (the first block's start for the first entry).
        let (i, block, start, old_len) = match at {
            Ok(i) => (i, self.entries[i].block, self.entries[i].start, self.entries[i].len),
            Err(i) if i > 0 => {
                let before = &self.entries[i - 1];
                (i, before.block, before.start + before.len, 0)
            }
            Err(i) => (i, 0, 0, 0),
        };
        let Some(mut text) = self.blocks[block as usize].text() else {
            tracing::error!(event_id = item.event_id, "damaged state text block; state event not kept");
            return false;
        };
        let (s, old_end) = (start as usize, start as usize + old_len as usize);
        text.splice(s..old_end, json.iter().copied());
        let entry = Entry {
            kind: kind_of(item.kind),
            state_key: item.state_key.into(),
            id: EventRef::new(item.event_id),
            block,
            start,
            len,
            decoded: OnceLock::new(),
        };
        match at {
            Ok(i) => self.entries[i] = entry,
            Err(i) => {
                self.entries.reserve_exact(1);
                self.entries.insert(i, entry);
            }
        }
        // The entries after it in the same block moved by the difference in length.
        for e in self.entries[i + 1..].iter_mut().take_while(|e| e.block == block) {
            e.start = e.start + len - old_len;
        }
        self.store_block(block, text);
        true
    }

    /// Compress `text` as block `b`; split it first if it grew past twice [`BLOCK_TEXT`] or
    /// holds an event kept alone ([`KEPT_ALONE`]) with others.
    fn store_block(&mut self, b: u32, text: Vec<u8>) {
        let first = self.entries.partition_point(|e| e.block < b);
        let end = self.entries.partition_point(|e| e.block <= b);
        let mixed = self.entries[first..end].iter().any(|e| kept_alone(&e.kind));
        if (text.len() <= 2 * BLOCK_TEXT && !mixed) || end - first < 2 {
            match Block::new(&text) {
                Some(block) => self.blocks[b as usize] = block,
                None => tracing::error!(bytes = text.len(), "state text block too large; not rewritten"),
            }
            return;
        }
        // Split greedily, as `build` does, renumbering the blocks after it.
        let mut pieces: Vec<Block> = Vec::new();
        let mut piece: Vec<u8> = Vec::new();
        let mut last_alone = None;
        for e in &mut self.entries[first..end] {
            if starts_block(piece.len(), last_alone, &e.kind, e.len as usize) {
                pieces.extend(Block::new(&piece));
                piece.clear();
            }
            last_alone = Some(kept_alone(&e.kind));
            let range = e.range();
            e.block = b + pieces.len() as u32;
            e.start = piece.len() as u32;
            piece.extend_from_slice(&text[range]);
        }
        pieces.extend(Block::new(&piece));
        let added = pieces.len() as u32 - 1;
        for e in &mut self.entries[end..] {
            e.block += added;
        }
        self.blocks.splice(b as usize..=b as usize, pieces);
    }

    /// The id of the event at (`kind`, `state_key`).
    pub(crate) fn id(&self, kind: &str, state_key: &str) -> Option<&EventRef> {
        self.position(kind, state_key).ok().map(|i| &self.entries[i].id)
    }

    /// The event at (`kind`, `state_key`), decoded on first use by this state object.
    pub(crate) fn get(&self, kind: &str, state_key: &str) -> Option<&Arc<Pdu>> {
        let i = self.position(kind, state_key).ok()?;
        self.decode(i, None)
    }

    /// Decode the events at `keys` ahead of [`Self::get`], each block decompressed once for
    /// all of them (`get` alone decompresses a block per event: the profile-room publisher
    /// reads `m.status` and `m.presence`, which share one).
    pub(crate) fn preload(&self, keys: &[(&str, &str)]) {
        self.decode_each(keys.iter().filter_map(|(kind, state_key)| self.position(kind, state_key).ok()));
    }

    /// Decode entries `ixs` (in order), each block decompressed at most once in a row.
    fn decode_each(&self, ixs: impl Iterator<Item = usize>) {
        let mut text: Option<(u32, Option<Vec<u8>>)> = None;
        for i in ixs {
            let e = &self.entries[i];
            if e.decoded.get().is_some() {
                continue;
            }
            if text.as_ref().is_none_or(|(b, _)| *b != e.block) {
                text = Some((e.block, self.blocks.get(e.block as usize).and_then(Block::text)));
            }
            self.decode(i, text.as_ref().and_then(|(_, t)| t.as_deref()));
        }
    }

    /// Entry `i`'s event: from its cache, else parsed from `text` (its block's text) or from
    /// the block decompressed for it.
    fn decode(&self, i: usize, text: Option<&[u8]>) -> Option<&Arc<Pdu>> {
        let e = &self.entries[i];
        e.decoded
            .get_or_init(|| {
                let owned;
                let text = match text {
                    Some(t) => t,
                    None => match self.blocks.get(e.block as usize).and_then(Block::text) {
                        Some(t) => {
                            owned = t;
                            &owned
                        }
                        None => {
                            tracing::error!(event_id = %e.id.to_id(), "damaged state event text skipped");
                            return None;
                        }
                    },
                };
                match text.get(e.range()).map(serde_json::from_slice::<Pdu>) {
                    Some(Ok(p)) => Some(Arc::new(p)),
                    other => {
                        // Only text this process encoded or read back from its own store gets here.
                        let error = other.and_then(Result::err).map(|e| e.to_string());
                        tracing::error!(event_id = %e.id.to_id(), ?error, "undecodable state event skipped");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// Every kept event, in (type, state key) order, each block decompressed at most once.
    pub(crate) fn events(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        self.decode_each(0..self.entries.len());
        self.entries.iter().filter_map(|e| e.decoded.get().and_then(Option::as_ref))
    }

    /// Every kept event's (type, state key, id), in that order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (&str, &str, &EventRef)> {
        self.entries.iter().map(|e| (&*e.kind, &*e.state_key, &e.id))
    }

    /// Heap bytes held (entries and compressed blocks; decoded events are not counted).
    pub(crate) fn approx_bytes(&self) -> usize {
        let entries = self.entries.capacity() * std::mem::size_of::<Entry>()
            + self
                .entries
                .iter()
                .map(|e| e.state_key.len() + matches!(e.kind, Cow::Owned(_)) as usize * e.kind.len())
                .sum::<usize>();
        let blocks = self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.blocks.iter().map(|b| b.packed.len() + 16).sum::<usize>();
        entries + blocks
    }

    /// Bytes of compressed text held.
    #[cfg(test)]
    pub(crate) fn packed_len(&self) -> usize {
        self.blocks.iter().map(|b| b.packed.len()).sum()
    }

    /// Blocks held (for tests of the splitting).
    #[cfg(test)]
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }
}

/// Profile-room events as the server writes them (shared with `benches/room_state.rs`).
#[cfg(test)]
#[path = "../../tests/common/profile_room.rs"]
mod profile_fixture;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    use super::profile_fixture as profile;

    /// A state event with its JSON text.
    fn event(room: &str, kind: &str, state_key: &str, n: usize, content: serde_json::Value) -> (Pdu, String) {
        let pdu = profile::event(room, kind, state_key, n, content);
        let text = serde_json::to_string(&pdu).unwrap();
        (pdu, text)
    }

    /// A profile room's nine non-member state events with their texts.
    fn profile_room(room: &str) -> Vec<(Pdu, String)> {
        profile::non_member_events(room)
            .into_iter()
            .map(|pdu| {
                let text = serde_json::to_string(&pdu).unwrap();
                (pdu, text)
            })
            .collect()
    }

    fn texts_of(events: &[(Pdu, String)]) -> Texts {
        Texts::build(events.iter().map(|(e, j)| NewText::of(e, j)))
    }

    /// What `texts` holds, as (type, state key) -> (event id, JSON text again).
    fn contents(texts: &Texts) -> BTreeMap<(String, String), (String, String)> {
        let keys: Vec<(String, String, String)> =
            texts.keys().map(|(k, sk, id)| (k.to_owned(), sk.to_owned(), id.to_id())).collect();
        let events: Vec<&Arc<Pdu>> = texts.events().collect();
        assert_eq!(keys.len(), events.len(), "every entry decodes");
        keys.into_iter()
            .zip(events)
            .map(|((k, sk, id), e)| {
                assert_eq!((&e.kind, e.state_key.as_deref(), &e.event_id), (&k, Some(sk.as_str()), &id));
                ((k, sk), (id, serde_json::to_string(&**e).unwrap()))
            })
            .collect()
    }

    /// The events of each block, by type, in order.
    fn blocks_of(texts: &Texts) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = vec![Vec::new(); texts.block_count()];
        for e in &texts.entries {
            out[e.block as usize].push(e.kind.to_string());
        }
        out
    }

    #[test]
    fn a_profile_room_comes_back_unchanged_in_three_small_blocks() {
        let events = profile_room("!001jYO7N9yp2jSFMUe:localhost");
        let texts = texts_of(&events);
        let want: BTreeMap<_, _> =
            events.iter().map(|(e, j)| ((e.kind.clone(), String::new()), (e.event_id.clone(), j.clone()))).collect();
        assert_eq!(contents(&texts), want);
        // `m.presence` and `m.status` each alone, the seven others together.
        let blocks = blocks_of(&texts);
        assert_eq!(blocks.len(), 3, "{blocks:?}");
        assert_eq!((&blocks[0][..], &blocks[2][..]), (&["m.presence".to_owned()][..], &["m.status".to_owned()][..]));
        assert_eq!(blocks[1].len(), events.len() - 2, "{blocks:?}");
        let raw: usize = events.iter().map(|(_, j)| j.len()).sum();
        let alone: usize =
            events.iter().map(|(_, j)| lz4_flex::block::compress_with_dict(j.as_bytes(), DICTIONARY).len()).sum();
        println!(
            "profile room: {raw} bytes of JSON, {alone} compressed one by one, {} as one block",
            texts.packed_len()
        );
        // Compressed together, the ids the events share are kept once.
        assert!(texts.packed_len() * 100 < alone * 75, "{} vs {alone}", texts.packed_len());
        // Lookups by key, the way the room state asks.
        let presence = texts.get("m.presence", "").expect("kept");
        assert_eq!(presence.content["presence"], "offline");
        assert!(texts.id("m.room.create", "").is_some_and(|id| id.is(&events[0].0.event_id)));
        assert!(texts.get("m.presence", "x").is_none() && texts.id("m.nothing", "").is_none());
    }

    #[test]
    fn a_change_replaces_one_event_and_keeps_the_others() {
        let room = "!r:localhost";
        let events = profile_room(room);
        let mut texts = texts_of(&events);
        let before = contents(&texts);
        let (next, json) = event(room, "m.presence", "", 100, json!({"presence": "online", "currently_active": true}));
        assert!(texts.put(NewText::of(&next, &json)));
        let after = contents(&texts);
        assert_eq!(after.len(), before.len());
        for (key, value) in &before {
            if key.0 == "m.presence" {
                assert_eq!(after[key], (next.event_id.clone(), json.clone()));
            } else {
                assert_eq!(&after[key], value, "{key:?} unchanged");
            }
        }
        assert_eq!(texts.get("m.presence", "").unwrap().content["presence"], "online");
    }

    /// A presence change recompresses only its own block: the block of the other events is
    /// the same bytes, not rewritten.
    #[test]
    fn a_presence_change_leaves_the_other_blocks_as_they_were() {
        let room = "!r:localhost";
        let mut texts = texts_of(&profile_room(room));
        let others = texts.blocks[1].packed.clone();
        for (n, presence) in [(100, "online"), (101, "unavailable")] {
            let (next, json) = event(room, "m.presence", "", n, json!({"presence": presence}));
            assert!(texts.put(NewText::of(&next, &json)));
            let (status, json) = event(room, "m.status", "", n + 10, json!({"status": presence}));
            assert!(texts.put(NewText::of(&status, &json)));
        }
        assert_eq!(blocks_of(&texts).len(), 3);
        assert!(Arc::ptr_eq(&texts.blocks[1].packed, &others));
        assert_eq!(texts.blocks[0].len as usize, texts.entries[0].len as usize);
        assert_eq!(texts.get("m.status", "").unwrap().content["status"], "unavailable");
    }

    /// A profile room grown one event at a time (as it is created) ends in the same blocks
    /// as one built at once, with `m.presence` and `m.status` each alone.
    #[test]
    fn a_room_grown_event_by_event_keeps_presence_and_status_alone() {
        let events = profile_room("!grown:localhost");
        let mut grown = Texts::default();
        for (e, json) in &events {
            assert!(grown.put(NewText::of(e, json)));
        }
        let built = texts_of(&events);
        assert_eq!(contents(&grown), contents(&built));
        assert_eq!(blocks_of(&grown), blocks_of(&built));
    }

    /// Puts in random order (new keys at the front, middle and end, replacements longer and
    /// shorter) agree with a plain map, and blocks stay bounded as they grow and split.
    #[test]
    fn many_changes_agree_with_a_map_and_blocks_stay_bounded() {
        let room = "!big:localhost";
        let mut texts = Texts::default();
        let mut model: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for n in 0..600 {
            let r = next();
            let kinds = ["m.space.child", "m.room.name", "org.example.custom", "m.room.topic", "m.status"];
            let kind = kinds[(r % 5) as usize];
            let state_key = format!("!k{:03}:localhost", (r >> 8) % 150);
            let padding = "x".repeat(((r >> 20) % 1500) as usize);
            let (e, json) = event(room, kind, &state_key, n, json!({"via": ["localhost"], "pad": padding}));
            assert!(texts.put(NewText::of(&e, &json)));
            model.insert((kind.to_owned(), state_key), (e.event_id.clone(), json));
            if n % 50 == 0 {
                assert_eq!(contents(&texts), model, "after {n} changes");
            }
        }
        assert_eq!(contents(&texts), model);
        // Every block's text is bounded: at most twice BLOCK_TEXT, plus the one event that
        // made it grow.
        for b in 0..texts.block_count() {
            let len = texts.blocks[b].len as usize;
            assert!(len <= 2 * BLOCK_TEXT + 2_000, "block {b}: {len} bytes of text");
        }
        assert!(texts.block_count() > 10, "{} blocks", texts.block_count());
        // Every `m.status` is a block of its own, however it got there.
        for (b, kinds) in blocks_of(&texts).iter().enumerate() {
            assert!(kinds.len() == 1 || !kinds.iter().any(|k| k == "m.status"), "block {b}: {kinds:?}");
        }
        // Built at once from the same events, the state is the same.
        let rebuilt = Texts::build(model.iter().map(|((k, sk), (id, json))| NewText {
            kind: k,
            state_key: sk,
            event_id: id,
            json,
        }));
        assert_eq!(contents(&rebuilt), model);
    }

    #[test]
    fn the_later_of_two_events_at_one_key_wins_when_built() {
        let room = "!r:localhost";
        let (a, ja) = event(room, "m.room.name", "", 1, json!({"name": "first"}));
        let (b, jb) = event(room, "m.room.name", "", 2, json!({"name": "second"}));
        let texts = Texts::build([NewText::of(&a, &ja), NewText::of(&b, &jb)]);
        assert_eq!(texts.get("m.room.name", "").unwrap().content["name"], "second");
        assert_eq!(texts.keys().count(), 1);
    }

    #[test]
    fn a_clone_decodes_again_and_shares_the_text() {
        let events = profile_room("!r:localhost");
        let texts = texts_of(&events);
        let first = texts.get("m.room.create", "").unwrap().clone();
        let copy = texts.clone();
        let again = copy.get("m.room.create", "").unwrap();
        assert!(!Arc::ptr_eq(&first, again), "a clone does not carry decoded events");
        assert!(Arc::ptr_eq(&texts.blocks[0].packed, &copy.blocks[0].packed));
    }

    #[test]
    fn preloading_decodes_just_the_keys_asked_for_and_get_returns_them() {
        let events = profile_room("!r:localhost");
        let texts = texts_of(&events);
        texts.preload(&[("m.status", ""), ("m.presence", ""), ("m.no.such.type", "")]);
        let decoded: Vec<&str> = texts.entries.iter().filter(|e| e.decoded.get().is_some()).map(|e| &*e.kind).collect();
        assert_eq!(decoded, ["m.presence", "m.status"]);
        for kind in ["m.presence", "m.status"] {
            let want = events.iter().find(|(e, _)| e.kind == kind).map(|(e, _)| e).unwrap();
            let got = texts.get(kind, "").unwrap();
            assert_eq!((&got.event_id, &got.content), (&want.event_id, &want.content));
        }
        let preloaded = texts.get("m.status", "").unwrap().clone();
        texts.preload(&[("m.status", "")]);
        assert!(Arc::ptr_eq(&preloaded, texts.get("m.status", "").unwrap()), "decoded once, then kept");
    }

    #[test]
    fn odd_texts_round_trip() {
        for text in ["", "{}", "ü", &"x".repeat(70_000), r#"{"a":"\u0000\n"}"#] {
            let block = Block::new(text.as_bytes()).unwrap();
            assert_eq!(block.text().as_deref(), Some(text.as_bytes()));
        }
    }
}
