//! `GET /sync`: long-poll with `since`, `timeout`, `filter`, `full_state`, `set_presence`.
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::{Json, Router};
use ruma::api::client::sync::sync_events::v3 as sync_v3;

use crate::api::extract::{Auth, Ruma};
use crate::api::ruma_route;
use crate::app::AppState;
use crate::error::{MatrixError, Result};
use crate::ground::token;
use crate::presence::{DeviceKind, Presence};
use crate::sync::filters::Filters;
use crate::sync::{SyncFilter, SyncRequest, SyncResponse};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    ruma_route::<sync_v3::Request, _, _>(r, sync)
}

/// Where the request's filter comes from: ready (none, inline, or cached), or a filter id to
/// load.
#[cfg_attr(test, derive(Debug))]
enum FilterSource {
    Ready(Arc<SyncFilter>),
    Id(String),
}

/// The handler. What a parked poll holds is this future: the session, the checked
/// parameters and what `sync_with_presence` keeps, not the request (issue #13: idle long-poll
/// memory; docs/performance-history.md "Idle long-poll memory"): [`SyncParams`] has read the
/// request before the handler runs.
async fn sync(State(s): State<AppState>, Auth(session): Auth, SyncParams(p): SyncParams) -> Result<Json<SyncResponse>> {
    let filter = match p.filter {
        FilterSource::Ready(f) => f,
        // Boxed: `load` reads the database for a filter id not yet cached, and that read's
        // state (~1.3 KB) would be laid out in the future every parked poll holds.
        FilterSource::Id(id) => Box::pin(s.sync.filters.load(&session.user_id, &id)).await?,
    };
    let request = SyncRequest { since: p.since, timeout: p.timeout, full_state: p.full_state, filter };
    Ok(Json(s.sync.sync_with_presence(&session, p.set_presence, p.kind, request).await?))
}

/// The request's parameters (the extractor of [`sync`]). A long-poll comes back every few
/// seconds with the same query but its `since`, so the common shape is read in one pass over
/// the query, its inline filter found by its text ([`quick_parse`]). Anything else (a filter
/// not seen yet, a repeated or unknown parameter, a value out of the plain forms) goes through
/// ruma's parse of the whole request, as every request did before (issue #13: ruma's parse,
/// which reads the inline filter's JSON again each time, and two more passes over the query
/// were ~6 % of the server's profile samples at 10,000 × 100; 2.2 % remain).
struct SyncParams(Parsed);

impl FromRequest<AppState> for SyncParams {
    type Rejection = MatrixError;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, MatrixError> {
        let max = Duration::from_millis(s.config.max_sync_timeout_ms);
        if let Some(p) = quick_parse(req.uri().query(), max, &s.sync.filters) {
            return Ok(SyncParams(p));
        }
        let raw_query = req.uri().query().map(str::to_owned);
        let Ruma(parsed) = Ruma::<sync_v3::Request>::from_request(req, s).await?;
        parse(raw_query.as_deref(), parsed, max, &s.sync.filters).map(SyncParams)
    }
}

/// The request's parameters, checked; what the long-poll's future keeps of the request.
#[cfg_attr(test, derive(Debug))]
struct Parsed {
    set_presence: Presence,
    kind: Option<DeviceKind>,
    filter: FilterSource,
    since: Option<i64>,
    timeout: Duration,
    full_state: bool,
}

/// The request's parameters, each checked (Matrix errors for bad values).
fn parse(raw_query: Option<&str>, req: sync_v3::Request, max: Duration, filters: &Filters) -> Result<Parsed> {
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
                Some(raw) => filters.inline(&raw, to_value)?,
                None => Arc::new(filters.parse_inline(to_value()?)?),
            })
        }
        Some(sync_v3::Filter::FilterId(id)) => FilterSource::Id(id),
        Some(_) => FilterSource::Ready(Arc::default()),
    };
    let since = req.since.as_deref().map(token::parse).transpose()?;
    let timeout = req.timeout.unwrap_or_default().min(max);
    Ok(Parsed { set_presence, kind, filter, since, timeout, full_state: req.full_state })
}

