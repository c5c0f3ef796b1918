//! Effective presence (MSC3032): per-device reports and the manual status merged into one.
//!
//! - `types`: the vocabulary (`Presence`, `ManualStatus`, `DeviceState`, `EffectiveView`, ...).
//! - `merge`: the pure merge `effective` and `next_change_at` (no I/O, no clock reads).
//! - timers: one `ground::Timer` (a `DeadlineQueue` on the injected clock) in the engine.

pub mod access;
pub mod engine;
pub mod explain;
pub mod federated;
pub mod legacy;
pub mod list_federation;
pub mod lists;
pub mod merge;
pub mod newcomers;
pub mod observe;
pub mod outbox;
pub mod policy;
pub mod status_log;
pub mod types;

pub use engine::{PresenceEngine, PresenceSnapshot};
pub use merge::{effective, is_proactive, next_change_at};
pub use types::{
    DeviceKind, DeviceState, EffectivePresence, EffectiveView, ManualStatus, Presence, PresenceRules, UnknownPresence,
    MSC3026_BUSY,
};
