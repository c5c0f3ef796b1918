//! Client-server API, one file per area.
use axum::Router;

use crate::app::AppState;

pub mod account;
pub mod account_data;
pub mod capabilities;
pub mod directory;
pub mod filter;
pub mod keys;
pub mod media;
pub mod peek;
pub mod presence;
pub mod presence_list;
pub mod profile;
pub mod push;
pub mod receipts;
pub mod relations;
pub mod room_extras;
pub mod room_keys;
pub mod rooms;
pub mod sync;
pub mod thirdparty;
pub mod to_device;
pub mod typing;
pub mod versions;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = versions::routes(r);
    let r = account::routes(r);
    let r = rooms::routes(r);
    let r = profile::routes(r);
    let r = filter::routes(r);
    let r = presence::routes(r);
    let r = peek::routes(r);
    let r = account_data::routes(r);
    let r = typing::routes(r);
    let r = receipts::routes(r);
    let r = room_extras::routes(r);
    let r = capabilities::routes(r);
    let r = presence_list::routes(r);
    let r = media::routes(r);
    let r = push::routes(r);
    let r = directory::routes(r);
    let r = relations::routes(r);
    let r = thirdparty::routes(r);
    let r = keys::routes(r);
    let r = to_device::routes(r);
    let r = room_keys::routes(r);
    sync::routes(r)
}
