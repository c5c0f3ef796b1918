//! One error type for the whole server, mapped to the Matrix error JSON
//! (`{"errcode": "...", "error": "..."}`) and an HTTP status in one place. Error codes are
//! ruma's [`ErrorKind`], and the body is ruma's [`StandardErrorBody`], so no `M_…` string is
//! spelled here.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use ruma::api::error::{
    ErrorBody, ErrorKind, LimitExceededErrorData, ResourceLimitExceededErrorData, RetryAfter, StandardErrorBody,
    UnknownTokenErrorData, WrongRoomKeysVersionErrorData,
};

pub type Result<T, E = MatrixError> = std::result::Result<T, E>;

/// A client-visible failure. Every variant carries its Matrix `errcode` and HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{0}")]
    Forbidden(String),
    #[error("Missing access token")]
    MissingToken,
    #[error("Unknown access token")]
    UnknownToken,
    #[error("{0}")]
    NotJson(String),
    #[error("{0}")]
    BadJson(String),
    /// Account data the server controls (spec: 405 `M_BAD_JSON`).
    #[error("{0}")]
    ServerControlled(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Unrecognized request")]
    Unrecognized { status: StatusCode },
    #[error("User ID already taken")]
    UserInUse,
    #[error("{0}")]
    InvalidUsername(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    MissingParam(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("Too many requests")]
    LimitExceeded { retry_after_ms: u64 },
    /// A per-user quota of this server (devices, filters): 403 `M_RESOURCE_LIMIT_EXCEEDED`.
    #[error("{0}")]
    ResourceLimitExceeded(String),
    #[error("{0}")]
    RoomInUse(String),
    #[error("{0}")]
    InvalidRoomState(String),
    /// The request does not fit the current state (MSC2753: peeking a joined room).
    #[error("{0}")]
    BadState(String),
    #[error("{0}")]
    Unknown(String),
    /// User-interactive auth: the client must complete a flow first (401 with the flows).
    #[error("user-interactive authentication required")]
    UiaRequired(serde_json::Value),
    #[error("{0}")]
    UserDeactivated(String),
    /// Key backup: uploads go to the current backup version only.
    #[error("Wrong backup version, current is {current_version}")]
    WrongRoomKeysVersion { current_version: String },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl MatrixError {
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn bad_json(msg: impl Into<String>) -> Self {
        Self::BadJson(msg.into())
    }
    pub fn invalid_param(msg: impl Into<String>) -> Self {
        Self::InvalidParam(msg.into())
    }

    /// User-interactive auth: 401 with ruma's [`UiaaInfo`](ruma::api::client::uiaa::UiaaInfo)
    /// (flows, session, params and, after a failed stage, `errcode`/`error`) as the body.
    pub fn uia_required(info: &ruma::api::client::uiaa::UiaaInfo) -> Self {
        Self::UiaRequired(serde_json::to_value(info).unwrap_or_default())
    }

    /// The Matrix error kind (ruma's [`ErrorKind`]): the `errcode` and the fields that go with
    /// it (`retry_after_ms`, `current_version`, `soft_logout`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Forbidden(_) | Self::UiaRequired(_) => ErrorKind::Forbidden,
            Self::MissingToken => ErrorKind::MissingToken,
            Self::UnknownToken => ErrorKind::UnknownToken(UnknownTokenErrorData::new()),
            Self::NotJson(_) => ErrorKind::NotJson,
            Self::BadJson(_) | Self::ServerControlled(_) => ErrorKind::BadJson,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Unrecognized { .. } => ErrorKind::Unrecognized,
            Self::UserInUse => ErrorKind::UserInUse,
            Self::InvalidUsername(_) => ErrorKind::InvalidUsername,
            Self::InvalidParam(_) => ErrorKind::InvalidParam,
            Self::MissingParam(_) => ErrorKind::MissingParam,
            Self::TooLarge(_) => ErrorKind::TooLarge,
            Self::LimitExceeded { retry_after_ms } => {
                let mut data = LimitExceededErrorData::new();
                data.retry_after = Some(RetryAfter::Delay(Duration::from_millis(*retry_after_ms)));
                ErrorKind::LimitExceeded(data)
            }
            Self::ResourceLimitExceeded(_) => {
                ErrorKind::ResourceLimitExceeded(ResourceLimitExceededErrorData::new(String::new()))
            }
            Self::RoomInUse(_) => ErrorKind::RoomInUse,
            Self::InvalidRoomState(_) => ErrorKind::InvalidRoomState,
            Self::BadState(_) => ErrorKind::BadState,
            Self::UserDeactivated(_) => ErrorKind::UserDeactivated,
            Self::WrongRoomKeysVersion { current_version } => {
                ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(current_version.clone()))
            }
            Self::Unknown(_) | Self::Internal(_) => ErrorKind::Unknown,
        }
    }

    /// The `errcode`, as ruma spells it.
    pub fn errcode(&self) -> String {
        self.kind().errcode().to_string()
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Forbidden(_)
            | Self::UserDeactivated(_)
            | Self::ResourceLimitExceeded(_)
            | Self::WrongRoomKeysVersion { .. } => StatusCode::FORBIDDEN,
            Self::MissingToken | Self::UnknownToken | Self::UiaRequired(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::ServerControlled(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unrecognized { status } => *status,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON body: ruma's [`StandardErrorBody`] (`errcode`, `error` and the kind's fields),
    /// except for user-interactive auth, whose 401 body is the flows object.
    fn body(&self) -> ErrorBody {
        match self {
            Self::UiaRequired(flows) => ErrorBody::Json(flows.clone()),
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                ErrorBody::Standard(StandardErrorBody::new(ErrorKind::Unknown, "Internal server error".into()))
            }
            _ => ErrorBody::Standard(StandardErrorBody::new(self.kind(), self.to_string())),
        }
    }
}

