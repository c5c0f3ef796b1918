//! `GET /_matrix/client/versions` and `/.well-known/matrix/client`.
use axum::extract::State;
use axum::Router;
use ruma::api::client::discovery::{discover_homeserver, get_supported_versions};

use crate::api::extract::Ruma;
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;

/// Spec versions served.
const VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11",
];

/// Unstable features advertised (each MSC's own flag name).
const UNSTABLE_FEATURES: &[&str] = &[
    "org.matrix.msc3026.busy_presence",
    "org.matrix.msc2753.peeking",
    "org.matrix.msc1769.profile_rooms",
    "org.matrix.msc3032.effective_presence",
    "org.matrix.msc3032.presence_lists",
];

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_supported_versions::Request, _, _>(r, versions);
    ruma_route::<discover_homeserver::Request, _, _>(r, well_known)
}

async fn versions(Ruma(_): Ruma<get_supported_versions::Request>) -> RumaResponse<get_supported_versions::Response> {
    let mut resp = get_supported_versions::Response::new(VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    resp.unstable_features = UNSTABLE_FEATURES.iter().map(|f| ((*f).to_owned(), true)).collect();
    resp.into()
}

async fn well_known(
    State(s): State<AppState>,
    Ruma(_): Ruma<discover_homeserver::Request>,
) -> RumaResponse<discover_homeserver::Response> {
    let base = format!("http://{}", s.config.bind);
    discover_homeserver::Response::new(discover_homeserver::HomeserverInfo::new(base)).into()
}
