//! Endpoints for features this server does not offer, answered the way the spec describes an
//! empty configuration: no third-party protocols, no TURN server, no third-party identifiers.
use std::time::Duration;

use axum::Router;
use ruma::api::client::account::get_3pids;
use ruma::api::client::thirdparty::get_protocols;
use ruma::api::client::voip::get_turn_server_info;

use crate::api::extract::{Auth, Ruma};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;

/// How long clients may cache the (empty) TURN answer.
const TURN_TTL: Duration = Duration::from_secs(86400);

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_protocols::v3::Request, _, _>(r, protocols);
    let r = ruma_route::<get_turn_server_info::v3::Request, _, _>(r, turn_server);
    ruma_route::<get_3pids::v3::Request, _, _>(r, threepids)
}

async fn protocols(
    Auth(_): Auth,
    Ruma(_): Ruma<get_protocols::v3::Request>,
) -> RumaResponse<get_protocols::v3::Response> {
    get_protocols::v3::Response::new(Default::default()).into()
}

/// No TURN server is configured: no URIs (clients then use STUN/host candidates only).
async fn turn_server(
    Auth(_): Auth,
    Ruma(_): Ruma<get_turn_server_info::v3::Request>,
) -> RumaResponse<get_turn_server_info::v3::Response> {
    get_turn_server_info::v3::Response::new(String::new(), String::new(), vec![], TURN_TTL).into()
}

/// `{"threepids": []}` (ruma's `compat-get-3pids`: older clients need the empty list).
async fn threepids(Auth(_): Auth, Ruma(_): Ruma<get_3pids::v3::Request>) -> RumaResponse<get_3pids::v3::Response> {
    get_3pids::v3::Response::new(vec![]).into()
}
