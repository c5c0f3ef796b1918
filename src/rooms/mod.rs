//! Rooms: events, state, membership and the rules that guard them.
pub(crate) mod auth;
pub(crate) mod create;
pub(crate) mod dag;
mod dag_reads;
pub mod event;
mod fetch;
mod handshake;
pub mod inbound;
mod membership;
mod outbound;
mod peeked;
pub mod peers;
pub(crate) mod redaction;
mod remote;
mod resolve;
mod send;
pub(crate) mod service;
pub(crate) mod state;
mod state_groups;
mod state_read;
mod state_text;
mod timeline;
mod user_send;

pub use event::{now_ms, Pdu};
pub(crate) use membership::member_join_content;
pub use send::RoomClaims;
pub use service::{NewEvent, RoomLinks, Rooms};
pub use state::RoomState;
pub use timeline::{EventContext, MessagesPage, Timeline};

/// The room version new rooms get.
pub const ROOM_VERSION: &str = "10";
