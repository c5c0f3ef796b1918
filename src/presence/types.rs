//! Presence vocabulary shared by the merge, the deadline queue and the API layer.
//!
//! The names follow the seeds: `Presence` is the spec enum plus MSC3026 `busy`,
//! `ManualStatus` is what `PUT /presence/{userId}/status` sets (MSC3032: "explicitly for the
//! *user* setting their presence manually"), `DeviceState` is what each client reports through
//! `set_presence` on `/sync` (MSC3032: "explicitly for automatic updates from clients").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The unstable spelling of `busy` from MSC3026, named once.
pub const MSC3026_BUSY: &str = "org.matrix.msc3026.busy";

/// A presence state, ordered by availability so that `max` picks the one that wins a merge.
///
/// Seed 000 orders availability `offline < unavailable < online < free_for_chat`; MSC3032
/// replaces the top with MSC3026 `busy` ("if any status is busy, the user is busy"), which gives
/// the derived order `Offline < Unavailable < Online < Busy`. The variant order is that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Presence {
    #[default]
    Offline,
    Unavailable,
    Online,
    Busy,
}

impl Presence {
    /// All states, lowest availability first.
    pub const ALL: [Presence; 4] = [Presence::Offline, Presence::Unavailable, Presence::Online, Presence::Busy];

    /// The stable wire name. We emit `busy`; [`MSC3026_BUSY`] is accepted on input only.
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Offline => "offline",
            Presence::Unavailable => "unavailable",
            Presence::Online => "online",
            Presence::Busy => "busy",
        }
    }
}

/// A presence string that is none of the known states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown presence state {0:?}")]
pub struct UnknownPresence(pub String);

impl FromStr for Presence {
    type Err = UnknownPresence;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "offline" => Ok(Presence::Offline),
            "unavailable" => Ok(Presence::Unavailable),
            "online" => Ok(Presence::Online),
            "busy" | MSC3026_BUSY => Ok(Presence::Busy),
            other => Err(UnknownPresence(other.to_owned())),
        }
    }
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Presence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// Hand-written rather than derived so the MSC3026 alias comes from the one constant above.
impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Device type (seed 004 "Device Type"): a mobile device "may limit the user experience", which
/// is itself presence information worth showing to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Desktop,
    Mobile,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Desktop => "desktop",
            DeviceKind::Mobile => "mobile",
        }
    }
}

/// The status a user set by hand (MSC3032 `PUT /presence/{userId}/status`).
///
/// `Online` means "no override: the devices decide"; it is also what a user sets when they are
/// free again (MSC3032's open question, answered that way). `Offline` is seed 004's "hidden":
/// offline to others, while the user's own devices keep seeing the truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManualStatus {
    #[default]
    Online,
    Unavailable,
    Busy,
    Offline,
}

impl ManualStatus {
    /// Seed 004: "hidden - a state which behaves as offline".
    pub fn is_hidden(self) -> bool {
        self == ManualStatus::Offline
    }
}

impl From<Presence> for ManualStatus {
    /// The `presence` field of `PUT /presence/{userId}/status`, read as a manual status.
    fn from(p: Presence) -> Self {
        match p {
            Presence::Online => ManualStatus::Online,
            Presence::Unavailable => ManualStatus::Unavailable,
            Presence::Busy => ManualStatus::Busy,
            Presence::Offline => ManualStatus::Offline,
        }
    }
}

/// What the server knows about one device's presence. Times are ms since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The last `set_presence` the device sent on `/sync` (MSC3032 automatic updates).
    pub reported: Presence,
    pub kind: DeviceKind,
    /// When its last `/sync` returned or started.
    pub last_sync_ts: i64,
    /// A `/sync` is in flight now.
    pub syncing: bool,
    /// When the server last saw a pro-active event from this device (seed 000/001).
    pub last_active_ts: i64,
    /// Activity (an event, typing, a receipt or read marker) came from this device after its
    /// last report: seed 001 "any activity sets the user back to online", so a report of
    /// `unavailable` or `offline` counts as `online` until the device reports something new.
    #[serde(default)]
    pub lifted: bool,
}

impl DeviceState {
    /// The report as the merge reads it: lifted to `online` by activity since the report.
    pub fn effective_report(&self) -> Presence {
        if self.lifted {
            self.reported.max(Presence::Online)
        } else {
            self.reported
        }
    }
}

/// The timings of the merge. Defaults follow the seeds; tests shrink them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRules {
    /// A device that has not synced for this long is gone (seed 000: "not connected to an
    /// event stream").
    pub device_timeout_ms: i64,
    /// Seed 001 "Idle timeout": unavailable "if their last active time was over 5 minutes ago".
    pub idle_after_ms: i64,
    /// How long after the last pro-active event `currently_active` stays true (seed 001).
    pub currently_active_ms: i64,
    /// A `mobile` device that stops syncing stays reachable (`unavailable`, MSC3032: messages
    /// still reach a phone in a pocket) this long after it stops being live, then is offline.
    pub mobile_grace_ms: i64,
}

impl Default for PresenceRules {
    fn default() -> Self {
        PresenceRules {
            device_timeout_ms: 30_000,
            idle_after_ms: 300_000,
            currently_active_ms: 60_000,
            mobile_grace_ms: 3_600_000,
        }
    }
}

/// The presence of a user as one audience sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectivePresence {
    pub presence: Presence,
    /// Latest pro-active event; the API layer turns it into `last_active_ago`.
    pub last_active_ts: Option<i64>,
    pub currently_active: bool,
    /// Kinds of the live, non-offline devices, sorted and deduplicated (seed 004 "Device Type").
    pub active_kinds: Vec<DeviceKind>,
    /// The user chose to be hidden (seed 004).
    pub hidden: bool,
}

impl EffectivePresence {
    /// The presence of a user with nothing to show.
    pub fn offline() -> Self {
        EffectivePresence {
            presence: Presence::Offline,
            last_active_ts: None,
            currently_active: false,
            active_kinds: Vec::new(),
            hidden: false,
        }
    }

    /// Whether going from `other` to `self` is worth an update to other users.
    ///
    /// Seed 001: while `currently_active` is true, "the server will not send further updates to
    /// the last active time until an update is sent to the client with either a)
    /// `currently_active` set to false or b) a presence state other than `online`". So a change
    /// of `last_active_ts` alone counts only while `currently_active` is false.
    pub fn differs_for_others(&self, other: &EffectivePresence) -> bool {
        self.presence != other.presence
            || self.currently_active != other.currently_active
            || self.hidden != other.hidden
            || self.active_kinds != other.active_kinds
            || (!self.currently_active && self.last_active_ts != other.last_active_ts)
    }
}

/// The effective presence of one user for both audiences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveView {
    /// What other users see.
    pub public: EffectivePresence,
    /// What the user's own devices see (differs from `public` only when hidden).
    pub own: EffectivePresence,
}

impl EffectiveView {
    /// The view for a viewer: the user themself or anyone else.
    pub fn for_viewer(&self, is_self: bool) -> &EffectivePresence {
        if is_self {
            &self.own
        } else {
            &self.public
        }
    }
}
