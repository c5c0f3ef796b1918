//! The client listener: our own accept loop over hyper's connection types instead of
//! `axum::serve`, so a connection holds only what its protocol needs while a long-poll waits
//! (issue #13: 10,000 idle `/sync` long-polls, docs/performance-history.md "Idle long-poll memory").
//!
//! What differs from `axum::serve` (hyper-util's `auto` builder):
//! - A connection is handed to hyper only once its first bytes have arrived: an accepted
//!   socket that has sent nothing yet holds a task and its socket, no HTTP buffers.
//! - HTTP/1.1 and HTTP/2 (prior knowledge, `PRI * HTTP/2.0` preface) are told apart by
//!   peeking at those bytes, and each runs in a task of its own type: an HTTP/1 connection's
//!   task is sized for HTTP/1 only, not for the larger of the two protocols.
//! - `TCP_NODELAY` on every socket (responses are written whole; no Nagle delay), and
//!   accept errors such as running out of file descriptors back off instead of spinning.
//! - HTTP/1 is served by our own driver (`src/api/http1.rs`), which holds no buffer while a
//!   request waits, unless `http1_driver = "hyper"`; HTTP/2 is always hyper's.
//!
//! Graceful shutdown is as before: stop accepting, tell every connection to finish its
//! running requests and close, and wait for all of them.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::api::completion::Detached;
use crate::config::{Config, Http1Driver};

/// The bytes an HTTP/2 prior-knowledge client starts with (RFC 9113 §3.4); no HTTP/1
/// request line starts with `PRI`.
const H2_PREFACE_START: &[u8] = b"PRI ";

/// How long a connection may take to send its first bytes before it is closed: an accepted
/// socket that never speaks must not hold a file descriptor for ever.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(60);

/// After an accept error that is not about one connection (out of file descriptors, out of
/// memory), wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Largest HTTP/1 read buffer per connection (hyper's default is ~400 KB): request heads
/// beyond this are refused, and bodies are read in chunks of at most this.
const MAX_READ_BUFFER: usize = 64 * 1024;

/// What every request passes through around the router, in this order: a trace span, then
/// (one inline future, [`edge`]) CORS (`src/api/cors.rs`), NUL characters refused and every
/// error answered as Matrix error JSON (`src/api/guard.rs`). Applied here, around the whole
/// router, rather than as router layers: a router layer boxes its future once per layer on
/// every request, and a long-poll holds all of them while it waits.
pub fn edge_service(app: Router, detached: Arc<Detached>) -> impl Edge {
    tower::ServiceBuilder::new()
        .map_response(|r: http::Response<_>| r.map(axum::body::Body::new))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .service_fn(move |req| edge(app.clone(), &detached, req))
}

/// A plain function returning the future, not an `async fn`: an `async fn` keeps its
/// arguments (the router and the whole request head) for its whole life, and a connection's
/// task holds this future inline while a long-poll waits (issue #13: idle long-poll memory).
/// An answer known at once is a ready future; a routed request's future holds the router's
/// future once (awaited where it lies, not moved into a second slot), and the rare rewrite of
/// a non-Matrix error is boxed, so neither sizes the future a parked poll holds.
fn edge(
    app: Router,
    detached: &Arc<Detached>,
    req: axum::extract::Request,
) -> impl Future<Output = Result<Response, Infallible>> + Send {
    if req.method() == http::Method::OPTIONS {
        // A CORS preflight: no endpoint logic runs for `OPTIONS` (client-server API,
        // "Web Browser Clients").
        return Either::Left(std::future::ready(Ok(crate::api::cors::preflight(req.headers()))));
    }
    if crate::api::guard::has_nul(req.uri()) {
        let mut resp = crate::api::guard::nul_rejection().into_response();
        crate::api::cors::add_headers(resp.headers_mut());
        return Either::Left(std::future::ready(Ok(resp)));
    }
    if crate::api::completion::runs_to_completion(req.method()) {
        // Its own task, started now, so a client that hangs up cannot drop it half-way
        // (`src/api/completion.rs`); the connection holds only the wait for it.
        let client = detached.client_of(&req);
        if let Err(e) = detached.admit(client) {
            let mut resp = e.into_response();
            crate::api::cors::add_headers(resp.headers_mut());
            return Either::Left(std::future::ready(Ok(resp)));
        }
        let routed = tower::ServiceExt::oneshot(app, req);
        let handler = async move {
            let Ok(resp) = answered(routed).await;
            resp
        };
        let wait = crate::api::completion::to_completion(handler, detached.clone(), client);
        return Either::Right(Either::Right(wait));
    }
    let routed = tower::ServiceExt::oneshot(app, req);
    Either::Right(Either::Left(answered(routed)))
}

/// The routed request's answer, as a Matrix error where it is not one yet, with the CORS
/// headers. A plain function returning an `async move` block, which holds the router's future
/// once and awaits it where it lies (an `async fn` would keep its argument twice).
#[allow(clippy::manual_async_fn)] // the `async` block is the point (see above)
fn answered(
    mut routed: tower::util::Oneshot<Router, axum::extract::Request>,
) -> impl Future<Output = Result<Response, Infallible>> + Send {
    async move {
        let resp = (&mut routed).await?;
        let mut resp = if crate::api::guard::is_matrix_answer(&resp) {
            resp
        } else {
            Box::pin(crate::api::guard::matrix_errors(resp)).await
        };
        crate::api::cors::add_headers(resp.headers_mut());
        Ok(resp)
    }
}

