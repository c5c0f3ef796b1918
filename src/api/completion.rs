//! Requests that change something run to completion even if their client goes away.
//!
//! A handler's future is dropped when its client hangs up (our HTTP/1 driver watches the
//! socket so that a long-poll ends), when an HTTP/2 stream is reset, or when a peer server's
//! connection closes (its restart). Dropped at an `await` between a commit and the in-memory
//! work after it, a write would be stored but not applied: an event in the database that no
//! `/sync` delivers and no other server receives, while a retry with the same transaction id
//! answers that it was sent. Dropped while it begins a transaction, it could leave the
//! connection inside one (`src/store/mod.rs`, `out_of_transaction`).
//!
//! So, as Synapse does by default (only some of its reads are cancellable), every request
//! whose method may change something (not `GET`, `HEAD` or `OPTIONS`) runs in a task of its
//! own and the connection waits for that task: a client that hangs up loses the answer,
//! never half of the work. Reads stay cancellable: a long-poll whose client is gone ends at
//! once. A read that writes on the side guards its own write (a `/sync`'s `set_presence`
//! report: `presence::engine`'s `spawn_to_completion`).
//!
//! A handler that panics in its task is answered `500 M_UNKNOWN` instead of dropping the
//! connection.
//!
//! What a client can leave running is bounded ([`Detached`]): a client (an access token, or
//! without one the peer's address) with `max_detached_writes_per_client` writes still running
//! after it hung up has its next write refused `429 M_LIMIT_EXCEEDED` until one ends. Without
//! it, a client could fire slow writes (a join through an unreachable server) and hang up at
//! once, again and again, and the work would pile up with no connection left to count it.
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::MatrixError;

/// How long a refused client is told to wait before it writes again.
const RETRY_AFTER_MS: u64 = 1_000;

/// Writes still running after their client went away, counted per client (see the module
/// documentation). Clients are keyed by a hash of their access token, or of their address
/// when they send none; no token is kept.
pub struct Detached {
    /// Most writes a client may leave running; 0: no limit.
    limit: u32,
    hasher: RandomState,
    running: parking_lot::Mutex<HashMap<u64, u32>>,
}

impl Detached {
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self { limit, hasher: RandomState::new(), running: parking_lot::Mutex::new(HashMap::new()) })
    }

    /// The client a request comes from: its access token (`Authorization: Bearer` or the
    /// `access_token` query parameter), else the peer's IP address.
    pub fn client_of(&self, req: &Request) -> u64 {
        match crate::api::extract::access_token_in(req.headers(), req.uri()) {
            Some(token) => self.hasher.hash_one(("token", token)),
            None => self.peer_of(req),
        }
    }

    /// The peer's IP address as a client (the federation listener's key: an origin a request
    /// names is not checked yet here, and must not let one server fill another's count).
    pub fn peer_of(&self, req: &Request) -> u64 {
        let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        self.hasher.hash_one(("peer", ip))
    }

    /// Refuse a new write from `client` while it has `limit` writes running without it.
    pub fn admit(&self, client: u64) -> Result<(), MatrixError> {
        if self.limit == 0 {
            return Ok(());
        }
        if self.running(client) >= self.limit {
            return Err(MatrixError::LimitExceeded { retry_after_ms: RETRY_AFTER_MS });
        }
        Ok(())
    }

    /// Writes `client` has left running (for tests and metrics).
    pub fn running(&self, client: u64) -> u32 {
        self.running.lock().get(&client).copied().unwrap_or(0)
    }

    fn detach(self: &Arc<Self>, client: u64) -> DetachedWrite {
        *self.running.lock().entry(client).or_insert(0) += 1;
        DetachedWrite { detached: self.clone(), client }
    }
}

/// One write counted in [`Detached`] until it ends.
struct DetachedWrite {
    detached: Arc<Detached>,
    client: u64,
}

