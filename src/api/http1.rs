//! Our own HTTP/1.1 connection driver for the client listener (issue #13): a connection whose
//! request is being handled (an idle `/sync` long-poll) holds its socket and the handler's
//! future, and no read or write buffer. hyper's `http1` connection keeps an 8 KB read buffer
//! and an 8 KB write buffer for the connection's whole life, which is most of what an idle
//! poll cost (docs/performance-history.md "Idle long-poll memory"). HTTP/2 stays on hyper (`src/api/serve.rs`), and
//! `http1_driver = "hyper"` brings hyper back for HTTP/1 too.
//!
//! One request at a time (RFC 9112):
//! 1. The head is read into a buffer of 1 KB that grows to at most [`MAX_HEAD_BYTES`] (more:
//!    431), parsed with `httparse` (at most [`MAX_HEADERS`] fields, more: 431), and the buffer
//!    is dropped; only bytes read past the head (a pipelined request) are kept.
//! 2. The body is read whole before the handler runs: `Content-Length` or `chunked`, never
//!    both and no other transfer coding (§6.1, request smuggling: 400), at most
//!    `max(max_request_bytes, max_upload_bytes)` (413).
//! 3. While the handler runs the socket is watched: a client that hangs up has its request
//!    dropped (its long-poll ends), and a client that sends more (pipelining) stops the watch
//!    with the bytes left in the socket until the response is written.
//! 4. The response is written as it comes: `content-length` when the body's size is known,
//!    else `chunked` (HTTP/1.0: the body ends at close).
//!
//! Timeouts: a head must be whole within `http1_head_timeout_ms` of its first byte (slowloris),
//! and a keep-alive connection with no new request for `http1_keep_alive_timeout_ms` is closed.
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::serve::Edge;
use crate::error::MatrixError;

/// A request head may not be longer than this (431 above it), as hyper's buffer limit was.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request head may not have more header fields than this (431 above it), as in hyper.
pub const MAX_HEADERS: usize = 100;

/// First size of the head buffer: a `/sync` request with a token and a filter fits.
const INITIAL_HEAD_BUFFER: usize = 1024;

/// Chunked bodies: most bytes a chunk-size line (with extensions) or the trailers may take.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Largest read while decoding a chunked body.
const CHUNKED_READ: usize = 16 * 1024;

/// Largest read of a `Content-Length` body.
const BODY_READ: usize = 64 * 1024;

/// After refusing a request, how long the unread rest of it is read and discarded before the
/// socket is closed: closing with unread bytes sends a reset, which can destroy the refusal
/// before the client reads it.
const LINGER: Duration = Duration::from_secs(2);

/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 1024 * 1024;

/// What the driver takes from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body: `max(max_request_bytes, max_upload_bytes)`.
    pub max_body_bytes: usize,
    /// `http1_head_timeout_ms`.
    pub head_timeout: Duration,
    /// `http1_keep_alive_timeout_ms`.
    pub keep_alive_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            max_body_bytes: c.max_request_bytes.max(c.max_upload_bytes),
            head_timeout: Duration::from_millis(c.http1_head_timeout_ms),
            keep_alive_timeout: Duration::from_millis(c.http1_keep_alive_timeout_ms),
        }
    }
}

/// Why a request is not handed to the service.
enum Refused {
    /// The client went away, timed out or the server is stopping: close without answering.
    Close,
    /// A bad request: answer this (Matrix error JSON), then close.
    Answer(Box<Response>),
}

impl From<io::Error> for Refused {
    fn from(_: io::Error) -> Self {
        Refused::Close
    }
}

fn refuse(status: StatusCode, err: MatrixError) -> Refused {
    let mut resp = err.into_response();
    *resp.status_mut() = status;
    Refused::Answer(Box::new(resp))
}

fn bad_request(msg: impl Into<String>) -> Refused {
    refuse(StatusCode::BAD_REQUEST, MatrixError::Unknown(msg.into()))
}

fn too_large(limit: usize) -> Refused {
    refuse(StatusCode::PAYLOAD_TOO_LARGE, MatrixError::TooLarge(format!("Request body exceeds {limit} bytes")))
}

/// A parsed request head, owned (the head buffer is gone by the time the request runs).
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// How the request body is delimited (RFC 9112 §6.3).
enum Framing {
    Length(u64),
    Chunked,
}

