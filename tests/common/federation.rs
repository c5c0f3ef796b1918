//! Federation test helpers: Seed instances with federation on (TLS on loopback with generated
//! certificates, self-signed peers accepted), server names with explicit ports, and a signer
//! that makes X-Matrix requests as one of the instances.
#![allow(dead_code)]
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::signatures::Ed25519KeyPair;
use ruma::OwnedServerName;
use seed::config::Config;
use serde_json::Value;

use super::common::User;
use super::TestApp;

/// A loopback port free right now (bound and released; the server binds it again).
///
/// It is taken below the kernel's ephemeral range (32768–60999 by default), so the gap between
/// release and the server's bind cannot be filled by another test's outgoing connection or
/// `127.0.0.1:0` listener; a per-process counter keeps the tests of one binary apart, and the
/// start is spread by process id so binaries running at once rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// A Seed instance with federation on.
pub struct FedApp {
    pub app: TestApp,
    pub server_name: String,
    pub fed_port: u16,
    pub data_dir: PathBuf,
}

/// Host spellings for the two instances: a name with a port, and an IP literal with a port.
pub enum Host {
    Localhost,
    Ip,
}

impl FedApp {
    pub async fn spawn(host: Host, tweak: impl FnOnce(&mut Config)) -> Self {
        let port = free_port();
        let server_name = match host {
            Host::Localhost => format!("localhost:{port}"),
            Host::Ip => format!("127.0.0.1:{port}"),
        };
        let mut data_dir = PathBuf::new();
        let name = server_name.clone();
        let app = TestApp::spawn_with(|c| {
            c.server_name = name;
            c.federation.enabled = true;
            c.federation.bind = format!("127.0.0.1:{port}").parse().unwrap();
            c.federation.data_dir = c.media_path.parent().unwrap().join("federation");
            c.federation.accept_invalid_certs = true;
            // Debug builds under a whole suite's load on 2 cores: an invite (the peer fetches
            // our keys, checks, signs and answers) once took over 5 s here. No test waits for
            // a federation request to time out (a stopped peer refuses the connection at once).
            c.federation.request_timeout_ms = 15_000;
            data_dir = c.federation.data_dir.clone();
            tweak(c);
        })
        .await;
        Self { app, server_name, fed_port: port, data_dir }
    }

    /// `https://127.0.0.1:PORT` of the federation listener.
    pub fn fed_base(&self) -> String {
        format!("https://127.0.0.1:{}", self.fed_port)
    }

    /// The instance's signing key, read from its data dir.
    pub fn signing_key(&self) -> Ed25519KeyPair {
        seed::federation::signing_key::load_or_generate(&self.data_dir.join("signing.key")).unwrap()
    }

    pub fn signer(&self) -> Signer {
        Signer { origin: self.server_name.parse().unwrap(), key: self.signing_key() }
    }
}

/// An HTTPS client for loopback peers with self-signed certificates.
pub fn tls_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Sends X-Matrix signed requests as `origin`.
pub struct Signer {
    pub origin: OwnedServerName,
    pub key: Ed25519KeyPair,
}

impl Signer {
    /// The `Authorization` header value for a request to `destination`.
    pub fn header(&self, destination: &str, method: &Method, path_and_query: &str, body: &[u8]) -> String {
        let req = http::Request::builder().method(method.as_str()).uri(path_and_query).body(body.to_vec()).unwrap();
        let input = XMatrixSigningInput::new(self.origin.clone(), destination.parse().unwrap(), &self.key);
        XMatrix::sign_http_request(&req, input).unwrap().to_string()
    }
}

/// `GET` on a federation listener with an optional `Authorization` header.
pub async fn fed_get(to: &FedApp, path_and_query: &str, authorization: Option<String>) -> (StatusCode, Value) {
    let mut req = tls_client().get(format!("{}{path_and_query}", to.fed_base()));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("federation request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A `GET` signed by `from` to `to`.
pub async fn signed_get(from: &Signer, to: &FedApp, path_and_query: &str) -> (StatusCode, Value) {
    let auth = from.header(&to.server_name, &Method::GET, path_and_query, b"");
    fed_get(to, path_and_query, Some(auth)).await
}

/// Long-poll `/sync` until `pred` holds for a response (30 s at most). Returns it.
pub async fn sync_until(app: &TestApp, user: &User, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut since: Option<String> = None;
    loop {
        let query = match &since {
            Some(s) => format!("since={s}&timeout=5000"),
            None => "timeout=0".to_owned(),
        };
        let v = app.sync(user, &query).await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last sync: {v}");
        since = v["next_batch"].as_str().map(str::to_owned);
    }
}

/// A signed `PUT /send` from `from` to `to` carrying `edus`.
pub async fn send_edus(from: &Signer, to: &FedApp, edus: Vec<Value>) {
    send_transaction(from, to, vec![], edus).await;
}

/// A signed `PUT /send/{txnId}` from `from` to `to`, asserting a `200`; the per-PDU answers.
pub async fn send_transaction(from: &Signer, to: &FedApp, pdus: Vec<Value>, edus: Vec<Value>) -> Value {
    let path = format!("/_matrix/federation/v1/send/{}", uuid::Uuid::new_v4().simple());
    let body = serde_json::json!({"origin": from.origin, "origin_server_ts": 0, "pdus": pdus, "edus": edus});
    let bytes = serde_json::to_vec(&body).unwrap();
    let auth = from.header(&to.server_name, &Method::PUT, &path, &bytes);
    let resp = tls_client()
        .put(format!("{}{path}", to.fed_base()))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}
