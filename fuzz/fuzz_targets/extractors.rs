//! The request extractor (`seed::api::extract::parse_ruma`, what `Ruma<T>` runs after reading
//! the body) over arbitrary URIs, path arguments and bodies, for the request types Seed serves.
//! Invariant: it never panics, and every refusal is a client error (4xx), never a 5xx.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ruma::api::client::{account, alias, context, membership, message, receipt, redact, state, sync};
use ruma::api::IncomingRequest;
use seed::api::extract::parse_ruma;

fn run<T: IncomingRequest>(uri: &str, args: &[&str], body: &[u8]) {
    let Ok(req) = http::Request::builder().method(T::METHOD).uri(uri).body(()) else { return };
    let (parts, ()) = req.into_parts();
    let mut args: Vec<&str> = args.to_vec();
    args.resize(T::_path_parameters().len(), "");
    if let Err(e) = parse_ruma::<T>(parts, Bytes::copy_from_slice(body), &args) {
        assert!(e.status().is_client_error(), "{e:?} answered {}", e.status());
        assert!(e.errcode().starts_with("M_"));
    }
}

fuzz_target!(|data: &[u8]| {
    // Layout: selector byte, then "uri \n arg \n arg \n arg \n body".
    let Some((&selector, rest)) = data.split_first() else { return };
    let mut fields = rest.splitn(5, |b| *b == b'\n');
    fn text(f: Option<&[u8]>) -> &str {
        std::str::from_utf8(f.unwrap_or_default()).unwrap_or("")
    }
    let uri = text(fields.next());
    let args = [text(fields.next()), text(fields.next()), text(fields.next())];
    let body = fields.next().unwrap_or_default();
    let uri = if uri.starts_with('/') { uri.to_owned() } else { format!("/_matrix/client/v3/x?{uri}") };
    match selector % 11 {
        0 => run::<sync::sync_events::v3::Request>(&uri, &args, body),
        1 => run::<message::send_message_event::v3::Request>(&uri, &args, body),
        2 => run::<state::send_state_event::v3::Request>(&uri, &args, body),
        3 => run::<message::get_message_events::v3::Request>(&uri, &args, body),
        4 => run::<state::get_state_event_for_key::v3::Request>(&uri, &args, body),
        5 => run::<membership::join_room_by_id_or_alias::v3::Request>(&uri, &args, body),
        6 => run::<membership::invite_user::v3::Request>(&uri, &args, body),
        7 => run::<receipt::create_receipt::v3::Request>(&uri, &args, body),
        8 => run::<redact::redact_event::v3::Request>(&uri, &args, body),
        9 => run::<context::get_context::v3::Request>(&uri, &args, body),
        10 => run::<alias::get_alias::v3::Request>(&uri, &args, body),
        _ => run::<account::whoami::v3::Request>(&uri, &args, body),
    }
});
