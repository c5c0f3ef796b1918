//! Room directory (`/publicRooms`, `/directory/list/room/{roomId}`), room aliases
//! (`/directory/room/{roomAlias}`) and user directory search.
use axum::extract::State;
use axum::{Json, Router};
use ruma::api::client::alias::{create_alias, delete_alias, get_alias};
use ruma::api::client::directory::{
    get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
};
use ruma::api::client::room::Visibility;
use ruma::api::client::user_directory::search_users;
use serde_json::{json, Value};

use crate::api::extract::{Auth, Ruma};
use crate::api::response::{owned_room_id, RumaResponse};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::directory::PublicRoomsPage;
use crate::error::{MatrixError, Result};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = ruma_route::<get_public_rooms::v3::Request, _, _>(r, public_rooms);
    let r = ruma_route::<get_public_rooms_filtered::v3::Request, _, _>(r, public_rooms_filtered);
    let r = ruma_route::<get_room_visibility::v3::Request, _, _>(r, get_visibility);
    let r = ruma_route::<set_room_visibility::v3::Request, _, _>(r, set_visibility);
    let r = ruma_route::<get_alias::v3::Request, _, _>(r, get_alias_handler);
    let r = ruma_route::<create_alias::v3::Request, _, _>(r, put_alias);
    let r = ruma_route::<delete_alias::v3::Request, _, _>(r, delete_alias_handler);
    ruma_route::<search_users::v3::Request, _, _>(r, user_search)
}

/// Only this server's directory: there is no federation to ask another server's.
fn check_server(s: &AppState, server: Option<&ruma::ServerName>) -> Result<()> {
    match server {
        Some(name) if name.as_str() != s.config.server_name => {
            Err(MatrixError::invalid_param("This server cannot list another server's rooms"))
        }
        _ => Ok(()),
    }
}

fn page_body(page: PublicRoomsPage) -> Json<Value> {
    let mut body = json!({"chunk": page.chunk, "total_room_count_estimate": page.total});
    if let Some(n) = page.next_batch {
        body["next_batch"] = json!(n);
    }
    if let Some(p) = page.prev_batch {
        body["prev_batch"] = json!(p);
    }
    Json(body)
}

/// `GET /publicRooms` needs no access token (spec).
async fn public_rooms(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_public_rooms::v3::Request>,
) -> Result<Json<Value>> {
    check_server(&s, req.server.as_deref())?;
    let page = s.directory.public_rooms(None, req.limit.map(u64::from), req.since.as_deref()).await?;
    Ok(page_body(page))
}

async fn public_rooms_filtered(
    State(s): State<AppState>,
    Auth(_): Auth,
    Ruma(req): Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<Json<Value>> {
    check_server(&s, req.server.as_deref())?;
    let term = req.filter.generic_search_term.as_deref();
    let page = s.directory.public_rooms(term, req.limit.map(u64::from), req.since.as_deref()).await?;
    Ok(page_body(page))
}

async fn get_visibility(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_room_visibility::v3::Request>,
) -> Result<RumaResponse<get_room_visibility::v3::Response>> {
    let published = s.directory.is_published(req.room_id.as_str()).await?;
    Ok(get_room_visibility::v3::Response::new(if published { Visibility::Public } else { Visibility::Private }).into())
}

async fn set_visibility(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<set_room_visibility::v3::Request>,
) -> Result<RumaResponse<set_room_visibility::v3::Response>> {
    let published = match req.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        _ => return Err(MatrixError::invalid_param("visibility must be public or private")),
    };
    s.directory.set_published(&session.user_id, req.room_id.as_str(), published).await?;
    Ok(set_room_visibility::v3::Response::new().into())
}

async fn user_search(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<search_users::v3::Request>,
) -> Result<Json<Value>> {
    let (results, limited) = s.directory.search_users(&session.user_id, &req.search_term, u64::from(req.limit)).await?;
    Ok(Json(json!({"results": results, "limited": limited})))
}

async fn get_alias_handler(
    State(s): State<AppState>,
    Ruma(req): Ruma<get_alias::v3::Request>,
) -> Result<RumaResponse<get_alias::v3::Response>> {
    // Another server's alias is asked over federation (`src/federation/remote.rs`).
    if let Some(remote) = s.federation.remote_alias(req.room_alias.as_str()).await? {
        let room_id = remote.get("room_id").and_then(Value::as_str).unwrap_or_default();
        let servers = remote.get("servers").and_then(Value::as_array).into_iter().flatten();
        let servers = servers.filter_map(|v| ruma::ServerName::parse(v.as_str()?).ok()).collect();
        return Ok(get_alias::v3::Response::new(owned_room_id(room_id)?, servers).into());
    }
    let room_id = s.directory.aliases.resolve(req.room_alias.as_str()).await?;
    let server = ruma::ServerName::parse(&s.config.server_name).map_err(|e| MatrixError::Internal(e.into()))?;
    Ok(get_alias::v3::Response::new(owned_room_id(&room_id)?, vec![server]).into())
}

async fn put_alias(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<create_alias::v3::Request>,
) -> Result<RumaResponse<create_alias::v3::Response>> {
    s.directory.aliases.put(&session.user_id, req.room_alias.as_str(), req.room_id.as_str()).await?;
    Ok(create_alias::v3::Response::new().into())
}

async fn delete_alias_handler(
    State(s): State<AppState>,
    Auth(session): Auth,
    Ruma(req): Ruma<delete_alias::v3::Request>,
) -> Result<RumaResponse<delete_alias::v3::Response>> {
    s.directory.aliases.delete(&session.user_id, req.room_alias.as_str()).await?;
    Ok(delete_alias::v3::Response::new().into())
}
