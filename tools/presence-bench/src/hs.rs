//! Minimal Matrix client-server API client on top of reqwest: every request has a timeout,
//! never panics, and reports failures as a short error key (`"429 M_LIMIT_EXCEEDED"`,
//! `"timeout"`, `"connect"`, ...) suitable for counting.

use std::fmt::Write;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

#[derive(Clone)]
pub struct Hs {
    http: reqwest::Client,
    base: String,
    pub req_timeout: Duration,
}

/// A completed HTTP exchange (any status).
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

impl Resp {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn errcode(&self) -> &str {
        self.body.get("errcode").and_then(Value::as_str).unwrap_or("")
    }
    /// Key used to count this response as an error.
    pub fn err_key(&self) -> String {
        let e = self.errcode();
        if e.is_empty() {
            self.status.to_string()
        } else {
            format!("{} {}", self.status, e)
        }
    }
    pub fn describe(&self) -> String {
        let mut b = self.body.to_string();
        b.truncate(300);
        format!("HTTP {}: {}", self.status, b)
    }
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved characters).
pub fn enc(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len() * 3);
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How many transport errors are described on stderr, with their cause chain and how long
/// the request had run; the rest are only counted (by [`transport_key`]).
const DESCRIBED_TRANSPORT_ERRORS: usize = 5;

fn report_transport_error(key: &str, method: &Method, path: &str, after: Duration, e: &reqwest::Error) {
    static DESCRIBED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if DESCRIBED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= DESCRIBED_TRANSPORT_ERRORS {
        return;
    }
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(chain, ": {s}");
        source = s.source();
    }
    eprintln!("transport error ({key}) after {} ms on {method} {path}: {chain}", after.as_millis());
}

fn transport_key(e: &reqwest::Error) -> String {
    // A connect timeout is both; it is a connection that never opened, not a slow answer.
    if e.is_connect() {
        "connect".into()
    } else if e.is_timeout() {
        "timeout".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else if e.is_request() {
        "request".into()
    } else {
        "transport".into()
    }
}

/// What every client of the generator shares: a 5-s connect timeout, `TCP_NODELAY`, and TCP
/// keep-alive off.
///
/// Keep-alive is off (reqwest 0.12 turns it on, a probe after 15 s idle): thousands of
/// long-polls opened within a second or two have their probe timers fire together, and on
/// loopback such a burst overflows the kernel's receive backlog (`netdev_max_backlog`, 1,000
/// packets; drops in `/proc/net/softnet_stat`). Unanswered probes then abort healthy
/// connections with `ETIMEDOUT`, which showed up as "timeout" errors in the idle scenario. Every
/// request has its own timeout, so no connection can hang unnoticed. The interval and the retry
/// count are cleared too: either alone still sets `SO_KEEPALIVE` (with the system's idle time).
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(None)
        .tcp_keepalive_interval(None)
        .tcp_keepalive_retries(None)
        .tcp_nodelay(true)
}

impl Hs {
    /// A client with one connection per request in flight (HTTP/1.1).
    pub fn new(base: &str, req_timeout: Duration, pool: usize) -> anyhow::Result<Self> {
        let http = client_builder().pool_max_idle_per_host(pool).pool_idle_timeout(Duration::from_secs(90)).build()?;
        Ok(Hs { http, base: base.trim_end_matches('/').to_string(), req_timeout })
    }

    /// The same server over one HTTP/2 connection (prior knowledge, no upgrade): every
    /// request is a stream on it (`--idle-http2-connections`).
    pub fn http2(&self) -> anyhow::Result<Self> {
        let http = client_builder().http2_prior_knowledge().build()?;
        Ok(Hs { http, base: self.base.clone(), req_timeout: self.req_timeout })
    }

    /// One request. `Err` carries a transport error key; HTTP errors come back as `Ok(Resp)`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Resp, String> {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .timeout(timeout.unwrap_or(self.req_timeout));
        if !query.is_empty() {
            rb = rb.query(query);
        }
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let started = std::time::Instant::now();
        let failed = |e: reqwest::Error| {
            let key = transport_key(&e);
            report_transport_error(&key, &method, path, started.elapsed(), &e);
            key
        };
        let resp = rb.send().await.map_err(failed)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(failed)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp { status, body })
    }

    /// Like `call` but for setup steps: retries transport errors, 429 (honouring
    /// `retry_after_ms`) and 5xx a few times, then returns the last outcome as an error string.
    pub async fn call_retry(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Resp, String> {
        let mut last = String::new();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * (1 << attempt.min(4)))).await;
            }
            match self.call(method.clone(), path, token, &[], body, None).await {
                Ok(r) if r.status == 429 => {
                    let ms = r.body.get("retry_after_ms").and_then(Value::as_u64).unwrap_or(500);
                    last = r.describe();
                    tokio::time::sleep(Duration::from_millis(ms.min(5000))).await;
                }
                Ok(r) if r.status >= 500 => last = r.describe(),
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(format!("{method} {path}: gave up after retries: {last}"))
    }
}
