//! The live presence page: one HTML file with its script and style, embedded in the binary.
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;

use crate::api::{seed_route, SeedPath};
use crate::app::AppState;

const PAGE: &str = include_str!("console.html");

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    seed_route(r, SeedPath::Exact("/_seed/console"), get(page))
}

async fn page() -> impl IntoResponse {
    Html(PAGE)
}
