//! HTTP layer: axum handlers for the client-server API. Handlers are thin: parse,
//! authorize, call the domain, answer.
//!
//! # Two ways to register a route
//!
//! 1. [`ruma_route`]: every endpoint ruma has a request type for. The paths (r0, v3, v1,
//!    unstable) and the method come from the type itself (`Req::PATH_BUILDER`, `Req::METHOD`);
//!    the handler takes [`Ruma<Req>`](extract::Ruma) and returns
//!    `Result<`[`RumaResponse<Resp>`](response::RumaResponse)`>`, serialized by ruma's
//!    `OutgoingResponse`:
//!    ```ignore
//!    let r = ruma_route::<set_pushrule_enabled::v3::Request, _, _>(r, set_enabled);
//!    async fn set_enabled(State(s): State<AppState>, Auth(u): Auth,
//!        Ruma(req): Ruma<set_pushrule_enabled::v3::Request>)
//!        -> Result<RumaResponse<set_pushrule_enabled::v3::Response>> { … }
//!    ```
//!    A few handlers read the request themselves where ruma's parsing would change the error
//!    a client gets today (media uploads, read with their own size limit; bodies whose fields
//!    we check one by one); they are still registered from the ruma type. Media downloads
//!    answer raw bytes with our own security headers.
//! 2. [`seed_route`]: endpoints ruma has no type for, each at a [`SeedPath`] that names where it
//!    lives: unstable MSC endpoints (`Unstable`: MSC3032 presence lists, dehydrated devices),
//!    client endpoints ruma has no type for or cannot match (`Client`, served under both `/v3`
//!    and `/r0`: legacy peeking, empty state keys), and paths outside the client API, as
//!    written (`Exact`: admin API, console, metrics, and the federation listener's
//!    `/_matrix/key`, `/_matrix/federation` and `.well-known` paths). These answer our own
//!    serde types.
use std::collections::BTreeSet;

use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter};
use axum::Router;
use ruma::api::path_builder::PathBuilder;
use ruma::api::Metadata;

use crate::app::AppState;
use crate::error::MatrixError;

pub mod admin;
pub mod client;
pub mod completion;
pub mod cors;
pub mod extract;
pub mod federation;
pub mod guard;
pub mod http1;
pub mod metrics;
pub mod ratelimit;
pub mod response;
pub mod serve;

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

/// Where an endpoint without a ruma type lives (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub(crate) enum SeedPath<'a> {
    /// A client-server path relative to the version prefix, served under both
    /// `/_matrix/client/v3` and `/_matrix/client/r0`.
    Client(&'a str),
    /// An unstable MSC endpoint: `/_matrix/client/unstable/{prefix}{path}`, e.g.
    /// `Unstable("org.matrix.msc3032", "/presence/requests/{user_id}")`.
    Unstable(&'a str, &'a str),
    /// A path of Seed's own (`/_seed/…`, `/metrics`), as written.
    Exact(&'a str),
}

/// Register `method_router` for an endpoint ruma has no request type for: the second and last
/// way to add a route (module documentation).
pub(crate) fn seed_route(
    mut router: Router<AppState>,
    path: SeedPath<'_>,
    method_router: axum::routing::MethodRouter<AppState>,
) -> Router<AppState> {
    match path {
        SeedPath::Client(p) => {
            for prefix in ["/_matrix/client/v3", "/_matrix/client/r0"] {
                router = router.route(&format!("{prefix}{p}"), method_router.clone());
            }
            router
        }
        SeedPath::Unstable(prefix, p) => router.route(&format!("/_matrix/client/unstable/{prefix}{p}"), method_router),
        SeedPath::Exact(p) => router.route(p, method_router),
    }
}

/// The client-server routes with their fallbacks; what every request passes through around
/// them (trace span, CORS, NUL check, Matrix error JSON) is [`serve::edge_service`].
pub fn router(state: AppState) -> Router {
    let router = client::routes(Router::new());
    let router = admin::routes(router);
    let router = metrics::routes(router, state.config.metrics_enabled && state.config.metrics_bind.is_none())
        .route_layer(metrics::LatencyLayer::new(state.metrics.clone()));
    router
        .fallback(|| async { MatrixError::Unrecognized { status: http::StatusCode::NOT_FOUND }.into_response() })
        .method_not_allowed_fallback(|| async {
            MatrixError::Unrecognized { status: http::StatusCode::METHOD_NOT_ALLOWED }.into_response()
        })
        .with_state(state)
}
