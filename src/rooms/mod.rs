//! Rooms: events, state, membership and the rules that guard them.
pub mod auth;
pub mod create;
pub mod event;
mod membership;
pub mod redaction;
mod send;
pub mod service;
pub mod state;
mod timeline;
mod user_send;

pub use event::{now_ms, Pdu};
pub use membership::member_join_content;
pub use send::RoomClaims;
pub use service::{NewEvent, RoomLinks, Rooms};
pub use state::RoomState;
pub use timeline::{EventContext, MessagesPage, Timeline};

/// The room version new rooms get.
pub const ROOM_VERSION: &str = "10";
