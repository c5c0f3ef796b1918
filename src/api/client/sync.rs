//! `GET /sync`: long-poll with `since`, `timeout`, `filter`, `full_state`, `set_presence`.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::{Json, Router};
use ruma::api::client::sync::sync_events::v3 as sync_v3;

use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::ground::token;
use crate::presence::{DeviceKind, Presence};
use crate::sync::{SyncFilter, SyncRequest, SyncResponse};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<sync_v3::Request, _, _>(r, sync)
}

/// Where the request's filter comes from: ready (none, inline, or cached), or a filter id to
/// load.
enum FilterSource {
    Ready(Arc<SyncFilter>),
    Id(String),
}

/// The handler is a plain function that reads the request and returns the long-poll's future:
/// the future then holds only what the poll needs (the session, the parsed parameters), not
/// the ruma request (~1 KB, most of it the inline `FilterDefinition`). An `async fn` would keep
/// its arguments for its whole life, and a waiting poll holds its future while it is parked
/// (issue #13: idle long-poll memory; docs/performance-history.md "Idle long-poll memory").
fn sync(
    State(s): State<AppState>,
    Auth(session): Auth,
    RawQuery(raw_query): RawQuery,
    Ruma(req): Ruma<sync_v3::Request>,
) -> impl Future<Output = Result<Json<SyncResponse>>> + Send {
    let parsed = parse(&s, raw_query.as_deref(), req);
    async move {
        let p = parsed?;
        let filter = match p.filter {
            FilterSource::Ready(f) => f,
            // Boxed: `load` reads the database for a filter id not yet cached, and that read's
            // state (~1.3 KB) would be laid out in the future every parked poll holds.
            FilterSource::Id(id) => Box::pin(s.sync.filters.load(&session.user_id, &id)).await?,
        };
        let request = SyncRequest { since: p.since, timeout: p.timeout, full_state: p.full_state, filter };
        Ok(Json(s.sync.sync_with_presence(&session, p.set_presence, p.kind, request).await?))
    }
}

/// The request's parameters, checked; what the long-poll's future keeps of the request.
struct Parsed {
    set_presence: Presence,
    kind: Option<DeviceKind>,
    filter: FilterSource,
    since: Option<i64>,
    timeout: Duration,
    full_state: bool,
}

/// The request's parameters, each checked (Matrix errors for bad values).
fn parse(s: &AppState, raw_query: Option<&str>, req: sync_v3::Request) -> Result<Parsed> {
    let set_presence: Presence = req
        .set_presence
        .as_str()
        .parse()
        .map_err(|_| MatrixError::invalid_param(format!("invalid set_presence '{}'", req.set_presence.as_str())))?;
    let kind = device_kind(raw_query)?;
    let filter = match req.filter {
        None => FilterSource::Ready(Arc::default()),
        Some(sync_v3::Filter::FilterDefinition(def)) => {
            let to_value = || serde_json::to_value(&def).map_err(|e| MatrixError::bad_json(e.to_string()));
            // Cached by its text only when the text is unambiguous (one `filter` parameter).
            FilterSource::Ready(match single_query_param(raw_query, "filter") {
                Some(raw) => s.sync.filters.inline(&raw, to_value)?,
                None => Arc::new(s.sync.filters.parse_inline(to_value()?)?),
            })
        }
        Some(sync_v3::Filter::FilterId(id)) => FilterSource::Id(id),
        Some(_) => FilterSource::Ready(Arc::default()),
    };
    let since = req.since.as_deref().map(token::parse).transpose()?;
    let max = Duration::from_millis(s.config.max_sync_timeout_ms);
    let timeout = req.timeout.unwrap_or_default().min(max);
    Ok(Parsed { set_presence, kind, filter, since, timeout, full_state: req.full_state })
}

/// Our unstable device-type field (seed 004 "Device Type"): `/sync?org.matrix.msc3032.device_kind=mobile`.
pub const DEVICE_KIND_PARAM: &str = "org.matrix.msc3032.device_kind";

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    url::form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The value of `name` if the query has exactly one such parameter.
fn single_query_param<'a>(query: Option<&'a str>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let mut values = url::form_urlencoded::parse(query?.as_bytes()).filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn device_kind(query: Option<&str>) -> Result<Option<DeviceKind>> {
    match query_param(query, DEVICE_KIND_PARAM) {
        None => Ok(None),
        Some(v) => match v.as_ref() {
            "mobile" => Ok(Some(DeviceKind::Mobile)),
            "desktop" => Ok(Some(DeviceKind::Desktop)),
            other => Err(MatrixError::invalid_param(format!("invalid {DEVICE_KIND_PARAM} '{other}'"))),
        },
    }
}