/// The query of a plain `/sync` read in one pass: each of `since`, `timeout`, `filter`,
/// `full_state`, `set_presence` and the device kind at most once, with a value in its plain
/// form (a timeout in digits, `true`/`false`, a known presence or device kind, a valid token),
/// and an inline filter that `filters` already knows by its text (or a filter id of letters
/// and digits). `access_token` is read by `Auth`. `None` for anything else: the caller then
/// takes the full path, whose answer (or Matrix error) is the reference this one must equal
/// (see the tests). Values are decoded only when read, and the filter's text is looked up as it
/// stands in the query first (a long-poll's filter is the longest part of its query).
fn quick_parse(query: Option<&str>, max_timeout: Duration, filters: &Filters) -> Option<Parsed> {
    let (mut since, mut timeout, mut filter, mut full_state, mut presence, mut kind) =
        (None, None, None, None, None, None);
    // As `form_urlencoded::parse` splits a query: on `&`, empty pieces skipped, the name
    // ending at the first `=`.
    for part in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let slot: &mut Option<&str> = match form_decode(name).as_ref() {
            "since" => &mut since,
            "timeout" => &mut timeout,
            "filter" => &mut filter,
            "full_state" => &mut full_state,
            "set_presence" => &mut presence,
            DEVICE_KIND_PARAM => &mut kind,
            "access_token" => continue,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let set_presence = match presence {
        None => Presence::Online,
        Some(v) => form_decode(v).parse().ok()?,
    };
    let kind = match kind {
        None => None,
        Some(v) => Some(kind_named(&form_decode(v))?),
    };
    let timeout = match timeout.map(form_decode).as_deref() {
        None => Duration::ZERO,
        // Digits only, at most JSON's largest safe integer (what ruma's `UInt` takes).
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            let ms: u64 = v.parse().ok()?;
            (ms <= MAX_SAFE_UINT).then(|| Duration::from_millis(ms).min(max_timeout))?
        }
        Some(_) => return None,
    };
    let full_state = match full_state.map(form_decode).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return None,
    };
    let since = match since {
        None => None,
        Some(v) => Some(token::parse(&form_decode(v)).ok()?),
    };
    let filter = match filter {
        None => FilterSource::Ready(Arc::default()),
        Some(raw) => match filters.cached_inline_encoded(raw, form_decode) {
            Some(f) => FilterSource::Ready(f),
            None => {
                let v = form_decode(raw);
                // Not JSON, so ruma reads it as a filter id too. A text starting with `{`
                // that is not cached is read by the full path (which caches it).
                if v.is_empty() || v.starts_with('{') || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return None;
                }
                FilterSource::Id(v.into_owned())
            }
        },
    };
    Some(Parsed { set_presence, kind, filter, since, timeout, full_state })
}

/// One name or value of a query, decoded as `form_urlencoded` decodes it: `+` is a space,
/// then percent-decoding, invalid UTF-8 replaced. Borrowed when there is nothing to decode.
fn form_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.bytes().any(|b| b == b'+' || b == b'%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    std::borrow::Cow::Owned(percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

/// JSON's largest safe integer, 2^53 - 1 (`js_int::UInt::MAX`).
const MAX_SAFE_UINT: u64 = (1 << 53) - 1;

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
        Some(v) => match kind_named(&v) {
            Some(kind) => Ok(Some(kind)),
            None => Err(MatrixError::invalid_param(format!("invalid {DEVICE_KIND_PARAM} '{v}'"))),
        },
    }
}

