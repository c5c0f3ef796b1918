//! The peeking side of MSC2444: a local user peeks (MSC2753) a room of another server that no
//! local user is in — typically `@bob:other`'s profile room. This server peeks it once for all
//! its local peekers: `PUT …/peek/{roomId}/{peekId}` at the room's server, keeps the state it
//! answers (`Rooms::persist_peeked_state`), and from then on takes the room's new events from
//! `/send` like a joined room's, so `/sync` delivers them under `rooms.peek` exactly as for a
//! local room. The peek is renewed at half the `renewal_interval` the peeked server asked for
//! while any local device still peeks the room, and ended with `DELETE` when the last one
//! stops (unpeek, expiry, logout, join). Events of the room that arrive after that are refused
//! (`Rooms::refuses_peeked_events`).
//!
//! A server without MSC2444 (Synapse answers `404`/`405 M_UNRECOGNIZED`) makes the client's
//! peek fail with `404 M_NOT_FOUND` naming the reason; presence of that server's users still
//! reaches local users who share a room with them through legacy presence EDUs.
use std::sync::Arc;

use dashmap::DashMap;
use rand::distributions::{Alphanumeric, DistString};
use ruma::{RoomVersionId, ServerName};
use serde_json::{json, Value};

use super::Peeks;
use crate::error::{MatrixError, Result};
use crate::federation::client::enc;
use crate::ground::{Clock, Timer};
use crate::rooms::now_ms;

/// The unstable prefix of MSC2444's federation endpoints.
pub const MSC2444_PREFIX: &str = "/_matrix/federation/unstable/org.matrix.msc2444";
/// Where peeks are tried, in order: the unstable prefix, then the `v1` path of MSC2444's text
/// (the one Dendrite serves).
const PEEK_PATHS: [&str; 2] = [MSC2444_PREFIX, "/_matrix/federation/v1"];

/// Does a peer's answer say it does not know the endpoint (Synapse: 404/405 `M_UNRECOGNIZED`)?
fn unrecognized(status: u16, body: &Value) -> bool {
    let errcode = body.get("errcode").and_then(Value::as_str).unwrap_or_default();
    matches!((status, errcode), (404 | 405 | 400 | 501, "M_UNRECOGNIZED") | (405 | 501, _))
}
/// Room versions we can peek (`ver=`), as for `make_join`.
const VERSIONS: &str = "ver=10&ver=11";
/// Most servers tried for one peek.
const MAX_PEEK_SERVERS: usize = 5;
/// Bounds on the `renewal_interval` a peeked server may ask for, ms.
const MIN_RENEWAL_MS: i64 = 1_000;
const MAX_RENEWAL_MS: i64 = 24 * 3_600_000;
/// First retry delay after a failed renewal (doubled per failure, at most half the interval).
const RETRY_BASE_MS: i64 = 1_000;

/// Our peek of one remote room.
#[derive(Debug, Clone)]
pub(super) struct OutPeek {
    server: String,
    peek_id: String,
    interval_ms: i64,
    /// false: ended (refused, lost or deleted); the room's events are refused from then on.
    active: bool,
    failures: u32,
}

pub(super) struct Remote {
    pub(super) by_room: DashMap<String, OutPeek>,
    /// When each active peek is next renewed (or released, once no local device peeks).
    pub(super) renewals: Arc<Timer<String>>,
    /// Per room: serializes starting, renewing and ending its peek (network calls included),
    /// so a slow server holds up only its own rooms. One entry per room ever peeked, like
    /// `by_room`.
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

impl Remote {
    pub(super) fn new() -> Self {
        Self { by_room: DashMap::new(), renewals: Timer::new(Clock::system()), locks: DashMap::new() }
    }

    fn lock_of(&self, room_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.entry(room_id.to_owned()).or_default().clone()
    }
}

/// Why a peek request failed, and whether trying again later may help.
struct Failure {
    error: MatrixError,
    /// Unreachable, 5xx, 429: retry later. Otherwise the peeked server said no.
    transient: bool,
}

fn failure(error: MatrixError, transient: bool) -> Failure {
    Failure { error, transient }
}

impl Peeks {
    /// Load our peeks of remote rooms (start-up): active ones are renewed at once (or ended, if
    /// no local device peeks them any more).
    pub(super) async fn load_remote(&self) -> anyhow::Result<()> {
        let now = now_ms();
        for (room, server, peek_id, interval_ms, active) in self.store.all_peeks_out().await? {
            let active = active != 0;
            self.remote.by_room.insert(room.clone(), OutPeek { server, peek_id, interval_ms, active, failures: 0 });
            if active {
                self.remote.renewals.schedule(room, now);
            }
        }
        Ok(())
    }

