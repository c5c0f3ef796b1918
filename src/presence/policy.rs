//! Operator switches for presence (what Synapse operators expect to find), and the wire
//! spelling of `busy` on the legacy paths (MSC3026). Named once here; read by the engine, the
//! legacy shim and the permission model.
use serde::{Deserialize, Serialize};

use super::{Presence, MSC3026_BUSY};

/// `presence_mode`: whether the server tracks presence and whom it sends it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PresenceMode {
    /// Track every device, publish to the profile room, send to everyone allowed to see it.
    #[default]
    Enabled,
    /// No presence at all: reports and manual statuses are accepted and ignored, everyone
    /// reads as `offline`, `/sync` carries no presence (Synapse `presence.enabled: false`).
    Disabled,
    /// Track and publish one's own presence (own `/sync`, own status, the profile room for
    /// peekers) but send nobody the presence of others on the legacy paths.
    Untracked,
}

/// `legacy_busy_as`: how `busy` is spelled where old clients read presence (`GET
/// …/status`, `m.presence` in `/sync`, the presence list, initialSync, `/events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum LegacyBusy {
    /// MSC3026's unstable value, as Synapse sends it and MSC3026 clients expect.
    #[default]
    #[serde(rename = "org.matrix.msc3026.busy")]
    #[value(name = "org.matrix.msc3026.busy")]
    Msc3026,
    /// The stable name, for clients written against the merged MSC3026.
    #[serde(rename = "busy")]
    #[value(name = "busy")]
    Busy,
    /// For clients that reject unknown values (mautrix-python, matrix-js-sdk): closest
    /// meaning "here but do not disturb" is away.
    #[serde(rename = "unavailable")]
    #[value(name = "unavailable")]
    Unavailable,
    /// For clients that reject unknown values and should show the user reachable.
    #[serde(rename = "online")]
    #[value(name = "online")]
    Online,
}

impl LegacyBusy {
    /// The legacy wire value of a presence state.
    pub fn spell(self, p: Presence) -> &'static str {
        match (p, self) {
            (Presence::Busy, LegacyBusy::Msc3026) => MSC3026_BUSY,
            (Presence::Busy, LegacyBusy::Busy) => "busy",
            (Presence::Busy, LegacyBusy::Unavailable) => "unavailable",
            (Presence::Busy, LegacyBusy::Online) => "online",
            (other, _) => other.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_busy_spellings() {
        assert_eq!(LegacyBusy::default().spell(Presence::Busy), "org.matrix.msc3026.busy");
        assert_eq!(LegacyBusy::Busy.spell(Presence::Busy), "busy");
        assert_eq!(LegacyBusy::Unavailable.spell(Presence::Busy), "unavailable");
        assert_eq!(LegacyBusy::Online.spell(Presence::Busy), "online");
        for b in [LegacyBusy::Msc3026, LegacyBusy::Busy, LegacyBusy::Unavailable, LegacyBusy::Online] {
            for p in [Presence::Offline, Presence::Unavailable, Presence::Online] {
                assert_eq!(b.spell(p), p.as_str());
            }
        }
        let b: LegacyBusy = serde_json::from_str(r#""org.matrix.msc3026.busy""#).unwrap();
        assert_eq!(b, LegacyBusy::Msc3026);
        let m: PresenceMode = serde_json::from_str(r#""untracked""#).unwrap();
        assert_eq!(m, PresenceMode::Untracked);
    }
}
