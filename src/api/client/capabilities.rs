//! `GET /capabilities` (spec "Capabilities negotiation"). Capabilities left at the spec's
//! default (`m.set_displayname`, `m.set_avatar_url`: enabled) are not listed.
use axum::Router;
use ruma::api::client::discovery::get_capabilities::v3::{
    Capabilities, ChangePasswordCapability, Request, Response, RoomVersionStability, RoomVersionsCapability,
    ThirdPartyIdChangesCapability,
};
use ruma::RoomVersionId;

use crate::api::extract::{Auth, Ruma};
use crate::api::response::RumaResponse;
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::Result;
use crate::rooms::ROOM_VERSION;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<Request, _, _>(r, capabilities)
}

async fn capabilities(Auth(_): Auth, Ruma(_): Ruma<Request>) -> Result<RumaResponse<Response>> {
    let version = RoomVersionId::try_from(ROOM_VERSION).map_err(|e| anyhow::anyhow!("room version: {e}"))?;
    let mut c = Capabilities::new();
    c.change_password = ChangePasswordCapability::new(false);
    c.room_versions =
        RoomVersionsCapability::new(version.clone(), [(version, RoomVersionStability::Stable)].into_iter().collect());
    c.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    Ok(Response::new(c).into())
}
