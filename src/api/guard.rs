//! Edge guards that apply to every route: NUL characters in identifiers (the path and query
//! carry room ids, aliases, user ids, event types, state keys and transaction ids) are refused
//! before any handler or database sees them, and every error response leaves as Matrix error
//! JSON, including the plain-text rejections of axum's own extractors (`Path`, `Query`).
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::MatrixError;

/// Largest plain-text rejection body we copy into the Matrix error message.
const MAX_REJECTION_TEXT: usize = 1024;

/// Refuse NUL (`%00`) anywhere in the decoded path or query: the spec's identifiers never
/// contain it, and PostgreSQL text columns cannot store it. (Checked for every request by
/// the client listener's edge, `src/api/serve.rs`.)
///
/// Decoding the path and the query (percent escapes, and in the query `+`) yields a NUL byte
/// only from the escape `%00` or from a NUL byte already there, so the raw text is searched
/// for those, without decoding or copying anything.
pub fn has_nul(uri: &http::Uri) -> bool {
    let encodes_nul = |text: &str| text.as_bytes().contains(&0) || text.as_bytes().windows(3).any(|w| w == b"%00");
    encodes_nul(uri.path()) || uri.query().is_some_and(encodes_nul)
}

/// The answer to a request [`has_nul`] refuses.
pub fn nul_rejection() -> MatrixError {
    MatrixError::invalid_param("NUL characters are not allowed in identifiers")
}

/// [`has_nul`] as a middleware, for routers served without the client listener's edge.
pub async fn reject_nul(req: Request, next: Next) -> Response {
    if has_nul(req.uri()) {
        return nul_rejection().into_response();
    }
    next.run(req).await
}

/// Refuse NUL in a free-text field that is stored in its own column (display names, status
/// messages): PostgreSQL text cannot hold it, and no client needs it there.
pub fn no_nul(field: &str, value: &str) -> Result<(), MatrixError> {
    if value.contains('\0') {
        return Err(MatrixError::invalid_param(format!("NUL characters are not allowed in {field}")));
    }
    Ok(())
}

/// Rewrite any non-JSON error response (axum extractor rejections, body-limit errors) into
/// `{errcode, error}` with the same status.
pub async fn matrix_errors(resp: Response) -> Response {
    if is_matrix_answer(&resp) {
        return resp;
    }
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_REJECTION_TEXT * 4).await.unwrap_or_default();
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if text.len() > MAX_REJECTION_TEXT {
        let mut cut = MAX_REJECTION_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if text.is_empty() {
        text = status.canonical_reason().unwrap_or("error").to_owned();
    }
    let err = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => MatrixError::Unrecognized { status },
        StatusCode::PAYLOAD_TOO_LARGE => MatrixError::TooLarge(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => MatrixError::NotJson(text),
        StatusCode::TOO_MANY_REQUESTS => MatrixError::LimitExceeded { retry_after_ms: 1000 },
        s if s.is_server_error() => MatrixError::Unknown(text),
        _ => MatrixError::invalid_param(text),
    };
    let mut out = err.into_response();
    if out.status() != status {
        *out.status_mut() = status;
    }
    out
}

/// Whether `resp` goes out as it is: a success, or an error that is JSON already (the Matrix
/// error body). Anything else is rewritten by [`matrix_errors`].
pub fn is_matrix_answer(resp: &Response) -> bool {
    let status = resp.status();
    !(status.is_client_error() || status.is_server_error()) || is_json(resp)
}

fn is_json(resp: &Response<Body>) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::has_nul;

    /// The definition `has_nul` stands for: a NUL in the decoded path or query.
    fn decodes_to_nul(uri: &http::Uri) -> bool {
        percent_encoding::percent_decode_str(uri.path()).any(|b| b == 0)
            || uri.query().is_some_and(|q| {
                url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k.contains('\0') || v.contains('\0'))
            })
    }

    #[test]
    fn nul_is_found_where_it_decodes_and_only_there() {
        for (uri, nul) in [
            ("/a/b%00c", true),
            ("/a?k%00=v", true),
            ("/a?k=v%00", true),
            ("/a?k=%%00", true),
            ("/a%2500?k=%2500", false),
            ("/a%0?k=%0g0", false),
            ("/a?k=0%30", false),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(has_nul(&uri), nul, "{uri}");
            assert_eq!(decodes_to_nul(&uri), nul, "{uri}");
        }
    }

    proptest! {
        /// Paths and queries made of escapes, digits and `%` agree with decoding them.
        #[test]
        fn the_raw_search_agrees_with_decoding(
            path in "(/|%|0|2|5|a|%00|%25|%2)*",
            query in proptest::option::of("(%|0|2|5|=|&|\\+|%00|%25)*"),
        ) {
            let text = match &query { Some(q) => format!("/{path}?{q}"), None => format!("/{path}") };
            if let Ok(uri) = text.parse::<http::Uri>() {
                prop_assert_eq!(has_nul(&uri), decodes_to_nul(&uri), "{}", text);
            }
        }
    }
}
