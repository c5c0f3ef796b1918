//! The client listener (`src/api/serve.rs`): HTTP/2 prior knowledge is still spoken,
//! keep-alive works, and the edge (NUL check, Matrix error JSON, CORS) applies to every
//! route. Memory per idle long-poll and hung-up clients: `tests/idle_poll_memory.rs`.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::TestApp;

/// A client that opens with the HTTP/2 preface (prior knowledge) is answered in HTTP/2: the
/// server's first frame is its SETTINGS frame.
#[tokio::test]
async fn http2_prior_knowledge_is_answered_in_http2() {
    let app = TestApp::spawn().await;
    let addr = app.running.as_ref().unwrap().addr;
    let first_frame = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
        let mut head = [0u8; 9];
        s.read_exact(&mut head).unwrap();
        head
    })
    .await
    .unwrap();
    assert_eq!(first_frame[3], 4, "frame type SETTINGS, got {first_frame:?}");
    assert_eq!(&first_frame[5..9], &[0, 0, 0, 0], "on stream 0");
}

/// HTTP/1.1 keep-alive: two requests on one connection, both answered.
#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let app = TestApp::spawn().await;
    let addr = app.running.as_ref().unwrap().addr;
    let answers = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!("GET /_matrix/client/versions HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        let mut answers = Vec::new();
        for _ in 0..2 {
            s.write_all(req.as_bytes()).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            // Read until the JSON body is complete (`versions` ends with `}`).
            while got == 0 || !String::from_utf8_lossy(&buf[..got]).trim_end().ends_with('}') {
                let n = s.read(&mut buf[got..]).unwrap();
                assert!(n > 0, "connection closed early");
                got += n;
            }
            answers.push(String::from_utf8_lossy(&buf[..got]).into_owned());
        }
        answers
    })
    .await
    .unwrap();
    for a in answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains("\"versions\""), "{a}");
    }
}

/// The edge applies to every route: CORS headers on a normal answer and on a preflight, a
/// NUL in the path refused as Matrix JSON, an unknown route answered as Matrix JSON.
#[tokio::test]
async fn the_edge_applies_cors_nul_check_and_matrix_errors() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(format!("{}/_matrix/client/versions", app.base))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"));
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/_matrix/client/v3/sync", app.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "preflight: {}", preflight.status());
    let header = |r: &reqwest::Response, name: &str| {
        r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    };
    // The spec's recommended headers ("Web Browser Clients"), on the preflight and on answers.
    for r in [&resp, &preflight] {
        assert_eq!(header(r, "access-control-allow-origin"), "*");
        assert_eq!(header(r, "access-control-allow-methods"), "GET, POST, PUT, DELETE, OPTIONS");
        assert!(header(r, "access-control-allow-headers").contains("Authorization"), "{:?}", r.headers());
    }
    // No endpoint logic for OPTIONS: /sync without a token is not refused, nothing is synced.
    assert_eq!(preflight.text().await.unwrap(), "{}");
    // A preflight asking for more request headers is allowed them, besides the spec's three.
    let asked = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/_matrix/client/v3/no/such/route", app.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "x-custom-thing")
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    let allowed = header(&asked, "access-control-allow-headers");
    assert!(allowed.contains("Authorization") && allowed.contains("x-custom-thing"), "{allowed}");

    let u = app.register("edge").await;
    let (status, body) = app.get("/_matrix/client/v3/rooms/%00x/state", Some(&u.token)).await;
    common::assert_err(status, &body, 400, "M_INVALID_PARAM");
    let (status, body) = app.get("/_matrix/client/v3/no/such/route", Some(&u.token)).await;
    common::assert_err(status, &body, 404, "M_UNRECOGNIZED");
    // Errors carry the CORS headers too, so a browser client can read them.
    let err = app.http.get(format!("{}/_matrix/client/v3/sync", app.base)).send().await.unwrap();
    assert_eq!(err.status(), 401);
    assert_eq!(header(&err, "access-control-allow-origin"), "*");
}