/// Serve HTTP/1 on `stream` until the client closes, a request asks to close, an error, a
/// timeout, or `stop` (after the running request is answered).
///
/// Borrows what the connection's task already holds: taken by value, the stream, the service
/// and the receiver would be stored twice in the task (issue #13). A plain function returning
/// an `async` block, as `serve::connection`: an `async fn`'s future keeps its arguments twice.
#[allow(clippy::manual_async_fn)] // the `async` block is the point (see above)
pub fn serve<'a, S: Edge>(
    stream: &'a mut TcpStream,
    peer: SocketAddr,
    app: &'a S,
    stop: &'a mut watch::Receiver<bool>,
    limits: Limits,
) -> impl std::future::Future<Output = ()> + Send + 'a {
    async move {
        // Bytes read past the previous request (pipelining); `None` holds no buffer at all.
        let mut pending: Option<Vec<u8>> = None;
        let mut first = true;
        loop {
            let wait = if first { None } else { Some(limits.keep_alive_timeout) };
            first = false;
            // Reading, writing and closing are boxed: their futures exist only while a request is
            // read or a response written, so the connection's task, which lives as long as a
            // parked long-poll, is sized by the handler's future alone (issue #13: 4,320 → 2,872
            // bytes per connection with the borrows, the pinned call and `hung_up` below).
            let Some((req, head_only, version, keep_alive)) =
                Box::pin(next_request(stream, &mut pending, stop, &limits, wait, peer)).await
            else {
                return;
            };
            // Pinned where it is made and awaited through the pin: a future moved between
            // bindings (or into `.await`) can take a slot of its own in this task each time, and
            // this one lives as long as a parked long-poll (issue #13). It lives in this block
            // only, so what writing the answer keeps is not laid out beside it.
            let resp = {
                let mut call = std::pin::pin!(tower::Service::call(&mut app.clone(), req));
                let resp = if pending.is_some() {
                    // The next request is already here: nothing to watch for.
                    call.await
                } else {
                    tokio::select! {
                        biased;
                        r = call.as_mut() => r,
                        gone = hung_up(stream) => {
                            if gone {
                                return;
                            }
                            call.await
                        }
                    }
                };
                match resp {
                    Ok(r) => r,
                    Err(never) => match never {},
                }
            };
            let keep_alive = keep_alive && !*stop.borrow();
            if !Box::pin(respond(stream, resp, head_only, version, keep_alive, peer)).await {
                return;
            }
        }
    }
}

/// Write `resp`; `false` once the connection is to close (closed here when the answer said
/// so, or after a write error).
async fn respond(
    stream: &mut TcpStream,
    resp: Response,
    head_only: bool,
    version: Version,
    keep_alive: bool,
    peer: SocketAddr,
) -> bool {
    match write_response(stream, resp, head_only, version, keep_alive).await {
        Ok(true) => true,
        Ok(false) => {
            let _ = stream.shutdown().await;
            false
        }
        Err(e) => {
            tracing::trace!(%peer, error = %e, "writing a response failed");
            false
        }
    }
}

/// Resolves once the listener is told to stop.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// While a request runs: `true` once the client has hung up (EOF or error), `false` as soon as
/// it sends more (left in the socket for the next request).
///
/// Polls the socket directly: its state is one reference, where `TcpStream::peek`'s future is
/// ~250 bytes, and it lives in the task of every parked long-poll.
fn hung_up(stream: &TcpStream) -> impl std::future::Future<Output = bool> + '_ {
    std::future::poll_fn(move |cx| {
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        stream.poll_peek(cx, &mut buf).map(|r| !matches!(r, Ok(n) if n > 0))
    })
}