    /// Did our peek of `room_id` over federation end (its events are then refused)?
    pub(crate) fn remote_peek_ended(&self, room_id: &str) -> bool {
        self.remote.by_room.get(room_id).is_some_and(|p| !p.active)
    }

    /// Is our copy of `room_id` kept current: a room not peeked over federation, or one whose
    /// federation peek is active.
    pub(super) fn remote_peek_usable(&self, room_id: &str) -> bool {
        self.remote.by_room.get(room_id).is_none_or(|p| p.active)
    }

    /// May local peekers read `room_id`: [`Peeks::remote_peek_usable`], or a local user is in
    /// the room (then it is current without a federation peek).
    pub(super) async fn remote_room_readable(&self, room_id: &str) -> Result<bool> {
        Ok(self.remote_peek_usable(room_id) || self.rooms.is_resident(room_id).await?)
    }

    /// Wait while our peek of `room_id` is being started or renewed: its server may send the
    /// room's next event before we have stored its answer (MSC2444 orders nothing between the
    /// two), and that event needs the answer's state. A lookup, for rooms never peeked.
    pub(crate) async fn settle_remote_peek(&self, room_id: &str) {
        let lock = self.remote.locks.get(room_id).map(|l| l.clone());
        if let Some(lock) = lock {
            drop(lock.lock().await);
        }
    }

    /// The last local device peek of `room_id` ended: release our federation peek soon.
    pub(super) fn local_peeks_gone(&self, room_id: &str) {
        if self.remote.by_room.get(room_id).is_some_and(|p| p.active) {
            self.remote.renewals.schedule(room_id.to_owned(), now_ms());
        }
    }

    /// Peek `room_id` over federation unless we do already: through `via`, then the room id's
    /// server (MSC2444: the servers of MSC2753's `servers`, or the domain of the room id or
    /// alias). Errors are the client's answer.
    pub(super) async fn ensure_remote_peek(&self, room_id: &str, via: &[String]) -> Result<()> {
        if self.remote.by_room.get(room_id).is_some_and(|p| p.active) {
            return Ok(());
        }
        let lock = self.remote.lock_of(room_id);
        let _starting = lock.lock().await;
        if self.remote.by_room.get(room_id).is_some_and(|p| p.active) {
            return Ok(());
        }
        let ours = self.federation.server_name.as_str();
        let mut servers: Vec<String> = via.to_vec();
        servers.extend(room_id.split_once(':').map(|(_, s)| s.to_owned()));
        servers.retain(|s| s != ours && <&ServerName>::try_from(s.as_str()).is_ok());
        let mut seen = std::collections::HashSet::new();
        servers.retain(|s| seen.insert(s.clone()));
        let peek_id = Alphanumeric.sample_string(&mut rand::thread_rng(), super::served::MAX_PEEK_ID_BYTES);
        let mut last = MatrixError::not_found("No server to peek the room through");
        for server in servers.iter().take(MAX_PEEK_SERVERS) {
            match self.put_peek(server, room_id, &peek_id).await {
                Ok(body) => match self.take_peek_answer(room_id, &body, None).await {
                    Ok(interval) => {
                        self.remote_started(room_id, server, &peek_id, interval).await?;
                        return Ok(());
                    }
                    Err(e) => {
                        // An answer we cannot use: release the peek it started there.
                        tracing::info!(%server, room_id, error = %e, "peek answer not usable");
                        self.delete_peek(server, room_id, &peek_id).await;
                        last = e;
                    }
                },
                Err(f) => {
                    tracing::info!(%server, room_id, error = %f.error, "peek over federation failed");
                    // The most telling refusal wins over "could not reach".
                    if !f.transient || matches!(last, MatrixError::NotFound(_)) {
                        last = f.error;
                    }
                }
            }
        }
        Err(last)
    }