/// A raw HTTP/1 client on one TCP connection, to see exactly what the server writes.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

/// One response as read by [`Raw`]: the status, the head (lower-cased) and the decoded body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn errcode(&self) -> String {
        self.json()["errcode"].as_str().unwrap_or_default().to_owned()
    }
}

impl Raw {
    fn connect(addr: std::net::SocketAddr) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Read more bytes; false at EOF (or a reset).
    fn more(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.more(), "connection closed in the middle of a response");
        }
        self.buf.drain(..n).collect()
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.take(i + 2);
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.more(), "connection closed in the middle of a line");
        }
    }

    /// Read one response (`head_only`: the answer to a HEAD request, which has no body).
    fn answer(&mut self, head_only: bool) -> Answer {
        let status_line = self.line();
        let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect(&status_line);
        let mut head = status_line.to_lowercase();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            head.push('\n');
            head.push_str(&l.to_lowercase());
        }
        let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(|n| n.parse::<usize>().unwrap());
        let body = if head_only || status < 200 || status == 204 || status == 304 {
            Vec::new()
        } else if head.contains("transfer-encoding: chunked") {
            let mut body = Vec::new();
            loop {
                let size = usize::from_str_radix(self.line().split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    while !self.line().is_empty() {}
                    break body;
                }
                body.extend(self.take(size));
                assert_eq!(self.take(2), b"\r\n");
            }
        } else if let Some(n) = length {
            self.take(n)
        } else {
            while self.more() {}
            std::mem::take(&mut self.buf)
        };
        Answer { status, head, body }
    }

    /// Whether the server closes the connection (EOF) without sending anything more.
    fn closed(&mut self) -> bool {
        !self.more() && self.buf.is_empty()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn addr(app: &TestApp) -> std::net::SocketAddr {
    app.running.as_ref().unwrap().addr
}

const VERSIONS: &[u8] = b"GET /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\n\r\n";

/// Two requests sent at once (pipelined) are both answered, in order, on the same connection.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let app = TestApp::spawn().await;
    let addr = addr(&app);
    let (a, b) = blocking(move || {
        let mut c = Raw::connect(addr);
        let mut both = VERSIONS.to_vec();
        both.extend_from_slice(b"GET /_matrix/client/v3/no/such/route HTTP/1.1\r\nhost: seed\r\n\r\n");
        c.send(&both);
        (c.answer(false), c.answer(false))
    })
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.json()["versions"].is_array(), "{a:?}");
    assert!(a.head.contains("\ndate: "), "a date header, as hyper writes: {a:?}");
    assert_eq!((b.status, b.errcode()), (404, "M_UNRECOGNIZED".to_owned()), "{b:?}");
}

/// Every answer's `Date` is the current time (RFC 9110 §6.6.1), also when it is shared
/// between the answers of one second: a second later it has moved on.
#[tokio::test]
async fn the_date_header_is_the_current_second() {
    let app = TestApp::spawn().await;
    let date_of = |resp: &reqwest::Response| {
        let text = resp.headers().get("date").expect("a date header").to_str().unwrap().to_owned();
        httpdate::parse_http_date(&text).unwrap_or_else(|e| panic!("{text:?} is not an HTTP date: {e}"))
    };
    let versions = format!("{}/_matrix/client/versions", app.base);
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let first = date_of(&app.http.get(&versions).send().await.unwrap());
    let after = std::time::SystemTime::now();
    assert!(first >= before && first <= after, "{first:?} is not now ({before:?}..{after:?})");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = date_of(&app.http.get(&versions).send().await.unwrap());
    assert!(second > first, "a second later the date moved on: {first:?} then {second:?}");
}