/// Read the next request, head and body: the request for the service, whether it is a HEAD
/// request, its version, and whether the connection may be kept after it. `None` once the
/// connection is to close: a refused request is answered here (and the rest of it read and
/// discarded), so the refusal's state never sizes [`serve`]'s future, which a parked
/// long-poll holds.
async fn next_request(
    stream: &mut TcpStream,
    pending: &mut Option<Vec<u8>>,
    stop: &mut watch::Receiver<bool>,
    limits: &Limits,
    keep_alive_wait: Option<Duration>,
    peer: SocketAddr,
) -> Option<(axum::extract::Request, bool, Version, bool)> {
    let read = async {
        let head = read_head(stream, pending, stop, limits, keep_alive_wait).await?;
        let version = head.version;
        let keep_alive = match version {
            Version::HTTP_11 => !has_token(&head.headers, &CONNECTION, "close"),
            _ => has_token(&head.headers, &CONNECTION, "keep-alive"),
        };
        let framing = framing(&head.headers, version)?;
        let expects_continue = version == Version::HTTP_11
            && head.headers.get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let body = match framing {
            None => Body::empty(),
            Some(f) => Body::from(read_body(stream, pending, f, limits.max_body_bytes, expects_continue).await?),
        };
        let head_only = head.method == Method::HEAD;
        let mut req = http::Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = version;
        *req.headers_mut() = head.headers;
        req.extensions_mut().insert(ConnectInfo(peer));
        Ok::<_, Refused>((req, head_only, version, keep_alive))
    };
    match read.await {
        Ok(r) => Some(r),
        Err(Refused::Close) => None,
        Err(Refused::Answer(resp)) => {
            if write_response(stream, *resp, false, Version::HTTP_11, false).await.is_ok() {
                linger(stream).await;
            }
            None
        }
    }
}

/// Read and parse a request head. `keep_alive_wait`: how long to wait for its first byte
/// (`None` for a connection's first request, whose first bytes have arrived already).
async fn read_head(
    stream: &mut TcpStream,
    pending: &mut Option<Vec<u8>>,
    stop: &mut watch::Receiver<bool>,
    limits: &Limits,
    keep_alive_wait: Option<Duration>,
) -> Result<Head, Refused> {
    let mut buf = pending.take().unwrap_or_default();
    if buf.is_empty() {
        if let Some(wait) = keep_alive_wait {
            let mut byte = [0u8; 1];
            tokio::select! {
                r = stream.peek(&mut byte) => if r? == 0 { return Err(Refused::Close) },
                () = stopping(stop) => return Err(Refused::Close),
                () = tokio::time::sleep(wait) => return Err(Refused::Close),
            }
        }
    }
    let deadline = Instant::now() + limits.head_timeout;
    loop {
        if !buf.is_empty() {
            if let Some((head, len)) = parse_head(&buf)? {
                if buf.len() > len {
                    *pending = Some(buf[len..].to_vec());
                }
                return Ok(head);
            }
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(head_too_large());
        }
        if buf.len() == buf.capacity() {
            let want = (buf.capacity() * 2).clamp(INITIAL_HEAD_BUFFER, MAX_HEAD_BYTES);
            buf.reserve_exact(want - buf.len());
        }
        let n = tokio::select! {
            r = stream.read_buf(&mut buf) => r?,
            () = tokio::time::sleep_until(deadline) => return Err(Refused::Close),
            // A connection that has not started a request yet closes at once on shutdown.
            () = stopping(stop), if buf.is_empty() => return Err(Refused::Close),
        };
        if n == 0 {
            return Err(Refused::Close);
        }
    }
}

fn head_too_large() -> Refused {
    refuse(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        MatrixError::Unknown(format!("Request head exceeds {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} header fields")),
    )
}

/// Parse a whole head from `buf`: the head and its length, or `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Refused> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(head_too_large()),
        Err(e) => return Err(bad_request(format!("Malformed HTTP request: {e}"))),
    };
    let method = parsed
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| bad_request("Malformed HTTP method"))?;
    let uri = parsed.path.and_then(|p| p.parse::<Uri>().ok()).ok_or_else(|| bad_request("Malformed request target"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad_request("Malformed header name"))?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| bad_request("Malformed header value"))?;
        headers.append(name, value);
    }
    Ok(Some((Head { method, uri, version, headers }, len)))
}