/// Pending connections the kernel queues for the accept loop (Linux caps it at
/// `net.core.somaxconn`, 4096 by default). Tokio's `TcpListener::bind` asks for 1,024; when
/// thousands of clients (re)connect at once, after a restart or to open their long-polls, a
/// full queue drops their handshakes and each waits a SYN retransmission (1 s, then 3 s, …).
const LISTEN_BACKLOG: u32 = 4096;

/// Bind a client listener with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind`).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How the listener serves HTTP/1 (`http1_driver` and the own driver's limits).
#[derive(Debug, Clone, Copy)]
pub struct Http1Options {
    pub driver: Http1Driver,
    pub limits: super::http1::Limits,
}

impl Http1Options {
    pub fn from_config(c: &Config) -> Self {
        Self { driver: c.http1_driver, limits: super::http1::Limits::from_config(c) }
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, then finish running requests on every
/// connection and return once all are closed.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    http1: Http1Options,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Edge,
{
    // `stop` tells connections to shut down gracefully; every connection holds an `open`
    // receiver, so `open_tx.closed()` resolves once the last one is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, app.clone(), http1, stop_rx.clone(), open_rx.clone()));
    }
    drop(listener);
    drop(open_rx);
    let _ = stop_tx.send(true);
    open_tx.closed().await;
    Ok(())
}

/// Errors that concern only the connection being accepted (as hyper and axum treat them).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Which protocol a connection speaks, from its first bytes.
enum Protocol {
    Http1,
    Http2,
}

/// Wait for the connection's first bytes (or shutdown, or [`FIRST_BYTES_TIMEOUT`]) and tell
/// the protocol from them; `None` when the connection should just be closed.
async fn first_bytes(stream: &TcpStream, stop: &mut watch::Receiver<bool>) -> Option<Protocol> {
    let mut head = [0u8; H2_PREFACE_START.len()];
    let deadline = tokio::time::Instant::now() + FIRST_BYTES_TIMEOUT;
    loop {
        let n = tokio::select! {
            n = stream.peek(&mut head) => n.ok()?,
            () = stopping(stop) => return None,
            () = tokio::time::sleep_until(deadline) => return None,
        };
        if n == 0 {
            return None;
        }
        if !H2_PREFACE_START.starts_with(&head[..n]) {
            return Some(Protocol::Http1);
        }
        if n == head.len() {
            return Some(Protocol::Http2);
        }
        // A prefix of the preface: wait for the rest (peek returns what is there now).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What [`serve`] serves: a cloneable service that answers every request (the router behind
/// [`edge_service`]).
pub trait Edge:
    tower::Service<axum::extract::Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Edge for S where
    S: tower::Service<axum::extract::Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// One connection's task. A plain function returning an `async` block, not an `async fn`: an
/// `async fn` moves its arguments into locals and its future keeps both copies, and a parked
/// long-poll holds this future for its whole wait (issue #13: ~200 bytes per connection).
#[allow(clippy::manual_async_fn)] // the `async` block is the point (see above)
fn connection<S: Edge>(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: S,
    http1: Http1Options,
    mut stop: watch::Receiver<bool>,
    open: watch::Receiver<()>,
) -> impl Future<Output = ()> + Send {
    async move {
        // Held until the task ends: `serve` waits for every connection's receiver to go.
        let _open = &open;
        let Some(protocol) = first_bytes(&stream, &mut stop).await else { return };
        if let (Protocol::Http1, Http1Driver::Seed) = (&protocol, http1.driver) {
            return super::http1::serve(&mut stream, peer, &app, &mut stop, http1.limits).await;
        }
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            // Every service here is always ready (the router and the layers of `edge_service`).
            app.clone().call(req)
        });
        let io = TokioIo::new(stream);
        let result = match protocol {
            // Boxed, as HTTP/2: the fallback's state does not size every own-driver task.
            Protocol::Http1 => Box::pin(serve_http1(io, service, stop)).await,
            // Boxed: the (rare) HTTP/2 connection's larger state does not size every task.
            Protocol::Http2 => Box::pin(serve_http2(io, service, stop)).await,
        };
        if let Err(e) = result {
            tracing::trace!(%peer, error = %e, "connection ended with an error");
        }
    }
}

async fn serve_http1<S>(io: TokioIo<TcpStream>, service: S, mut stop: watch::Receiver<bool>) -> hyper::Result<()>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(MAX_READ_BUFFER)
        // Bodies are queued as they are, not copied into (and growing) the connection's buffer.
        .writev(true)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

async fn serve_http2<S>(io: TokioIo<TcpStream>, service: S, mut stop: watch::Receiver<bool>) -> hyper::Result<()>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = axum::response::Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Resolves once the listener is told to stop.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parked long-poll holds its connection's task for its whole wait, so the task's
    /// future is what every idle connection costs besides the boxed handler (issue #13). It
    /// was twice the bound while `connection` and `http1::serve` kept their arguments twice,
    /// the edge's future held the router's future twice and a refusal's state was laid out
    /// beside the handler's (docs/performance-history.md "Futures laid out for a parked
    /// poll").
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let (_open_tx, open) = watch::channel(());
        let options = Http1Options::from_config(&Config::default());
        let task = connection(stream, peer, edge_service(Router::new(), Detached::new(0)), options, stop, open);
        let size = std::mem::size_of_val(&task);
        eprintln!("connection task future: {size} bytes");
        assert!(size <= LIMIT, "a connection's task takes {size} bytes");
    }

    /// 1,120 bytes in the debug build (1,112 before writes ran in their own task); 2,280
    /// before the layout work.
    const LIMIT: usize = 1536;
}