/// A chunked request body (with a chunk extension and a trailer) is decoded: logging in with it works.
#[tokio::test]
async fn chunked_request_bodies_are_read() {
    let app = TestApp::spawn().await;
    app.register("chunky").await;
    let addr = addr(&app);
    let login = serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "chunky"}, "password": "pw-123456"}).to_string();
    let answer = blocking(move || {
        let (one, two) = login.split_at(20);
        let mut c = Raw::connect(addr);
        c.send(b"POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
        c.send(format!("{:x};ext=1\r\n{one}\r\n", one.len()).as_bytes());
        std::thread::sleep(Duration::from_millis(50));
        c.send(format!("{:X}\r\n{two}\r\n0\r\nx-trailer: yes\r\n\r\n", two.len()).as_bytes());
        c.answer(false)
    })
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.json()["access_token"].is_string(), "{answer:?}");
}

/// `Expect: 100-continue`: the server says `100 Continue` before the client sends the body.
#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let app = TestApp::spawn().await;
    app.register("patient").await;
    let addr = addr(&app);
    let login = serde_json::json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "patient"}, "password": "pw-123456"}).to_string();
    let (interim, answer) = blocking(move || {
        let mut c = Raw::connect(addr);
        c.send(
            format!(
                "POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
                login.len()
            )
            .as_bytes(),
        );
        let interim = c.answer(false);
        c.send(login.as_bytes());
        (interim, c.answer(false))
    })
    .await;
    assert_eq!(interim.status, 100, "{interim:?}");
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// HTTP/1.0 without `keep-alive`, and HTTP/1.1 with `Connection: close`: answered, then closed.
#[tokio::test]
async fn http10_and_connection_close_end_the_connection() {
    let app = TestApp::spawn().await;
    let addr = addr(&app);
    let (old, old_closed, close, close_closed) = blocking(move || {
        let mut c = Raw::connect(addr);
        c.send(b"GET /_matrix/client/versions HTTP/1.0\r\n\r\n");
        let old = c.answer(false);
        let old_closed = c.closed();
        let mut c = Raw::connect(addr);
        c.send(b"GET /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\nconnection: close\r\n\r\n");
        let close = c.answer(false);
        (old, old_closed, close, c.closed())
    })
    .await;
    assert!(old.head.starts_with("http/1.0 200"), "{old:?}");
    assert!(old.json()["versions"].is_array(), "{old:?}");
    assert!(old_closed, "HTTP/1.0 closes after the response");
    assert_eq!(close.status, 200, "{close:?}");
    assert!(close.head.contains("\nconnection: close"), "{close:?}");
    assert!(close_closed, "Connection: close closes after the response");
}

/// HEAD is answered without a body, and the connection goes on to the next request.
#[tokio::test]
async fn head_requests_have_no_body() {
    let app = TestApp::spawn().await;
    let addr = addr(&app);
    let (head, next) = blocking(move || {
        let mut c = Raw::connect(addr);
        c.send(b"HEAD /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\n\r\n");
        let head = c.answer(true);
        c.send(VERSIONS);
        (head, c.answer(false))
    })
    .await;
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.is_empty());
    assert_eq!(next.status, 200, "{next:?}");
    assert!(next.json()["versions"].is_array(), "the next response starts where HEAD's head ended: {next:?}");
}