impl Drop for DetachedWrite {
    fn drop(&mut self) {
        let mut running = self.detached.running.lock();
        if let Some(n) = running.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.client);
            }
        }
    }
}

/// Whether a request with this method runs to completion (see the module documentation).
pub fn runs_to_completion(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Start `handler` in a task of its own, now, and return the wait for its answer: dropping
/// the wait does not drop the handler, and counts it against `client` in `detached` until it
/// ends. The wait holds only the task's handle (a parked connection holds this future).
pub fn to_completion<T>(
    handler: impl Future<Output = Response> + Send + 'static,
    detached: Arc<Detached>,
    client: u64,
) -> Completion<T> {
    // In the request's span, so what the handler logs is still the request's.
    let task = tokio::spawn(handler.in_current_span());
    Completion { task: Some(task), detached: Some((detached, client)), _answer: PhantomData }
}

/// The wait for a write's task (see [`to_completion`]).
pub struct Completion<T> {
    task: Option<JoinHandle<Response>>,
    detached: Option<(Arc<Detached>, u64)>,
    _answer: PhantomData<fn() -> T>,
}

impl<T> Future for Completion<T> {
    type Output = Result<Response, T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(task) = this.task.as_mut() else {
            return Poll::Ready(Ok(MatrixError::Internal(anyhow::anyhow!("polled after its answer")).into_response()));
        };
        let Poll::Ready(joined) = Pin::new(task).poll(cx) else { return Poll::Pending };
        this.task = None;
        Poll::Ready(Ok(match joined {
            Ok(resp) => resp,
            Err(e) => MatrixError::Internal(anyhow::anyhow!("the request's handler failed: {e}")).into_response(),
        }))
    }
}

/// The client is gone and its write still runs: count it until it ends.
impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        let (Some(task), Some((detached, client))) = (self.task.take(), self.detached.take()) else { return };
        if task.is_finished() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let counted = detached.detach(client);
        rt.spawn(async move {
            let _ = task.await;
            drop(counted);
        });
    }
}

/// The same as a middleware, for the federation listener's router (the client listener does
/// it in `serve::edge`, without a middleware's boxed future on every request). Peers are
/// told apart by address.
pub async fn middleware(State(detached): State<Arc<Detached>>, req: Request, next: Next) -> Response {
    if !runs_to_completion(req.method()) {
        return next.run(req).await;
    }
    let client = detached.peer_of(&req);
    if let Err(e) = detached.admit(client) {
        return e.into_response();
    }
    let Ok::<_, std::convert::Infallible>(resp) = to_completion(next.run(req), detached, client).await;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_may_be_cancelled() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!runs_to_completion(&m), "{m}");
        }
        for m in [Method::PUT, Method::POST, Method::DELETE, Method::PATCH] {
            assert!(runs_to_completion(&m), "{m}");
        }
    }

    #[tokio::test]
    async fn dropping_the_wait_does_not_drop_the_work() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let detached = Detached::new(1);
        let wait = to_completion::<()>(
            async move {
                let _ = go_rx.await;
                let _ = tx.send("finished");
                http::StatusCode::OK.into_response()
            },
            detached.clone(),
            7,
        );
        // Started, then dropped half-way, as a connection drops a request whose client left.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(20), wait).await;
        assert_eq!(detached.running(7), 1, "counted while it runs without its client");
        assert!(detached.admit(7).is_err(), "the client's next write is refused at the limit");
        assert!(detached.admit(8).is_ok(), "other clients are not");
        go_tx.send(()).unwrap();
        assert_eq!(rx.await.unwrap(), "finished");
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while detached.running(7) > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("no longer counted once it ends");
        assert!(detached.admit(7).is_ok());
    }

    #[test]
    fn no_limit_at_zero() {
        let detached = Detached::new(0);
        let _a = detached.detach(3);
        let _b = detached.detach(3);
        assert!(detached.admit(3).is_ok());
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_500() {
        let resp = to_completion::<()>(async { panic!("boom") }, Detached::new(0), 1).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}
