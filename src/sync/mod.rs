//! Sync streams: the global stream position, per-user wake-ups and `/sync` assembly.
pub mod filter;
pub mod forgotten;
pub mod joined;
pub mod notifier;
pub mod service;
pub mod stream;
pub mod token;

pub use filter::SyncFilter;
pub use notifier::{Notifier, Subscription};
pub use service::{SyncRequest, SyncService};
pub use stream::{StreamHub, StreamPos};