/// Bad request heads are refused with Matrix error JSON and the connection is closed: a head
/// over 64 KB or with more than 100 fields (431), garbage, both framings at once (smuggling),
/// conflicting lengths, or a transfer coding we do not speak (400).
#[tokio::test]
async fn bad_heads_are_refused_as_matrix_errors() {
    let app = TestApp::spawn().await;
    let addr = addr(&app);
    let long = format!("GET /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\nx-long: {}\r\n\r\n", "a".repeat(70_000));
    let many = format!(
        "GET /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\n{}\r\n",
        (0..101).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (long.into_bytes(), 431),
        (many.into_bytes(), 431),
        (b"\x16\x03\x01\x02\x00 hello\r\n\r\n".to_vec(), 400),
        (b"GET /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\nbad header\r\n\r\n".to_vec(), 400),
        (
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (b"POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}".to_vec(), 400),
        (b"POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(), 400),
    ];
    for (request, want) in cases {
        let shown = String::from_utf8_lossy(&request[..request.len().min(120)]).into_owned();
        let (answer, closed) = blocking(move || {
            let mut c = Raw::connect(addr);
            c.send(&request);
            let a = c.answer(false);
            (a, c.closed())
        })
        .await;
        assert_eq!(answer.status, want, "{shown}: {answer:?}");
        assert_eq!(answer.errcode(), "M_UNKNOWN", "{shown}: {answer:?}");
        assert!(closed, "{shown}: closed after the refusal");
    }
}

/// A body over `max(max_request_bytes, max_upload_bytes)` is refused with 413 `M_TOO_LARGE`:
/// at once when `Content-Length` says so (no `100 Continue`), and when chunks add up to it.
#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::spawn_with(|c| {
        c.max_request_bytes = 1000;
        c.max_upload_bytes = 2000;
    })
    .await;
    let addr = addr(&app);
    let (early, chunked) = blocking(move || {
        let mut c = Raw::connect(addr);
        c.send(b"POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\nexpect: 100-continue\r\ncontent-length: 2001\r\n\r\n");
        let early = c.answer(false);
        let mut c = Raw::connect(addr);
        c.send(b"POST /_matrix/client/v3/login HTTP/1.1\r\nhost: seed\r\ntransfer-encoding: chunked\r\n\r\n");
        let chunk = format!("3e8\r\n{}\r\n", "x".repeat(1000));
        c.send(chunk.as_bytes());
        c.send(chunk.as_bytes());
        c.send(b"1\r\nx\r\n0\r\n\r\n");
        (early, c.answer(false))
    })
    .await;
    assert_eq!((early.status, early.errcode()), (413, "M_TOO_LARGE".to_owned()), "{early:?}");
    assert_eq!((chunked.status, chunked.errcode()), (413, "M_TOO_LARGE".to_owned()), "{chunked:?}");
}

/// A client that sends half a head is closed once the head timeout passes (slowloris), and a
/// keep-alive connection with no next request is closed after the keep-alive timeout.
#[tokio::test]
async fn slow_heads_and_idle_keep_alive_connections_are_closed() {
    let app = TestApp::spawn_with(|c| {
        c.http1_head_timeout_ms = 400;
        c.http1_keep_alive_timeout_ms = 600;
    })
    .await;
    let addr = addr(&app);
    let (slow, idle) = blocking(move || {
        let t = std::time::Instant::now();
        let mut c = Raw::connect(addr);
        c.send(b"GET /_matrix/client/versions HTTP/1.1\r\nhost: se");
        assert!(c.closed(), "half a head gets no answer");
        let slow = t.elapsed();
        let mut c = Raw::connect(addr);
        c.send(VERSIONS);
        assert_eq!(c.answer(false).status, 200);
        let t = std::time::Instant::now();
        assert!(c.closed(), "an idle keep-alive connection is closed without an answer");
        (slow, t.elapsed())
    })
    .await;
    assert!(slow >= Duration::from_millis(350) && slow < Duration::from_secs(5), "closed after {slow:?}");
    assert!(idle >= Duration::from_millis(550) && idle < Duration::from_secs(5), "closed after {idle:?}");
}

/// `http1_driver = "hyper"` still serves HTTP/1 (the operator's fallback).
#[tokio::test]
async fn the_hyper_driver_can_be_chosen() {
    let app = TestApp::spawn_with(|c| c.http1_driver = seed::config::Http1Driver::Hyper).await;
    let addr = addr(&app);
    let (a, b) = blocking(move || {
        let mut c = Raw::connect(addr);
        c.send(VERSIONS);
        let a = c.answer(false);
        c.send(b"GET /_matrix/client/versions HTTP/1.1\r\nhost: seed\r\nx-long: 1\r\n\r\n");
        (a, c.answer(false))
    })
    .await;
    assert_eq!((a.status, b.status), (200, 200), "{a:?} {b:?}");
}

