//! Experiment data export (`msc/README.md` §8): the change log for a time window as JSON Lines
//! or CSV, and the live feed of changes as Server-Sent Events.
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};

use super::{query, Admin, PREFIX};
use crate::api::{seed_route, SeedPath};
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::experiment::CSV_HEADER;

/// Most records one export answers; narrow the window for more.
pub const MAX_EXPORT_RECORDS: i64 = 100_000;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    let r = seed_route(r, SeedPath::Exact(&format!("{PREFIX}/changes")), get(export));
    seed_route(r, SeedPath::Exact(&format!("{PREFIX}/stream")), get(stream))
}

/// `GET /changes?from=&to=&user=&format=jsonl|csv&limit=`: `from <= ts < to`, ms since the epoch.
async fn export(State(s): State<AppState>, _admin: Admin, RawQuery(raw): RawQuery) -> Result<impl IntoResponse> {
    let params = query::params(raw.as_deref())?;
    let from = query::int(&params, "from", 0, 0, i64::MAX)?;
    let to = query::int(&params, "to", i64::MAX, 0, i64::MAX)?;
    if from > to {
        return Err(MatrixError::invalid_param("from is after to"));
    }
    let limit = query::int(&params, "limit", MAX_EXPORT_RECORDS, 1, MAX_EXPORT_RECORDS)? as usize;
    let user = params.get("user").map(|u| query::user_id(u)).transpose()?;
    let csv = match params.get("format").map(String::as_str) {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(_) => return Err(MatrixError::invalid_param("format must be jsonl or csv")),
    };
    let records = s.change_log.query(from, to, user, limit);
    let mut body = String::new();
    if csv {
        body.push_str(CSV_HEADER);
        for r in &records {
            body.push_str(&r.csv_line());
        }
    } else {
        for r in &records {
            body.push_str(&serde_json::to_string(r).map_err(|e| MatrixError::Internal(e.into()))?);
            body.push('\n');
        }
    }
    let (kind, name) =
        if csv { ("text/csv", "presence-changes.csv") } else { ("application/x-ndjson", "presence-changes.jsonl") };
    Ok((
        [
            (http::header::CONTENT_TYPE, kind.to_owned()),
            (http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    ))
}

/// `GET /stream`: every change as an SSE `change` event (data: one export record); `lagged`
/// when the reader fell behind and should reload. EventSource sends no headers, so the page
/// passes its token as `access_token`.
async fn stream(
    State(s): State<AppState>,
    _admin: Admin,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    let events = BroadcastStream::new(s.change_log.subscribe()).map(|item| {
        Ok(match item {
            Ok(record) => Event::default().event("change").json_data(&record).unwrap_or_else(|_| Event::default()),
            Err(BroadcastStreamRecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
        })
    });
    let hello = tokio_stream::once(Ok(Event::default().event("ready").data("{}")));
    Sse::new(hello.chain(events)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
