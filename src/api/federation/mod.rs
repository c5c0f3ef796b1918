//! The server-server API on its own TLS listener (`federation.bind`), and
//! `/.well-known/matrix/server` on both listeners. Only started when `federation.enabled`.
use std::net::SocketAddr;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use crate::api::{seed_route, SeedPath};
use crate::app::AppState;

pub mod auth;
mod events;
mod keys;
mod membership;
mod peek;
mod query;
mod send;

use auth::fed_error;

const WELL_KNOWN: SeedPath<'static> = SeedPath::Exact("/.well-known/matrix/server");

fn routes() -> Router<AppState> {
    let r = keys::routes(Router::new());
    let r = query::routes(r);
    let r = membership::routes(r);
    let r = events::routes(r);
    let r = send::routes(r);
    let r = peek::routes(r);
    seed_route(r, WELL_KNOWN, get(well_known_server))
        .fallback(|| async { fed_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "Unrecognized request") })
        .method_not_allowed_fallback(|| async {
            fed_error(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "Unrecognized request")
        })
}

/// `/.well-known/matrix/server` for the client listener (merged into its router): answered
/// only when federation is on and `federation.well_known_server` is set.
pub fn well_known_routes(state: AppState) -> Router {
    if !state.federation.enabled() {
        // Federation off: the client listener answers exactly as before.
        return Router::new();
    }
    seed_route(Router::new(), WELL_KNOWN, get(well_known_server)).with_state(state)
}

async fn well_known_server(axum::extract::State(s): axum::extract::State<AppState>) -> axum::response::Response {
    match (&s.federation.config.well_known_server, s.federation.enabled()) {
        (Some(server), true) => Json(json!({"m.server": server})).into_response(),
        _ => fed_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "No server delegation configured"),
    }
}

/// The running federation listener.
pub struct FederationListener {
    pub addr: SocketAddr,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl FederationListener {
    /// Stop accepting, let running requests finish within `grace`.
    pub async fn stop(self, grace: Duration) {
        self.handle.graceful_shutdown(Some(grace));
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), self.task).await;
    }
}

/// Start the TLS listener when federation is enabled.
pub async fn serve(
    state: AppState,
    detached: std::sync::Arc<crate::api::completion::Detached>,
) -> anyhow::Result<Option<FederationListener>> {
    let fed = &state.federation;
    if !fed.enabled() {
        return Ok(None);
    }
    let (cert, key) = crate::federation::tls::cert_paths(&fed.config, fed.server_name.host())?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
        .await
        .map_err(|e| anyhow::anyhow!("loading TLS certificate {}: {e}", cert.display()))?;
    let std_listener = std::net::TcpListener::bind(fed.config.bind)
        .map_err(|e| anyhow::anyhow!("binding the federation listener {}: {e}", fed.config.bind))?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let app = routes()
        .layer(axum::middleware::from_fn_with_state(detached, crate::api::completion::middleware))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(std_listener, tls).handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app).await });
    tracing::info!(%addr, server_name = %fed.server_name, key = ?fed.key_id(), "federation listening (TLS)");
    Ok(Some(FederationListener { addr, handle, task }))
}