/// A `Content-Length` body larger than one read (300 KB, sent in pieces) arrives whole, and
/// the download gives the same bytes back.
#[tokio::test]
async fn large_bodies_arrive_whole() {
    let app = TestApp::spawn().await;
    let u = app.register("uploader").await;
    let addr = addr(&app);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let token = u.token.clone();
    let answer = blocking(move || {
        let mut c = Raw::connect(addr);
        c.send(
            format!(
                "POST /_matrix/media/v3/upload HTTP/1.1\r\nhost: seed\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                sent.len()
            )
            .as_bytes(),
        );
        for piece in sent.chunks(70_000) {
            c.send(piece);
            std::thread::sleep(Duration::from_millis(10));
        }
        c.answer(false)
    })
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let uri = answer.json()["content_uri"].as_str().unwrap().to_owned();
    let media = uri.trim_start_matches("mxc://");
    let got = app
        .http
        .get(format!("{}/_matrix/client/v1/media/download/{media}", app.base))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap() == data, "the same bytes back");
}

/// Another connection holds the database's write lock (SQLite: `BEGIN IMMEDIATE`; PostgreSQL:
/// the `events` table locked against writes) until [`WriteLock::release`].
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(database_url: &str) -> Self {
        use sqlx::{Connection, Executor};
        if database_url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(database_url).await.expect("connect");
            c.execute("BEGIN").await.expect("begin");
            c.execute("LOCK TABLE events IN EXCLUSIVE MODE").await.expect("lock");
            Self::Postgres(c)
        } else {
            let mut c = sqlx::SqliteConnection::connect(database_url).await.expect("connect");
            c.execute("BEGIN IMMEDIATE").await.expect("begin immediate");
            Self::Sqlite(c)
        }
    }

    async fn release(self) {
        use sqlx::Executor;
        match self {
            Self::Sqlite(mut c) => c.execute("COMMIT").await.map(|_| ()),
            Self::Postgres(mut c) => c.execute("COMMIT").await.map(|_| ()),
        }
        .expect("commit");
    }
}

