//! Seed: a presence-first Matrix homeserver (MSC3032 experiment).
//!
//! Layers, imports pointing one way: `api` (HTTP) -> domain (`accounts`, `rooms`, `sync`,
//! `presence`) -> `ground` (stream, wake-ups, tokens, clock, timers) -> `store` (sqlx).
//! See `docs/architecture.md`.
pub mod account_data;
pub mod accounts;
pub mod api;
pub mod app;
pub mod config;
pub mod directory;
pub mod e2ee;
pub mod ephemeral;
pub mod error;
pub mod experiment;
pub mod federation;
pub mod ground;
pub mod media;
pub mod metrics;
pub mod peek;
pub mod presence;
pub mod profile;
pub mod push;
pub mod relations;
pub mod rooms;
pub mod store;
pub mod sync;
