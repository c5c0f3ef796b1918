//! Content repository (spec "Content repository"): authenticated `/_matrix/client/v1/media/*`
//! and the legacy, unauthenticated `/_matrix/media/v3/*` (deprecated in v1.11, kept for older
//! clients). Uploads are read with their own size limit (`max_upload_bytes`), not the JSON
//! request limit, so the upload handler reads the body itself. Downloads and thumbnails answer
//! the raw bytes with our own security headers (CSP, `Content-Disposition` by type), not
//! ruma's response type.
// The legacy endpoints are deprecated (v1.11) and served on purpose for older clients.
#![allow(deprecated)]
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ruma::api::client::authenticated_media as auth_media;
use ruma::api::client::media;
use ruma::{OwnedMxcUri, UInt};

use crate::api::extract::{Auth, Ruma};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::media::Method;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<media::create_content::v3::Request, _, _>(r, upload);
    let r = ruma_route::<media::get_media_config::v3::Request, _, _>(r, config);
    let r = ruma_route::<auth_media::get_media_config::v1::Request, _, _>(r, config_authenticated);
    let r = ruma_route::<media::get_content::v3::Request, _, _>(r, download_legacy);
    let r = ruma_route::<media::get_content_as_filename::v3::Request, _, _>(r, download_legacy_named);
    let r = ruma_route::<auth_media::get_content::v1::Request, _, _>(r, download);
    let r = ruma_route::<auth_media::get_content_as_filename::v1::Request, _, _>(r, download_named);
    let r = ruma_route::<media::get_content_thumbnail::v3::Request, _, _>(r, thumbnail_legacy);
    let r = ruma_route::<auth_media::get_content_thumbnail::v1::Request, _, _>(r, thumbnail);
    let r = ruma_route::<media::get_media_preview::v3::Request, _, _>(r, preview_url);
    ruma_route::<auth_media::get_media_preview::v1::Request, _, _>(r, preview_url)
}

/// `POST /_matrix/media/v3/upload?filename=…` with the file as the body.
async fn upload(
    State(s): State<AppState>,
    Auth(session): Auth,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<RumaResponse<media::create_content::v3::Response>> {
    let limit = s.media.max_upload_bytes;
    let too_large = || MatrixError::TooLarge(format!("Uploads are limited to {limit} bytes"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let filename = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "filename").map(|(_, v)| v.into_owned())
    });
    let content_type = match headers.get(header::CONTENT_TYPE) {
        Some(v) => Some(v.to_str().map_err(|_| MatrixError::invalid_param("invalid Content-Type"))?.to_owned()),
        None => None,
    };
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    let media_id = s.media.create(&session.user_id, content_type, filename, bytes.to_vec()).await?;
    let uri = OwnedMxcUri::from(format!("mxc://{}/{media_id}", s.media.server_name()));
    Ok(media::create_content::v3::Response::new(uri).into())
}

fn upload_size(s: &AppState) -> UInt {
    UInt::try_from(s.media.max_upload_bytes as u64).unwrap_or(UInt::MAX)
}

async fn config(
    State(s): State<AppState>,
    Ruma(_): Ruma<media::get_media_config::v3::Request>,
) -> RumaResponse<media::get_media_config::v3::Response> {
    media::get_media_config::v3::Response::new(upload_size(&s)).into()
}

async fn config_authenticated(
    State(s): State<AppState>,
    Auth(_): Auth,
    Ruma(_): Ruma<auth_media::get_media_config::v1::Request>,
) -> RumaResponse<auth_media::get_media_config::v1::Response> {
    auth_media::get_media_config::v1::Response::new(upload_size(&s)).into()
}

async fn download_legacy(
    State(s): State<AppState>,
    Ruma(req): Ruma<media::get_content::v3::Request>,
) -> Result<Response> {
    serve(&s, req.server_name.as_str(), &req.media_id, None).await
}

async fn download_legacy_named(
    State(s): State<AppState>,
    Ruma(req): Ruma<media::get_content_as_filename::v3::Request>,
) -> Result<Response> {
    serve(&s, req.server_name.as_str(), &req.media_id, Some(&req.filename)).await
}