/// Send `PUT path` with a JSON `body` over HTTP/1.1, give the handler 500 ms to start (and
/// wait, here for a lock), then close the socket without reading the answer.
async fn put_then_hang_up(addr: std::net::SocketAddr, path: &str, token: &str, body: &str) {
    let request = format!(
        "PUT {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(s);
}

/// How a client gives up on a request it has sent.
#[derive(Clone, Copy, Debug)]
enum HangUp {
    /// HTTP/1.1: the socket is closed.
    CloseHttp1,
    /// HTTP/2 (prior knowledge): the request is dropped, which resets its stream, then the
    /// connection is closed.
    ResetHttp2,
}

/// A write whose client hangs up while the write waits (here: for the database's write lock)
/// is still done whole (`src/api/completion.rs`): the message is stored, reaches `/sync`, and
/// the client's retry with the same transaction id is answered with that event, not a second
/// one. Dropped with its client instead, the write would be lost or, dropped after its
/// commit, stored but never delivered.
async fn a_write_survives_its_client_hanging_up(app: TestApp, hang_up: HangUp) {
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, serde_json::json!({})).await;
    let since = app.sync(&alice, "timeout=0").await["next_batch"].as_str().unwrap().to_owned();
    let addr = app.running.as_ref().unwrap().addr;
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/left-early", common::enc(&room));
    let body = serde_json::json!({"msgtype": "m.text", "body": "sent by a client that hung up"}).to_string();

    let lock = WriteLock::take(&app.running.as_ref().unwrap().state.config.database_url).await;
    match hang_up {
        HangUp::CloseHttp1 => put_then_hang_up(addr, &path, &alice.token, &body).await,
        HangUp::ResetHttp2 => {
            let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
            let send = client
                .put(format!("http://{addr}{path}"))
                .bearer_auth(&alice.token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send();
            let sent = tokio::spawn(send);
            tokio::time::sleep(Duration::from_millis(500)).await;
            sent.abort();
            assert!(sent.await.unwrap_err().is_cancelled(), "the request was still waiting");
            drop(client);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let delivered = loop {
        let v = app.sync(&alice, &format!("since={since}&timeout=1000")).await;
        let events = v["rooms"]["join"][&room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        let sent: Vec<serde_json::Value> =
            events.into_iter().filter(|e| e["content"]["body"] == "sent by a client that hung up").collect();
        if !sent.is_empty() {
            assert_eq!(sent.len(), 1, "{sent:?}");
            break sent[0]["event_id"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the hung-up client's message never reached /sync");
    };
    let (status, v) = app.put(&path, Some(&alice.token), serde_json::from_str(&body).unwrap()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["event_id"], delivered.as_str(), "the retry is answered with the stored event");
    let (status, v) = app
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", common::enc(&room)), Some(&alice.token))
        .await;
    assert_eq!(status, 200, "{v}");
    let copies =
        v["chunk"].as_array().unwrap().iter().filter(|e| e["content"]["body"] == "sent by a client that hung up");
    assert_eq!(copies.count(), 1, "one message, not two");
}

/// [`a_write_survives_its_client_hanging_up`] on our HTTP/1 driver, which drops a request
/// whose client closes (so that a long-poll ends).
#[tokio::test]
async fn a_write_whose_client_hangs_up_is_still_done_whole() {
    a_write_survives_its_client_hanging_up(TestApp::spawn().await, HangUp::CloseHttp1).await;
}

/// The same on hyper's HTTP/1 connection (`http1_driver = "hyper"`).
#[tokio::test]
async fn a_write_whose_client_hangs_up_is_still_done_whole_on_hyper_http1() {
    let app = TestApp::spawn_with(|c| c.http1_driver = seed::config::Http1Driver::Hyper).await;
    a_write_survives_its_client_hanging_up(app, HangUp::CloseHttp1).await;
}

/// The same over HTTP/2, where the client's reset of the stream drops the request.
#[tokio::test]
async fn a_write_whose_http2_stream_is_reset_is_still_done_whole() {
    a_write_survives_its_client_hanging_up(TestApp::spawn().await, HangUp::ResetHttp2).await;
}

/// What a client may leave running is bounded (`max_detached_writes_per_client`): at the
/// limit its next write is refused at once with `429 M_LIMIT_EXCEEDED` and `retry_after_ms`,
/// other clients' writes are not, and once its write ends it may write again.
#[tokio::test]
async fn a_client_may_leave_only_so_many_writes_running() {
    let app = TestApp::spawn_with(|c| c.max_detached_writes_per_client = 1).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let alices = app.create_room(&alice, serde_json::json!({})).await;
    let bobs = app.create_room(&bob, serde_json::json!({})).await;
    let addr = app.running.as_ref().unwrap().addr;
    let send =
        |room: &str, txn: &str| format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", common::enc(room));
    let body = serde_json::json!({"msgtype": "m.text", "body": "hi"});

    let lock = WriteLock::take(&app.running.as_ref().unwrap().state.config.database_url).await;
    // Alice's write waits for the lock; she hangs up.
    put_then_hang_up(addr, &send(&alices, "left"), &alice.token, &body.to_string()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Her next write is refused at once, lock or not.
    let (status, v) = app.put(&send(&alices, "next"), Some(&alice.token), body.clone()).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED", "{v}");
    assert!(v["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0), "{v}");
    // Bob's is taken: it waits for the lock like any write, and is answered once it is free.
    let bobs_write = {
        let (http, url, token) = (app.http.clone(), format!("{}{}", app.base, send(&bobs, "b1")), bob.token.clone());
        let body = body.clone();
        tokio::spawn(async move { http.put(url).bearer_auth(token).json(&body).send().await.map(|r| r.status()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!bobs_write.is_finished(), "bob's write waits for the lock, it is not refused");
    lock.release().await;
    assert_eq!(bobs_write.await.unwrap().unwrap(), 200);

    // Once her write has ended she may write again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, v) = app.put(&send(&alices, "next"), Some(&alice.token), body.clone()).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 429, "{v}");
        assert!(std::time::Instant::now() < deadline, "still refused after her write ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