/// Whether a comma-separated header (`Connection`) lists `token`.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The body's framing (`None`: no body). RFC 9112 §6.1/§6.3: a request with both
/// `Transfer-Encoding` and `Content-Length`, a transfer coding other than `chunked`, or
/// `Content-Length` values that disagree could be read differently by a proxy in front of
/// us (request smuggling), so it is refused.
fn framing(headers: &HeaderMap, version: Version) -> Result<Option<Framing>, Refused> {
    if headers.contains_key(TRANSFER_ENCODING) {
        if headers.contains_key(CONTENT_LENGTH) {
            return Err(bad_request("Both Transfer-Encoding and Content-Length"));
        }
        let mut codings = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(|c| c.trim_ascii())
            .filter(|c| !c.is_empty());
        let only_chunked =
            codings.next().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) && codings.next().is_none();
        if !only_chunked || version != Version::HTTP_11 {
            return Err(bad_request("Unsupported Transfer-Encoding"));
        }
        return Ok(Some(Framing::Chunked));
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH).iter() {
        for part in value.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            let n = (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(part).ok()?.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| bad_request("Malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad_request("Conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.filter(|n| *n > 0).map(Framing::Length))
}

/// Read a whole body (at most `limit` bytes), taking what is in `pending` first and leaving
/// there what follows it.
async fn read_body(
    stream: &mut TcpStream,
    pending: &mut Option<Vec<u8>>,
    framing: Framing,
    limit: usize,
    expects_continue: bool,
) -> Result<Vec<u8>, Refused> {
    let mut raw = pending.take().unwrap_or_default();
    match framing {
        Framing::Length(n) => {
            let n = usize::try_from(n).ok().filter(|n| *n <= limit).ok_or_else(|| too_large(limit))?;
            if raw.len() >= n {
                if raw.len() > n {
                    *pending = Some(raw[n..].to_vec());
                }
                raw.truncate(n);
                raw.shrink_to_fit();
                return Ok(raw);
            }
            if expects_continue {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            // Grown as bytes arrive, not allocated for the announced length: a client that
            // announces 50 MB and sends nothing holds nothing.
            while raw.len() < n {
                let want = (n - raw.len()).min(BODY_READ);
                raw.reserve(want);
                if (&mut *stream).take(want as u64).read_buf(&mut raw).await? == 0 {
                    return Err(Refused::Close);
                }
            }
            Ok(raw)
        }
        Framing::Chunked => {
            if expects_continue {
                stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
            }
            let (body, used) = read_chunked(stream, raw, limit).await?;
            if let Some(rest) = used {
                *pending = Some(rest);
            }
            Ok(body)
        }
    }
}

/// Decode a `chunked` body (RFC 9112 §7.1) from `raw` (bytes already read) and the socket;
/// extensions and trailers are skipped. Returns the body and the bytes that follow it.
async fn read_chunked(
    stream: &mut TcpStream,
    mut raw: Vec<u8>,
    limit: usize,
) -> Result<(Vec<u8>, Option<Vec<u8>>), Refused> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let (consumed, size) = loop {
            match httparse::parse_chunk_size(&raw[pos..]) {
                Ok(httparse::Status::Complete(c)) => break c,
                Ok(httparse::Status::Partial) if raw.len() - pos <= MAX_CHUNK_LINE => {
                    fill(stream, &mut raw, &mut pos).await?
                }
                _ => return Err(bad_request("Malformed chunk size")),
            }
        };
        pos += consumed;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| body.len().checked_add(*s).is_some_and(|total| total <= limit))
            .ok_or_else(|| too_large(limit))?;
        if size == 0 {
            break;
        }
        while raw.len() - pos < size + 2 {
            fill(stream, &mut raw, &mut pos).await?;
        }
        body.extend_from_slice(&raw[pos..pos + size]);
        if &raw[pos + size..pos + size + 2] != b"\r\n" {
            return Err(bad_request("Malformed chunk"));
        }
        pos += size + 2;
    }
    // Trailer fields, then the empty line that ends the body.
    loop {
        match raw[pos..].windows(2).position(|w| w == b"\r\n") {
            Some(0) => {
                pos += 2;
                break;
            }
            Some(line) => pos += line + 2,
            None if raw.len() - pos <= MAX_CHUNK_LINE => fill(stream, &mut raw, &mut pos).await?,
            None => return Err(bad_request("Trailer line too long")),
        }
    }
    let rest = (raw.len() > pos).then(|| raw[pos..].to_vec());
    Ok((body, rest))
}

/// Read more of a chunked body into `raw`, first dropping what is consumed (`..pos`).
async fn fill(stream: &mut TcpStream, raw: &mut Vec<u8>, pos: &mut usize) -> Result<(), Refused> {
    raw.drain(..*pos);
    *pos = 0;
    raw.reserve(CHUNKED_READ);
    let n = (&mut *stream).take(CHUNKED_READ as u64).read_buf(raw).await?;
    if n == 0 {
        return Err(Refused::Close);
    }
    Ok(())
}