async fn download(
    State(s): State<AppState>,
    Auth(_): Auth,
    Ruma(req): Ruma<auth_media::get_content::v1::Request>,
) -> Result<Response> {
    serve(&s, req.server_name.as_str(), &req.media_id, None).await
}

async fn download_named(
    State(s): State<AppState>,
    Auth(_): Auth,
    Ruma(req): Ruma<auth_media::get_content_as_filename::v1::Request>,
) -> Result<Response> {
    serve(&s, req.server_name.as_str(), &req.media_id, Some(&req.filename)).await
}

fn method_of(m: Option<&ruma::media::Method>) -> Result<Method> {
    match m.map(|m| m.as_str()) {
        None | Some("scale") => Ok(Method::Scale),
        Some("crop") => Ok(Method::Crop),
        Some(other) => Err(MatrixError::invalid_param(format!("unknown thumbnail method '{other}'"))),
    }
}

async fn thumbnail_legacy(
    State(s): State<AppState>,
    Ruma(req): Ruma<media::get_content_thumbnail::v3::Request>,
) -> Result<Response> {
    let method = method_of(req.method.as_ref())?;
    let (w, h) = (u64::from(req.width), u64::from(req.height));
    let (ct, bytes) = s.media.thumbnail(req.server_name.as_str(), &req.media_id, w, h, method).await?;
    Ok(file_response(bytes, &ct, None))
}

async fn thumbnail(
    State(s): State<AppState>,
    Auth(_): Auth,
    Ruma(req): Ruma<auth_media::get_content_thumbnail::v1::Request>,
) -> Result<Response> {
    let method = method_of(req.method.as_ref())?;
    let (w, h) = (u64::from(req.width), u64::from(req.height));
    let (ct, bytes) = s.media.thumbnail(req.server_name.as_str(), &req.media_id, w, h, method).await?;
    Ok(file_response(bytes, &ct, None))
}

/// URL previews would make the server fetch arbitrary URLs for clients; they are off.
async fn preview_url() -> MatrixError {
    MatrixError::forbidden("URL previews are disabled on this server")
}

async fn serve(s: &AppState, server_name: &str, media_id: &str, filename: Option<&str>) -> Result<Response> {
    let content = s.media.get(server_name, media_id).await?;
    let ct = content.meta.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
    let name = filename.map(str::to_owned).or(content.meta.filename.clone());
    Ok(file_response(content.bytes, &ct, name.as_deref()))
}

/// Content types a browser may show inline without running anything (spec: servers SHOULD
/// serve other types as attachments).
fn inline_safe(ct: &str) -> bool {
    let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        base.as_str(),
        "text/plain"
            | "text/csv"
            | "application/json"
            | "application/ld+json"
            | "image/jpeg"
            | "image/gif"
            | "image/png"
            | "image/apng"
            | "image/webp"
            | "image/avif"
            | "video/mp4"
            | "video/webm"
            | "video/ogg"
            | "video/quicktime"
            | "audio/mp4"
            | "audio/webm"
            | "audio/aac"
            | "audio/mpeg"
            | "audio/ogg"
            | "audio/wave"
            | "audio/wav"
            | "audio/x-wav"
            | "audio/x-pn-wav"
            | "audio/flac"
            | "audio/x-flac"
    )
}

fn file_response(bytes: Vec<u8>, content_type: &str, filename: Option<&str>) -> Response {
    let disposition = if inline_safe(content_type) { "inline" } else { "attachment" };
    let disposition = match filename {
        // RFC 6266 / RFC 8187: the UTF-8 name percent-encoded, never a raw header value.
        Some(name) => {
            let encoded: String = name
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
                .collect();
            format!("{disposition}; filename*=utf-8''{encoded}")
        }
        None => disposition.to_owned(),
    };
    let mut resp = Body::from(bytes).into_response();
    let h = resp.headers_mut();
    let ct =
        HeaderValue::from_str(content_type).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
             style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
        ),
    );
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    resp
}
