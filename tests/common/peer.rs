//! A stand-in remote homeserver for the outgoing queue: a TLS listener (self-signed) that
//! records every `PUT /_matrix/federation/v1/send/{txnId}` and answers as told (accept,
//! fail with a status, or hold the request until released).
#![allow(dead_code)]
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

/// How the peer answers transactions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Accept,
    Fail(u16),
    /// Hold every request until [`FakePeer::release`] (then accept).
    Stall,
    /// Answer 200 after this many milliseconds (a slow peer, for the benchmark).
    Delay(u64),
}

/// One request the peer saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub txn_id: String,
    pub authorization: String,
    pub body: Value,
    /// The peer answered 200.
    pub accepted: bool,
}

#[derive(Default)]
struct Inner {
    seen: Mutex<Vec<Seen>>,
    mode: Mutex<Option<Mode>>,
    released: Mutex<Option<watch::Sender<bool>>>,
    /// Its signing key (`ed25519 <version> <seed>`), served at `/_matrix/key/v2/server`.
    key_line: String,
    server_name: String,
    /// Answers to other `GET`s, by path (query ignored).
    canned: Mutex<std::collections::HashMap<String, Value>>,
}

pub struct FakePeer {
    pub server_name: String,
    inner: Arc<Inner>,
    release_rx: watch::Receiver<bool>,
    handle: axum_server::Handle,
}

impl FakePeer {
    pub async fn start(mode: Mode) -> Self {
        seed::federation::tls::install_crypto_provider();
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.cert.pem().into_bytes(),
            cert.key_pair.serialize_pem().into_bytes(),
        )
        .await
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = watch::channel(false);
        let seed: [u8; 32] = rand::random();
        use base64::Engine;
        let key_line = format!("ed25519 peer {}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed));
        let inner = Arc::new(Inner {
            mode: Mutex::new(Some(mode)),
            released: Mutex::new(Some(tx)),
            key_line,
            server_name: format!("127.0.0.1:{port}"),
            ..Default::default()
        });
        let app = Router::new()
            .route("/_matrix/federation/v1/send/{txn_id}", put(transaction))
            .route("/_matrix/key/v2/server", axum::routing::get(server_keys))
            .fallback(canned)
            .with_state((inner.clone(), rx.clone()));
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls).handle(handle.clone());
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        Self { server_name: format!("127.0.0.1:{port}"), inner, release_rx: rx, handle }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock() = Some(mode);
    }

    /// Let held requests (and every later one) through.
    pub fn release(&self) {
        self.set_mode(Mode::Accept);
        if let Some(tx) = self.inner.released.lock().as_ref() {
            let _ = tx.send(true);
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().clone()
    }

    /// PDUs in accepted transactions (cheaper than [`FakePeer::delivered_ids`]).
    pub fn delivered_count(&self) -> usize {
        self.inner
            .seen
            .lock()
            .iter()
            .filter(|s| s.accepted)
            .map(|s| s.body["pdus"].as_array().map_or(0, Vec::len))
            .sum()
    }

    /// Requests received so far (attempts, accepted or not).
    pub fn attempts(&self) -> usize {
        self.inner.seen.lock().len()
    }

    /// Transactions answered 200, in order.
    pub fn accepted(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.accepted).collect()
    }

    /// Event ids (`event_id` field of our test PDUs) in accepted transactions, in order.
    pub fn delivered_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .flat_map(|s| s.body["pdus"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["event_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// EDUs in accepted transactions.
    pub fn delivered_edus(&self) -> Vec<Value> {
        self.accepted().iter().flat_map(|s| s.body["edus"].as_array().cloned().unwrap_or_default()).collect()
    }

    pub fn stop(&self) {
        self.handle.shutdown();
    }

    /// The peer's signing key line (`ed25519 peer <seed>`): its events and requests are
    /// signed with it (`seed::federation::signing_key::parse_key_line`).
    pub fn key_line(&self) -> String {
        self.inner.key_line.clone()
    }

    /// Answer `GET path` (the query is ignored) with `body` from now on.
    pub fn serve(&self, path: &str, body: Value) {
        self.inner.canned.lock().insert(path.to_owned(), body);
    }
}

/// The peer's self-signed server keys (spec "Publishing Keys").
async fn server_keys(State((inner, _)): State<(Arc<Inner>, watch::Receiver<bool>)>) -> Json<Value> {
    let key = seed::federation::signing_key::parse_key_line(&inner.key_line).unwrap();
    use base64::Engine;
    let public = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key.public_key());
    let until =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 86_400_000;
    let body = json!({
        "server_name": inner.server_name, "valid_until_ts": until,
        "verify_keys": {"ed25519:peer": {"key": public}}, "old_verify_keys": {},
    });
    let mut obj = seed::federation::pdu::to_canonical(body).unwrap();
    ruma::signatures::sign_json(&inner.server_name, &key, &mut obj).unwrap();
    Json(serde_json::to_value(obj).unwrap())
}

async fn canned(
    State((inner, _)): State<(Arc<Inner>, watch::Receiver<bool>)>,
    uri: axum::http::Uri,
) -> (StatusCode, Json<Value>) {
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy().into_owned();
    match inner.canned.lock().get(&path) {
        Some(v) => (StatusCode::OK, Json(v.clone())),
        None => (StatusCode::NOT_FOUND, Json(json!({"errcode": "M_NOT_FOUND", "error": "not served"}))),
    }
}

async fn transaction(
    State((inner, mut released)): State<(Arc<Inner>, watch::Receiver<bool>)>,
    Path(txn_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mode = inner.mode.lock().unwrap_or(Mode::Accept);
    let index = {
        let mut seen = inner.seen.lock();
        seen.push(Seen { txn_id, authorization, body, accepted: false });
        seen.len() - 1
    };
    match mode {
        Mode::Fail(code) => return (StatusCode::from_u16(code).unwrap(), Json(json!({"errcode": "M_UNKNOWN"}))),
        Mode::Stall => {
            let _ = released.wait_for(|r| *r).await;
        }
        Mode::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Mode::Accept => {}
    }
    inner.seen.lock()[index].accepted = true;
    (StatusCode::OK, Json(json!({"pdus": {}})))
}

/// Poll `cond` until it holds (at most `secs` seconds), failing with `what`.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
