//! Seed: a presence-first Matrix homeserver (MSC3032 experiment).
pub mod presence;
