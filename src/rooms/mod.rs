//! Rooms: events, state, membership and the rules that guard them.
pub mod auth;
pub mod create;
pub mod event;
pub mod redaction;
pub mod service;
pub mod state;

pub use event::{now_ms, Pdu};
pub use service::{NewEvent, Rooms};
pub use state::RoomState;

/// The room version new rooms get.
pub const ROOM_VERSION: &str = "10";