/// The device kind a value of [`DEVICE_KIND_PARAM`] names, if any.
fn kind_named(v: &str) -> Option<DeviceKind> {
    match v {
        "mobile" => Some(DeviceKind::Mobile),
        "desktop" => Some(DeviceKind::Desktop),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The inline filters the tests' cache knows (the second has spaces: `+` or `%20` in a
    /// query).
    const KNOWN: &str = r#"{"presence":{"types":["m.presence"]},"room":{"rooms":[]}}"#;
    const KNOWN_SPACED: &str = r#"{"presence": {"types": ["m.presence"]}}"#;

    fn filters() -> (tokio::runtime::Runtime, Filters) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = rt.block_on(crate::store::Store::connect("sqlite::memory:", 1)).unwrap();
        let filters = Filters::new(store, 65_536, 100);
        for text in [KNOWN, KNOWN_SPACED] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            filters.inline(text, || Ok(value)).unwrap();
        }
        (rt, filters)
    }

    /// The full path: ruma's parse of the request, then [`parse`].
    fn full(query: &str, max: Duration, filters: &Filters) -> Result<Parsed> {
        let (parts, ()) = http::Request::get(format!("/_matrix/client/v3/sync?{query}")).body(()).unwrap().into_parts();
        let req = crate::api::extract::parse_ruma::<sync_v3::Request>(parts, bytes::Bytes::new(), &[])?;
        parse(Some(query), req, max, filters)
    }

    fn same(a: &Parsed, b: &Parsed) -> bool {
        let filter = match (&a.filter, &b.filter) {
            (FilterSource::Ready(x), FilterSource::Ready(y)) => {
                Arc::ptr_eq(x, y)
                    || format!("{x:?}") == format!("{:?}", SyncFilter::default())
                        && format!("{y:?}") == format!("{:?}", SyncFilter::default())
            }
            (FilterSource::Id(x), FilterSource::Id(y)) => x == y,
            _ => false,
        };
        filter
            && a.set_presence == b.set_presence
            && a.kind == b.kind
            && a.since == b.since
            && a.timeout == b.timeout
            && a.full_state == b.full_state
    }

    fn pair() -> impl Strategy<Value = (String, String)> {
        let values = |vs: &'static [&'static str]| proptest::sample::select(vs).prop_map(str::to_owned);
        prop_oneof![
            values(&["s5", "t7", "12", "s-1", "s9223372036854775807", "s4611686018427387903", "x", ""])
                .prop_map(|v| ("since".into(), v)),
            values(&[
                "0",
                "30000",
                "9007199254740991",
                "9007199254740992",
                "18446744073709551616",
                "-1",
                "1e3",
                "",
                "soon",
                " 5",
                "007"
            ])
            .prop_map(|v| ("timeout".into(), v)),
            values(&[
                KNOWN,
                KNOWN_SPACED,
                r#"{"room":{"timeline":{"limit":1}}}"#,
                "7",
                "abc",
                "{bad",
                "",
                "a b",
                "null",
                "[]",
                "1%2"
            ])
            .prop_map(|v| ("filter".into(), v)),
            values(&["true", "false", "1", "", "TRUE"]).prop_map(|v| ("full_state".into(), v)),
            values(&["online", "offline", "unavailable", "busy", "org.matrix.msc3026.busy", "dancing", ""])
                .prop_map(|v| ("set_presence".into(), v)),
            values(&["mobile", "desktop", "tablet", ""]).prop_map(|v| (DEVICE_KIND_PARAM.into(), v)),
            values(&["abc"]).prop_map(|v| ("access_token".into(), v)),
            values(&["true", "false"]).prop_map(|v| ("use_state_after".into(), v)),
            values(&["1"]).prop_map(|v| ("other".into(), v)),
        ]
    }

    proptest! {
        /// Whatever the quick read accepts, the full path reads the same way.
        #[test]
        fn the_quick_read_agrees_with_the_full_path(
            pairs in proptest::collection::vec(pair(), 0..6),
            max_ms in prop_oneof![Just(300_000u64), Just(10)],
            spelling in 0..3u8,
        ) {
            let (_rt, filters) = filters();
            // The same query spelt three ways: as browsers encode forms (`+` for a space), every
            // byte but letters and digits percent-encoded, and the way `form_urlencoded`
            // writes it (`%7B`, `+`) but with the names percent-encoded too.
            let every = |t: &str| percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string();
            let query = match spelling {
                0 => url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish(),
                1 => pairs.iter().map(|(k, v)| format!("{k}={}", every(v))).collect::<Vec<_>>().join("&"),
                _ => pairs
                    .iter()
                    .map(|(k, v)| {
                        let v = url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
                        format!("{}={v}", every(k))
                    })
                    .collect::<Vec<_>>()
                    .join("&"),
            };
            // Twice: the second time the filter is found by its encoded text.
            for _ in 0..2 {
            let max = Duration::from_millis(max_ms);
            if let Some(quick) = quick_parse(Some(&query), max, &filters) {
                let full = full(&query, max, &filters);
                prop_assert!(full.as_ref().is_ok_and(|f| same(&quick, f)), "{query}: quick {quick:?}, full {full:?}", full = full.as_ref().map_err(|e| e.to_string()));
            }
            }
        }
    }

    /// The quick read takes the long-poll every client repeats, and leaves the rest.
    #[test]
    fn the_quick_read_takes_the_plain_long_poll_only() {
        let (_rt, filters) = filters();
        let max = Duration::from_secs(300);
        let quick = |q: &str| quick_parse(Some(q), max, &filters);
        let known = url::form_urlencoded::byte_serialize(KNOWN.as_bytes()).collect::<String>();
        let p = quick(&format!("since=s42&timeout=30000&set_presence=offline&filter={known}")).expect("the plain poll");
        assert_eq!(
            (p.since, p.timeout, p.set_presence, p.full_state),
            (Some(42), Duration::from_secs(30), Presence::Offline, false)
        );
        assert!(
            matches!(p.filter, FilterSource::Ready(ref f) if Arc::ptr_eq(f, &filters.cached_inline(KNOWN).unwrap()))
        );
        let spaced = filters.cached_inline(KNOWN_SPACED).unwrap();
        let plus = url::form_urlencoded::byte_serialize(KNOWN_SPACED.as_bytes()).collect::<String>();
        let percent =
            percent_encoding::utf8_percent_encode(KNOWN_SPACED, percent_encoding::NON_ALPHANUMERIC).to_string();
        assert!(plus.contains('+') && percent.contains("%20"));
        for spelling in [&plus, &percent, &plus, &percent] {
            // Found by its decoded text the first time, by this spelling after that.
            let p = quick(&format!("filter={spelling}")).expect("a cached filter, however it is spelt");
            assert!(matches!(p.filter, FilterSource::Ready(ref f) if Arc::ptr_eq(f, &spaced)), "{spelling}");
        }
        assert!(quick("").is_some(), "no parameters at all");
        assert!(matches!(quick("filter=12").unwrap().filter, FilterSource::Id(ref id) if id == "12"));
        assert_eq!(quick("timeout=999999999").unwrap().timeout, max, "capped as the full path caps it");
        for other in [
            "filter=%7B%7D",     // not seen yet: ruma reads it, `parse` caches it
            "since=s1&since=s2", // repeated
            "timeout=soon",      // an error: the full path words it
            "set_presence=dancing",
            "use_state_after=true", // a parameter the quick read does not know
            "full_state=1",
        ] {
            assert!(quick(other).is_none(), "{other}");
        }
    }
}