    async fn remote_started(&self, room_id: &str, server: &str, peek_id: &str, interval_ms: i64) -> Result<()> {
        self.store.put_peek_out(room_id, server, peek_id, interval_ms, true).await?;
        let peek = OutPeek { server: server.into(), peek_id: peek_id.into(), interval_ms, active: true, failures: 0 };
        self.remote.by_room.insert(room_id.to_owned(), peek);
        self.remote.renewals.schedule(room_id.to_owned(), now_ms() + interval_ms / 2);
        Ok(())
    }

    /// Keep a `PUT /peek` answer: the state of a new (or lapsed) peek, nothing for a renewal
    /// (`{}`). Returns the renewal interval (`known`: the one we had, for a `{}`).
    async fn take_peek_answer(&self, room_id: &str, body: &Value, known: Option<i64>) -> Result<i64> {
        let bad = |m: &str| MatrixError::not_found(format!("The peeked server's answer is not usable: {m}"));
        let interval = match body.get("renewal_interval").and_then(Value::as_i64) {
            Some(ms) => ms.clamp(MIN_RENEWAL_MS, MAX_RENEWAL_MS),
            None => known.ok_or_else(|| bad("no renewal_interval"))?,
        };
        let Some(state) = body.get("state").and_then(Value::as_array) else {
            // A renewal: fine if we hold the room already.
            return match self.rooms.state(room_id).await {
                Ok(s) if s.get("m.room.create", "").is_some() => Ok(interval),
                _ => Err(bad("no state for a peek we did not have")),
            };
        };
        let version = match body.get("room_version").and_then(Value::as_str) {
            Some(v) => v.to_owned(),
            // Not in MSC2444's example answer: read it from the create event then.
            None => state
                .iter()
                .find(|e| e["type"] == "m.room.create")
                .and_then(|e| e["content"]["room_version"].as_str())
                .unwrap_or("1")
                .to_owned(),
        };
        let version = RoomVersionId::try_from(version.as_str()).map_err(|e| bad(&e.to_string()))?;
        if crate::federation::pdu::rules(&version).is_err() {
            return Err(MatrixError::Unknown(format!("The room's version {version} is not supported here")));
        }
        let list = |k: &str| body.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
        let latest = body.get("latest_event").filter(|e| e.is_object()).cloned();
        self.rooms.persist_peeked_state(room_id, &version, state.clone(), list("auth_chain"), latest).await?;
        Ok(interval)
    }

    /// `PUT …/peek/{roomId}/{peekId}` at `server`.
    async fn put_peek(&self, server: &str, room_id: &str, peek_id: &str) -> Result<Value, Failure> {
        let dest =
            <&ServerName>::try_from(server).map_err(|e| failure(MatrixError::invalid_param(e.to_string()), false))?;
        let mut tried = 0;
        let resp = loop {
            let path = format!("{}/peek/{}/{}?{VERSIONS}", PEEK_PATHS[tried], enc(room_id), enc(peek_id));
            let r =
                self.federation.send(dest, http::Method::PUT, &path, Some(&json!({})), true).await.map_err(|e| {
                    failure(MatrixError::not_found(format!("Could not reach {server} to peek the room: {e:#}")), true)
                })?;
            tried += 1;
            if tried == PEEK_PATHS.len() || !unrecognized(r.status.as_u16(), &r.body) {
                break r;
            }
        };
        if resp.status.is_success() {
            return Ok(resp.body);
        }
        let errcode = resp.body.get("errcode").and_then(Value::as_str).unwrap_or_default().to_owned();
        let msg = resp.body.get("error").and_then(Value::as_str).unwrap_or("refused").to_owned();
        let status = resp.status.as_u16();
        if unrecognized(status, &resp.body) {
            return Err(failure(
                MatrixError::not_found(format!(
                    "{server} does not support peeking over federation (MSC2444); the presence of its \
                     users reaches you through presence updates while you share a room with them"
                )),
                false,
            ));
        }
        Err(match (status, errcode.as_str()) {
            (403, _) => failure(MatrixError::Forbidden(format!("{server} refused the peek: {msg}")), false),
            (404, _) => failure(MatrixError::not_found(format!("{server}: {msg}")), false),
            (400, "M_INCOMPATIBLE_ROOM_VERSION") => {
                failure(MatrixError::Unknown(format!("The room's version is not supported here: {msg}")), false)
            }
            (429, _) => {
                let retry = resp.body.get("retry_after_ms").and_then(Value::as_u64).unwrap_or(1_000);
                failure(MatrixError::LimitExceeded { retry_after_ms: retry }, true)
            }
            (500.., _) => failure(MatrixError::not_found(format!("{server} failed the peek: {msg}")), true),
            _ => failure(MatrixError::not_found(format!("{server} refused the peek ({status}): {msg}")), false),
        })
    }

