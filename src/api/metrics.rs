//! `GET /metrics` (Prometheus text format) on the main listener or on a separate metrics
//! address (`metrics_bind`), and the per-route latency histogram.
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::MatrixError;

pub fn routes(r: Router<AppState>, enabled: bool) -> Router<AppState> {
    if enabled {
        seed_route(r, SeedPath::Exact("/metrics"), get(scrape))
    } else {
        r
    }
}

/// The whole app of the separate metrics listener: `/metrics`, and `404` for anything else.
pub fn router(state: AppState) -> Router {
    seed_route(Router::new(), SeedPath::Exact("/metrics"), get(scrape))
        .fallback(|| async { MatrixError::Unrecognized { status: http::StatusCode::NOT_FOUND }.into_response() })
        .with_state(state)
}

async fn scrape(State(s): State<AppState>) -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.scrape_metrics())
}

/// Observe each matched request's latency under its route template (bounded label set).
pub async fn track_latency(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    s.metrics.http_latency.with_label_values(&[method.as_str(), route.as_str()]).observe(start.elapsed().as_secs_f64());
    resp
}
