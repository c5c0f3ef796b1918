//! `/sync`: filters, the long-poll, and the response assembled from typed sections.
//!
//! - `filter`: the filter vocabulary; `filters`: stored filters (the `filters` table).
//! - `sections`: one function per response section, each from a `SyncContext`.
//! - `assemble`: the one function that puts the sections together; `response`: the types.
//! - `service`: the long-poll and `set_presence` around it.
mod assemble;
pub mod filter;
pub mod filters;
pub mod forgotten;
pub mod response;
pub mod sections;
pub mod service;

pub use filter::SyncFilter;
pub use response::SyncResponse;
pub use service::{LegacyPresenceConfig, SyncRequest, SyncService};
// Stream tokens moved to the ground floor; handlers still reach them here.
pub use crate::ground::token;
