//! One error type for the whole server, mapped to the Matrix error JSON
//! (`{"errcode": "...", "error": "..."}`) and an HTTP status in one place.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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

    pub fn errcode(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "M_FORBIDDEN",
            Self::MissingToken => "M_MISSING_TOKEN",
            Self::UnknownToken => "M_UNKNOWN_TOKEN",
            Self::NotJson(_) => "M_NOT_JSON",
            Self::BadJson(_) | Self::ServerControlled(_) => "M_BAD_JSON",
            Self::NotFound(_) => "M_NOT_FOUND",
            Self::Unrecognized { .. } => "M_UNRECOGNIZED",
            Self::UserInUse => "M_USER_IN_USE",
            Self::InvalidUsername(_) => "M_INVALID_USERNAME",
            Self::InvalidParam(_) => "M_INVALID_PARAM",
            Self::MissingParam(_) => "M_MISSING_PARAM",
            Self::TooLarge(_) => "M_TOO_LARGE",
            Self::LimitExceeded { .. } => "M_LIMIT_EXCEEDED",
            Self::ResourceLimitExceeded(_) => "M_RESOURCE_LIMIT_EXCEEDED",
            Self::RoomInUse(_) => "M_ROOM_IN_USE",
            Self::InvalidRoomState(_) => "M_INVALID_ROOM_STATE",
            Self::BadState(_) => "M_BAD_STATE",
            Self::UiaRequired(_) => "M_FORBIDDEN",
            Self::UserDeactivated(_) => "M_USER_DEACTIVATED",
            Self::Unknown(_) | Self::Internal(_) => "M_UNKNOWN",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Forbidden(_) | Self::UserDeactivated(_) | Self::ResourceLimitExceeded(_) => StatusCode::FORBIDDEN,
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
        let body = match &self {
            Self::UiaRequired(flows) => flows.clone(),
            Self::LimitExceeded { retry_after_ms } => json!({
                "errcode": self.errcode(),
                "error": self.to_string(),
                "retry_after_ms": retry_after_ms,
            }),
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                json!({"errcode": "M_UNKNOWN", "error": "Internal server error"})
            }
            _ => json!({"errcode": self.errcode(), "error": self.to_string()}),
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Self::LimitExceeded { retry_after_ms } = self {
            let secs = retry_after_ms.div_ceil(1000).to_string();
            if let Ok(v) = secs.parse() {
                resp.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
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
