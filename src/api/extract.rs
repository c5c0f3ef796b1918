//! Extractors at the HTTP edge: ruma request types, JSON bodies with Matrix errors, and the
//! access token. [`Ruma<Req>`](Ruma) is the request half of a route registered with
//! `ruma_route`; its response half is [`RumaResponse`](super::response::RumaResponse)
//! (the two route styles are described in `src/api/mod.rs`).
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use ruma::api::error::{DeserializationError, FromHttpRequestError};
use ruma::api::{IncomingRequest, IncomingRequestExt};
use serde::de::DeserializeOwned;

use crate::accounts::Session;
use crate::app::AppState;
use crate::error::MatrixError;

/// A request parsed into its ruma type (path, query and body).
pub struct Ruma<T>(pub T);

async fn read_body(body: axum::body::Body, state: &AppState) -> Result<Bytes, MatrixError> {
    axum::body::to_bytes(body, state.config.max_request_bytes)
        .await
        .map_err(|_| MatrixError::TooLarge("request body is too large".into()))
}

pub fn map_ruma_error(e: FromHttpRequestError) -> MatrixError {
    match e {
        FromHttpRequestError::Deserialization(DeserializationError::Json(j)) => json_error(&j),
        FromHttpRequestError::Deserialization(DeserializationError::Query(q)) => {
            MatrixError::invalid_param(q.to_string())
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(i)) => {
            MatrixError::invalid_param(i.to_string())
        }
        FromHttpRequestError::Deserialization(other) => MatrixError::bad_json(other.to_string()),
        FromHttpRequestError::MethodMismatch { .. } => {
            MatrixError::Unrecognized { status: http::StatusCode::METHOD_NOT_ALLOWED }
        }
        other => MatrixError::bad_json(other.to_string()),
    }
}

pub fn json_error(e: &serde_json::Error) -> MatrixError {
    if e.is_syntax() || e.is_eof() {
        MatrixError::NotJson(format!("Content not JSON: {e}"))
    } else {
        MatrixError::bad_json(e.to_string())
    }
}

impl<T: IncomingRequest + Send> FromRequest<AppState> for Ruma<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| MatrixError::invalid_param(e.body_text()))?;
        let mut args: Vec<&str> = params.iter().map(|(_, v)| v).collect();
        // Routes such as `/state/{eventType}` (empty state key) have fewer path args than
        // the ruma path; the missing ones are empty strings.
        let expected = <T as ruma::api::Metadata>::_path_parameters().len();
        while args.len() < expected {
            args.push("");
        }
        // Boxed, as the token lookup: while it runs the body's future is the largest state of
        // the handler's future, which a parked long-poll holds for its whole wait (issue #13).
        let bytes = Box::pin(read_body(body, state)).await?;
        parse_ruma(parts, bytes, &args).map(Ruma)
    }
}

/// The pure part of [`Ruma`]: a request's head, body and path arguments into `T`, every
/// failure a Matrix error (also the entry point of the `fuzz/` extractor target).
pub fn parse_ruma<T: IncomingRequest>(parts: Parts, mut bytes: Bytes, args: &[&str]) -> Result<T, MatrixError> {
    let has_body = matches!(parts.method, http::Method::POST | http::Method::PUT);
    if has_body && bytes.iter().all(u8::is_ascii_whitespace) {
        bytes = Bytes::from_static(b"{}");
    }
    if has_body {
        // Tell "not JSON" from "wrong JSON" before ruma does, for the right errcode.
        json_object_body(&bytes)?;
    }
    let http_req = http::Request::from_parts(parts, &bytes[..]);
    T::try_from_http_request(http_req, args).map_err(map_ruma_error)
}

/// A request body that must be a JSON object within the depth limit (empty means `{}`).
pub fn json_object_body(bytes: &[u8]) -> Result<serde_json::Value, MatrixError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    if !v.is_object() {
        return Err(MatrixError::NotJson("Content must be a JSON object".into()));
    }
    check_depth(&v)?;
    Ok(v)
}

/// Bodies nest at most [`MAX_JSON_DEPTH`](crate::rooms::event::MAX_JSON_DEPTH) levels: what
/// is accepted must be readable back from storage (issue 10, defect 1).
fn check_depth(v: &serde_json::Value) -> Result<(), MatrixError> {
    let max = crate::rooms::event::MAX_JSON_DEPTH;
    if crate::rooms::event::json_depth(v) > max {
        return Err(MatrixError::bad_json(format!("JSON nests deeper than {max} levels")));
    }
    Ok(())
}

/// A JSON body of our own type, with `M_NOT_JSON` / `M_BAD_JSON` on failure: for `seed_route`
/// endpoints, and for ruma-typed routes whose body is checked field by field.
pub struct MatrixJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for MatrixJson<T> {
    type Rejection = MatrixError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body(), state).await?;
        let v = json_object_body(&bytes)?;
        serde_json::from_value(v).map(MatrixJson).map_err(|e| MatrixError::bad_json(e.to_string()))
    }
}

/// The authenticated caller (`Authorization: Bearer` or `access_token` query parameter).
pub struct Auth(pub Session);

pub fn access_token(parts: &Parts) -> Option<String> {
    access_token_in(&parts.headers, &parts.uri)
}

/// The access token a request carries (`Authorization: Bearer`, else the `access_token`
/// query parameter), from its head.
pub fn access_token_in(headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
    if let Some(h) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = access_token(parts).ok_or(MatrixError::MissingToken)?;
        Ok(Auth(state.accounts.authenticate(&token).await?))
    }
}

/// The client's IP, for rate limits.
pub struct ClientIp(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        Ok(ClientIp(ip))
    }
}
