//! X-Matrix request authentication (spec "Request Authentication"): an extractor that gives
//! the verified origin server of a federation request, or answers 401 `M_UNAUTHORIZED`
//! (missing, malformed or bad signature, wrong destination, unknown key) or 403
//! `M_FORBIDDEN` (a peer the allow/deny lists refuse).
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::federation::authentication::XMatrix;
use ruma::OwnedServerName;
use serde_json::json;

use crate::app::AppState;

/// Matrix error JSON for the federation API (its errcodes are not all client-API ones).
pub fn fed_error(status: StatusCode, errcode: &str, msg: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"errcode": errcode, "error": msg.to_string()}))).into_response()
}

fn unauthorized(msg: impl std::fmt::Display) -> Response {
    fed_error(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", msg)
}

/// A verified federation request: who sent it, and its body.
pub struct Signed {
    pub origin: OwnedServerName,
    pub body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = Response;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Self::Rejection> {
        let fed = &s.federation;
        let (parts, body) = req.into_parts();
        let x = XMatrix::extract_from_http_headers(&parts.headers)
            .map_err(|e| unauthorized(format!("Missing or malformed X-Matrix authorization: {e}")))?;
        if x.destination.as_ref().is_some_and(|d| *d != fed.server_name) {
            return Err(unauthorized("The request is meant for another server (destination)"));
        }
        if !fed.peer_allowed(x.origin.as_str()) {
            return Err(fed_error(StatusCode::FORBIDDEN, "M_FORBIDDEN", "Federation with this server is not allowed"));
        }
        if x.origin == fed.server_name {
            return Err(unauthorized("The request claims to come from this server"));
        }
        let body = axum::body::to_bytes(body, s.config.max_request_bytes)
            .await
            .map_err(|_| fed_error(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", "request body is too large"))?;
        let keys = fed.server_key(&x.origin, x.key.as_str()).await.map_err(|e| {
            tracing::info!(origin = %x.origin, error = %format!("{e:#}"), "federation request: no key to check it");
            unauthorized(format!("Cannot verify the signature: no key {} of {}", x.key, x.origin))
        })?;
        let http_req = http::Request::builder().method(parts.method.clone()).uri(parts.uri.clone()).body(&body[..]);
        let http_req = http_req.map_err(|_| unauthorized("Malformed request"))?;
        let map = BTreeMap::from([(x.origin.to_string(), keys)]);
        if let Err(e) = x.verify_http_request(&http_req, &fed.server_name, &map) {
            tracing::info!(origin = %x.origin, error = %e, "federation request: bad signature");
            return Err(unauthorized(format!("Invalid signature: {e}")));
        }
        // A peer that talks to us is up: retry what we queued for it now.
        fed.peer_is_up(x.origin.as_str());
        Ok(Signed { origin: x.origin, body })
    }
}
