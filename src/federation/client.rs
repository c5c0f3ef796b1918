//! Outgoing federation requests: server discovery (spec "Resolving server names") and X-Matrix
//! signed requests over HTTPS.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::Method;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::ServerName;
use serde_json::Value;

use super::Federation;

/// Largest response body read from a peer.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Resolved addresses are reused this long; a failed `.well-known` lookup for a shorter time.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const DISCOVERY_FALLBACK_TTL: Duration = Duration::from_secs(300);
/// The default federation port (spec).
pub const DEFAULT_PORT: u16 = 8448;

/// A peer's answer: HTTP status and JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct PeerResponse {
    pub status: http::StatusCode,
    pub body: Value,
}

pub fn http_client(cfg: &crate::config::FederationConfig) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .danger_accept_invalid_certs(cfg.accept_invalid_certs)
        .timeout(Duration::from_millis(cfg.request_timeout_ms.max(1)))
        .connect_timeout(Duration::from_millis(cfg.request_timeout_ms.clamp(1, 10_000)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Seed/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
}

/// `m.server` of a `.well-known/matrix/server` answer, when it is a valid server name.
fn delegated_server(body: &Value) -> Option<&ServerName> {
    let s = body.get("m.server")?.as_str()?;
    <&ServerName>::try_from(s).ok()
}

impl Federation {
    /// `https://host:port` to reach `dest` at: IP literals and explicit ports as given, else the
    /// `.well-known` delegation, else port 8448. SRV records are not looked up.
    pub(crate) async fn base_url(&self, dest: &ServerName) -> String {
        if let Some(hit) = self.discovery.get(dest.as_str()) {
            if hit.1 > Instant::now() {
                return hit.0.clone();
            }
        }
        let (url, ttl) = self.discover(dest).await;
        if self.discovery.len() > 10_000 {
            self.discovery.clear();
        }
        self.discovery.insert(dest.as_str().to_owned(), (url.clone(), Instant::now() + ttl));
        url
    }

    async fn discover(&self, dest: &ServerName) -> (String, Duration) {
        if is_ip_literal(dest.host()) || dest.port().is_some() {
            return (with_port(dest), DISCOVERY_TTL);
        }
        let well_known = format!("https://{}/.well-known/matrix/server", dest.host());
        let found = async {
            let resp = self.http.get(&well_known).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let bytes = read_limited(resp, 64 * 1024).await.ok()?;
            let body: Value = serde_json::from_slice(&bytes).ok()?;
            delegated_server(&body).map(ToOwned::to_owned)
        }
        .await;
        match found {
            Some(delegated) => (with_port(&delegated), DISCOVERY_TTL),
            None => (format!("https://{}:{DEFAULT_PORT}", dest.host()), DISCOVERY_FALLBACK_TTL),
        }
    }

    /// Whether this server may talk to `server` (allow and deny lists).
    pub fn peer_allowed(&self, server: &str) -> bool {
        let host_matches = |list: &[String]| list.iter().any(|s| s == server);
        if host_matches(&self.config.deny) {
            return false;
        }
        self.config.allow.is_empty() || host_matches(&self.config.allow)
    }

    /// Send a request to `dest`, signed with X-Matrix when `signed`. `path_and_query` must be
    /// percent-encoded already: it is signed exactly as sent.
    pub async fn send(
        &self,
        dest: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        signed: bool,
    ) -> anyhow::Result<PeerResponse> {
        anyhow::ensure!(self.enabled(), "federation is disabled");
        anyhow::ensure!(self.peer_allowed(dest.as_str()), "{dest} is not an allowed peer");
        anyhow::ensure!(dest.as_str() != self.server_name.as_str(), "refusing to send a request to ourselves");
        let bytes = match body {
            Some(v) => serde_json::to_vec(v)?,
            None => Vec::new(),
        };
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base_url(dest).await))
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json").body(bytes.clone());
        }
        if signed {
            anyhow::ensure!(self.enabled, "federation is disabled");
            let key = &self.key;
            let http_req = http::Request::builder().method(method).uri(path_and_query).body(bytes)?;
            let input = XMatrixSigningInput::new(self.server_name.clone(), dest.to_owned(), key);
            let auth = XMatrix::sign_http_request(&http_req, input)?;
            req = req.header(http::header::AUTHORIZATION, http::HeaderValue::from(&auth));
        }
        let resp = req.send().await.with_context(|| format!("request to {dest}"))?;
        let status = resp.status();
        let bytes = read_limited(resp, MAX_RESPONSE_BYTES).await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(PeerResponse { status, body })
    }

    /// A signed `GET`.
    pub async fn get(&self, dest: &ServerName, path_and_query: &str) -> anyhow::Result<PeerResponse> {
        self.send(dest, Method::GET, path_and_query, None, true).await
    }
}

fn with_port(name: &ServerName) -> String {
    format!("https://{}:{}", name.host(), name.port().unwrap_or(DEFAULT_PORT))
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        anyhow::ensure!(out.len() + chunk.len() <= limit, "response larger than {limit} bytes");
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Percent-encode a query value or path segment.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_ports_and_ip_literals_are_used_as_given() {
        let n = <&ServerName>::try_from("localhost:8481").unwrap();
        assert_eq!(with_port(n), "https://localhost:8481");
        let n = <&ServerName>::try_from("127.0.0.1").unwrap();
        assert!(is_ip_literal(n.host()));
        assert_eq!(with_port(n), "https://127.0.0.1:8448");
        let n = <&ServerName>::try_from("[::1]:9000").unwrap();
        assert!(is_ip_literal(n.host()));
        assert_eq!(with_port(n), "https://[::1]:9000");
        assert!(!is_ip_literal("example.org"));
    }

    #[test]
    fn well_known_delegation_is_read() {
        let body = serde_json::json!({"m.server": "fed.example.org:443"});
        assert_eq!(delegated_server(&body).unwrap().as_str(), "fed.example.org:443");
        assert!(delegated_server(&serde_json::json!({"m.server": "not a name!"})).is_none());
        assert!(delegated_server(&serde_json::json!({})).is_none());
    }
}
