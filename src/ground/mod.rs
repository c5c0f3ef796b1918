//! The ground floor: small shared mechanisms every domain builds on, importing no domain.
//!
//! - `stream`: the one ordered stream of changes ([`StreamHub`], [`StreamPos`]).
//! - `notifier`: per-user wake-ups for long-polls ([`Notifier`]).
//! - `token`: the stream tokens clients hold (`s<N>`, `t<N>`).
//! - `clock`: the injected [`Clock`] (system or manual).
//! - `deadline` + `timer`: [`DeadlineQueue`] and the [`Timer`] that runs one on a clock.
//! - `workers`: the one lifecycle of background tasks ([`Workers`]).
//! - `memory`: the process's transparent-huge-pages switch.
//! - `user_ids`: user ids numbered once per process ([`user_ids::UserIx`]).
pub mod clock;
pub mod deadline;
pub mod memory;
pub mod notifier;
pub mod stream;
pub mod timer;
pub mod token;
pub mod user_ids;
pub mod workers;

pub use clock::Clock;
pub use deadline::DeadlineQueue;
pub use notifier::{Notifier, Subscription, Wake, WakeKind};
pub use stream::{StreamHub, StreamPos};
pub use timer::Timer;
pub use workers::Workers;
