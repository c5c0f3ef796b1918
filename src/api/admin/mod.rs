//! The experiment console's admin API (`/_seed/admin/v1/...`) and its live page. Only users
//! named in the `admins` config key may use it; everyone else gets `403 M_FORBIDDEN`.
use axum::extract::FromRequestParts;
use axum::Router;
use http::request::Parts;

use crate::accounts::Session;
use crate::api::extract::Auth;
use crate::app::AppState;
use crate::error::MatrixError;

pub mod console;
pub mod export;
pub mod query;
pub mod users;

pub const PREFIX: &str = "/_seed/admin/v1";

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = users::routes(r);
    let r = export::routes(r);
    console::routes(r)
}

/// An authenticated caller who is a server admin.
pub struct Admin(pub Session);

impl FromRequestParts<AppState> for Admin {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Auth(session) = Auth::from_request_parts(parts, state).await?;
        if state.config.admins.iter().any(|a| a == &session.user_id) {
            Ok(Admin(session))
        } else {
            Err(MatrixError::forbidden("You are not a server admin"))
        }
    }
}