    /// `DELETE …/peek/{roomId}/{peekId}` at `server` (best effort: the peek expires anyway).
    async fn delete_peek(&self, server: &str, room_id: &str, peek_id: &str) {
        let Ok(dest) = <&ServerName>::try_from(server) else { return };
        for prefix in PEEK_PATHS {
            let path = format!("{prefix}/peek/{}/{}", enc(room_id), enc(peek_id));
            match self.federation.send(dest, http::Method::DELETE, &path, Some(&json!({})), true).await {
                Ok(r) if unrecognized(r.status.as_u16(), &r.body) => continue,
                Ok(r) if r.status.is_success() || r.status.as_u16() == 404 => {}
                Ok(r) => tracing::info!(%server, room_id, status = %r.status, "peek DELETE refused"),
                Err(e) => tracing::info!(%server, room_id, error = %format!("{e:#}"), "peek DELETE failed"),
            }
            return;
        }
    }

    /// A renewal deadline of `room_id` passed: renew while local devices peek it, else end it.
    pub(super) async fn renew_remote(&self, room_id: &str) -> Result<()> {
        let lock = self.remote.lock_of(room_id);
        let _renewing = lock.lock().await;
        let Some(peek) = self.remote.by_room.get(room_id).map(|p| p.clone()).filter(|p| p.active) else {
            return Ok(());
        };
        if self.local_peek_count(room_id) == 0 {
            self.delete_peek(&peek.server, room_id, &peek.peek_id).await;
            self.remote_ended(room_id, &peek).await?;
            tracing::info!(room_id, server = %peek.server, "peek over federation ended: no local peeker left");
            return Ok(());
        }
        let outcome = match self.put_peek(&peek.server, room_id, &peek.peek_id).await {
            Ok(body) => {
                if body.get("state").is_some() {
                    tracing::info!(room_id, server = %peek.server, "our peek had lapsed: taking in the state again");
                }
                self.take_peek_answer(room_id, &body, Some(peek.interval_ms)).await.map_err(|e| failure(e, true))
            }
            Err(f) => Err(f),
        };
        match outcome {
            Ok(interval) => self.remote_started(room_id, &peek.server, &peek.peek_id, interval).await,
            Err(f) if f.transient => {
                let failures = peek.failures + 1;
                let wait = (RETRY_BASE_MS << failures.min(20)).min(peek.interval_ms / 2).max(MIN_RENEWAL_MS / 2);
                tracing::info!(room_id, server = %peek.server, error = %f.error, wait, "peek renewal failed; retrying");
                if let Some(mut p) = self.remote.by_room.get_mut(room_id) {
                    p.failures = failures;
                }
                self.remote.renewals.schedule(room_id.to_owned(), now_ms() + wait);
                Ok(())
            }
            Err(f) => {
                tracing::info!(room_id, server = %peek.server, error = %f.error, "peek renewal refused: the peek ends");
                self.remote_ended(room_id, &peek).await?;
                // Local peekers find out at their next sync (`may_sync_peek`): wake them.
                let pos = self.stream.allocate();
                let p = pos.pos;
                pos.complete();
                let watchers = self.watchers(room_id);
                self.notifier.wake(watchers.iter().map(String::as_str), p);
                Ok(())
            }
        }
    }

    async fn remote_ended(&self, room_id: &str, peek: &OutPeek) -> Result<()> {
        self.store.put_peek_out(room_id, &peek.server, &peek.peek_id, peek.interval_ms, false).await?;
        if let Some(mut p) = self.remote.by_room.get_mut(room_id) {
            p.active = false;
        }
        self.remote.renewals.cancel(&room_id.to_owned());
        Ok(())
    }
}
