//! `GET /metrics` (Prometheus text format) on the main listener or on a separate metrics
//! address (`metrics_bind`), and the per-route latency histogram.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::MatrixError;
use crate::metrics::Metrics;

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
///
/// A tower layer with its own future rather than `axum::middleware::from_fn`: `from_fn` boxes
/// a future of its own per request (~1.1 KB, with the extractor machinery and the request),
/// and a waiting `/sync` long-poll holds it for as long as it waits (issue #13: idle long-poll
/// memory). This future holds the inner one, the route, the method and the start time.
#[derive(Clone)]
pub struct LatencyLayer {
    metrics: Arc<Metrics>,
}

impl LatencyLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Latency<S>;

    fn layer(&self, inner: S) -> Latency<S> {
        Latency { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Latency<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S: Service<Request>> Service<Request> for Latency<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = LatencyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        LatencyFuture {
            inner: self.inner.call(req),
            seen: Some(Seen { route, method, start: Instant::now(), metrics: self.metrics.clone() }),
        }
    }
}

/// What is observed when the response is ready.
struct Seen {
    route: Option<MatchedPath>,
    method: http::Method,
    start: Instant,
    metrics: Arc<Metrics>,
}

pin_project! {
    pub struct LatencyFuture<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

impl<F: Future> Future for LatencyFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(seen) = this.seen.take() {
            let route = seen.route.as_ref().map(MatchedPath::as_str).unwrap_or_default();
            seen.metrics
                .http_latency
                .with_label_values(&[seen.method.as_str(), route])
                .observe(seen.start.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}