/// How the response body is delimited on the wire.
enum Delimit {
    None,
    Length,
    Chunked,
    Close,
}

/// Write `resp`; `Ok(true)` if the connection may serve another request.
async fn write_response(
    stream: &mut TcpStream,
    resp: Response,
    head_only: bool,
    version: Version,
    keep_alive: bool,
) -> io::Result<bool> {
    let (mut parts, body) = resp.into_parts();
    let status = parts.status;
    let mut keep_alive = keep_alive && !has_token(&parts.headers, &CONNECTION, "close");
    parts.headers.remove(TRANSFER_ENCODING);
    let no_body = status.is_informational() || status == StatusCode::NO_CONTENT;
    let delimit = if no_body {
        parts.headers.remove(CONTENT_LENGTH);
        Delimit::None
    } else if head_only || status == StatusCode::NOT_MODIFIED {
        // The length of what a GET would have answered, when the handler says it.
        if let Some(n) = body.size_hint().exact().filter(|n| *n > 0) {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        Delimit::None
    } else if let Some(n) = body.size_hint().exact() {
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        Delimit::Length
    } else if version == Version::HTTP_11 {
        parts.headers.remove(CONTENT_LENGTH);
        parts.headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        Delimit::Chunked
    } else {
        parts.headers.remove(CONTENT_LENGTH);
        keep_alive = false;
        Delimit::Close
    };
    parts.headers.remove(CONNECTION);
    if !keep_alive {
        parts.headers.insert(CONNECTION, HeaderValue::from_static("close"));
    } else if version == Version::HTTP_10 {
        parts.headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if !parts.headers.contains_key(DATE) {
        parts.headers.insert(DATE, http_date_now());
    }

    let mut head = encode_head(status, version, &parts.headers);
    if let Delimit::None = delimit {
        write_all(stream, &mut [IoSlice::new(&head)]).await?;
        return Ok(keep_alive);
    }
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(io::Error::other)?.into_data() else { continue };
        if data.is_empty() {
            continue;
        }
        // The head goes out with the first data, then the buffer is gone.
        let head = std::mem::take(&mut head);
        if let Delimit::Chunked = delimit {
            let size = format!("{:x}\r\n", data.len());
            write_all(
                stream,
                &mut [IoSlice::new(&head), IoSlice::new(size.as_bytes()), IoSlice::new(&data), IoSlice::new(b"\r\n")],
            )
            .await?;
        } else {
            write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&data)]).await?;
        }
    }
    let end: &[u8] = if let Delimit::Chunked = delimit { b"0\r\n\r\n" } else { b"" };
    write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(end)]).await?;
    Ok(keep_alive && !matches!(delimit, Delimit::Close))
}

/// The status line and header fields, in a buffer sized for them.
fn encode_head(status: StatusCode, version: Version, headers: &HeaderMap) -> Vec<u8> {
    let fields: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut head = Vec::with_capacity(fields + 48);
    head.extend_from_slice(if version == Version::HTTP_10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Write every byte of `bufs`, in as few system calls as the socket takes them.
async fn write_all(stream: &mut TcpStream, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = stream.write_vectored(bufs).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// After a refusal: stop sending, then read and drop what the client still sends (bounded),
/// so the close does not reset the connection before the client has read the refusal.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut sink = vec![0u8; 1024];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// The `Date` header for now. Its text changes once a second, so it is formatted once a
/// second and shared (a `HeaderValue` clone is a reference count), not formatted per response.
fn http_date_now() -> HeaderValue {
    static CACHE: parking_lot::Mutex<Option<(u64, HeaderValue)>> = parking_lot::const_mutex(None);
    let now = std::time::SystemTime::now();
    let second = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut cached = CACHE.lock();
    match &*cached {
        Some((at, date)) if *at == second => date.clone(),
        _ => {
            // An HTTP date is ASCII: always a valid header value.
            let date = HeaderValue::from_str(&httpdate::fmt_http_date(now)).unwrap_or(HeaderValue::from_static(""));
            *cached = Some((second, date.clone()));
            date
        }
    }
}
