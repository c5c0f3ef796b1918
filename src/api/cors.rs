//! CORS for browser clients, as the client-server API's "Web Browser Clients" section
//! recommends: the same headers on every response, and every `OPTIONS` request (a preflight)
//! answered here, before any endpoint's logic runs.
//!
//! The headers are constants added to the response once it is ready, so a request carries no
//! CORS state while it runs (issue #13: tower-http's `CorsLayer` built a header map per
//! request and kept it in the future of every parked long-poll).
use axum::response::{IntoResponse, Response};
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_REQUEST_HEADERS,
};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The spec's recommended headers (and every response header readable by the page, as before).
const HEADERS: [(http::HeaderName, &str); 4] = [
    (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    (ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, PUT, DELETE, OPTIONS"),
    (ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS),
    (ACCESS_CONTROL_EXPOSE_HEADERS, "*"),
];

const ALLOW_HEADERS: &str = "X-Requested-With, Content-Type, Authorization";

/// Add the CORS headers to a response (replacing any the route set).
pub fn add_headers(headers: &mut HeaderMap) {
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The answer to an `OPTIONS` request: `200` with an empty JSON object and the CORS headers.
/// A preflight that asks for more request headers than the spec's three is allowed those too
/// (`Access-Control-Allow-Headers: *` would not cover `Authorization`).
pub fn preflight(request: &HeaderMap) -> Response {
    let mut resp = (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response();
    add_headers(resp.headers_mut());
    let asked = request.get(ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok());
    if let Some(asked) = asked.map(str::trim).filter(|a| !a.is_empty()) {
        if let Ok(v) = HeaderValue::from_str(&format!("{ALLOW_HEADERS}, {asked}")) {
            resp.headers_mut().insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
    }
    resp
}