impl From<sqlx::Error> for MatrixError {
    fn from(e: sqlx::Error) -> Self {
        if is_untranslatable_text(&e) {
            // PostgreSQL refuses NUL (and invalid encodings) in text: the client sent it.
            return Self::InvalidParam("text containing NUL characters is not accepted here".into());
        }
        Self::Internal(e.into())
    }
}

/// SQLSTATE 22021 (`character_not_in_repertoire`, NUL in text) or 22P05 (untranslatable).
pub fn is_untranslatable_text(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("22021") | Some("22P05")),
        _ => false,
    }
}

impl From<anyhow::Error> for MatrixError {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(e)
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = match self.body() {
            ErrorBody::Standard(standard) => serde_json::to_value(standard).unwrap_or_default(),
            ErrorBody::Json(json) => json,
            ErrorBody::NotJson { .. } => serde_json::Value::Null,
        };
        if let (Self::ResourceLimitExceeded(_), Some(fields)) = (&self, body.as_object_mut()) {
            // Per-user quotas of this server, not a server-wide limit: no admin to contact.
            fields.remove("admin_contact");
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Self::LimitExceeded { retry_after_ms } = self {
            // Whole seconds, rounded up (ruma's own conversion rounds down to 0 for < 1 s).
            resp.headers_mut().insert(http::header::RETRY_AFTER, retry_after_ms.div_ceil(1000).into());
        }
        resp
    }
}

/// Unique-constraint violations are client errors, not 500s: map them in one place.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// Unique-constraint violations are the client's conflict (a name or id already taken): the
/// one place they become `conflict` (a client error such as `M_USER_IN_USE`); any other
/// database error stays internal.
pub fn unique_violation_as(e: sqlx::Error, conflict: impl FnOnce() -> MatrixError) -> MatrixError {
    if is_unique_violation(&e) {
        conflict()
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: MatrixError) -> (StatusCode, serde_json::Value) {
        let resp = e.into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn wire_json_is_errcode_error_and_the_kinds_fields() {
        use serde_json::json;
        let cases = [
            (MatrixError::forbidden("no"), 403, json!({"errcode": "M_FORBIDDEN", "error": "no"})),
            (MatrixError::UnknownToken, 401, json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown access token"})),
            (MatrixError::ServerControlled("x".into()), 405, json!({"errcode": "M_BAD_JSON", "error": "x"})),
            (
                MatrixError::ResourceLimitExceeded("q".into()),
                403,
                json!({"errcode": "M_RESOURCE_LIMIT_EXCEEDED", "error": "q"}),
            ),
            (
                MatrixError::LimitExceeded { retry_after_ms: 1500 },
                429,
                json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 1500}),
            ),
            (
                MatrixError::WrongRoomKeysVersion { current_version: "2".into() },
                403,
                json!({"errcode": "M_WRONG_ROOM_KEYS_VERSION", "error": "Wrong backup version, current is 2", "current_version": "2"}),
            ),
            (
                MatrixError::Internal(anyhow::anyhow!("secret")),
                500,
                json!({"errcode": "M_UNKNOWN", "error": "Internal server error"}),
            ),
        ];
        for (e, status, want) in cases {
            assert_eq!(body(e).await, (StatusCode::from_u16(status).unwrap(), want));
        }
    }

    #[tokio::test]
    async fn retry_after_header_rounds_up_to_seconds() {
        let resp = MatrixError::LimitExceeded { retry_after_ms: 1 }.into_response();
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn uia_body_is_ruma_uiaa_info() {
        use ruma::api::client::uiaa::{AuthFlow, AuthType, UiaaInfo};
        let mut info = UiaaInfo::new(vec![AuthFlow::new(vec![AuthType::Password])]);
        info.session = Some("s".into());
        info.auth_error = Some(Box::new(StandardErrorBody::new(ErrorKind::Forbidden, "Invalid password".into())));
        let (status, v) = body(MatrixError::uia_required(&info)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            v,
            serde_json::json!({"flows": [{"stages": ["m.login.password"]}], "session": "s",
                "errcode": "M_FORBIDDEN", "error": "Invalid password"})
        );
    }
}
