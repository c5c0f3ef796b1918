//! HTTP layer: axum handlers for the client-server API. Handlers are thin: parse,
//! authorize, call the domain, answer.
use std::collections::BTreeSet;

use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter};
use axum::Router;
use ruma::api::path_builder::PathBuilder;
use ruma::api::Metadata;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::MatrixError;

pub mod admin;
pub mod client;
pub mod extract;
pub mod federation;
pub mod guard;
pub mod metrics;
pub mod ratelimit;

/// Register `handler` for every path (r0, v3, unstable) ruma knows for `Req`.
pub(crate) fn ruma_route<Req: Metadata, H, T>(mut router: Router<AppState>, handler: H) -> Router<AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(Req::METHOD).expect("ruma methods are standard");
    let mut paths: BTreeSet<String> = Req::PATH_BUILDER.all_paths().map(str::to_owned).collect();
    for p in paths.clone() {
        if p.contains("/client/v3/") {
            paths.insert(p.replace("/client/v3/", "/client/r0/"));
        }
    }
    for p in paths {
        router = router.route(&p, on(filter, handler.clone()));
    }
    router
}

/// Register an axum route under both `/_matrix/client/v3` and `/r0` (`path` is relative).
pub(crate) fn client_route(
    mut router: Router<AppState>,
    path: &str,
    method_router: axum::routing::MethodRouter<AppState>,
) -> Router<AppState> {
    for prefix in ["/_matrix/client/v3", "/_matrix/client/r0"] {
        router = router.route(&format!("{prefix}{path}"), method_router.clone());
    }
    router
}

pub fn router(state: AppState) -> Router {
    let router = client::routes(Router::new());
    let router = admin::routes(router);
    let router = metrics::routes(router, state.config.metrics_enabled)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track_latency));
    router
        .fallback(|| async { MatrixError::Unrecognized { status: http::StatusCode::NOT_FOUND }.into_response() })
        .method_not_allowed_fallback(|| async {
            MatrixError::Unrecognized { status: http::StatusCode::METHOD_NOT_ALLOWED }.into_response()
        })
        .layer(axum::middleware::from_fn(guard::reject_nul))
        .layer(axum::middleware::map_response(guard::matrix_errors))
        .layer(tower_http::cors::CorsLayer::permissive())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
