//! Federation foundation: two Seed instances on loopback (server names `localhost:PORT` and
//! `127.0.0.1:PORT`, TLS with generated self-signed certificates) talking over the
//! server-server API: keys, X-Matrix authentication, allow/deny lists, remote profiles and
//! room aliases through the client API.
mod common;
#[path = "common/federation.rs"]
mod federation_common;

use common::{assert_err, enc, TestApp};
use federation_common::{fed_get, signed_get, FedApp, Host, Signer};
use reqwest::Method;
use ruma::ServerName;
use serde_json::{json, Value};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The one `ed25519:*` key of a key response, checked to be self-signed by `server`.
fn check_key_response(server: &str, v: &Value) -> (String, String) {
    let name = <&ServerName>::try_from(server).unwrap();
    seed::federation::keys::verify_key_response(name, v).expect("a well-formed, self-signed key response");
    assert!(v["valid_until_ts"].as_u64().unwrap() > now_ms(), "{v}");
    assert!(v["old_verify_keys"].is_object(), "{v}");
    let keys = v["verify_keys"].as_object().unwrap();
    assert_eq!(keys.len(), 1, "{v}");
    let (id, k) = keys.iter().next().unwrap();
    assert!(id.starts_with("ed25519:"), "{id}");
    (id.clone(), k["key"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn federation_is_off_by_default() {
    let app = TestApp::spawn().await;
    assert!(app.running.as_ref().unwrap().federation.is_none(), "no federation listener");
    let (status, v) = app.get("/.well-known/matrix/server", None).await;
    assert_err(status, &v, 404, "M_UNRECOGNIZED");
    // A user of another server has no profile here (no federation to ask).
    let alice = app.register("alice").await;
    let (status, v) =
        app.get(&format!("/_matrix/client/v3/profile/{}", enc("@bob:elsewhere.test")), Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn key_endpoint_is_self_signed_and_stable_across_restarts() {
    let mut a =
        FedApp::spawn(Host::Localhost, |c| c.federation.well_known_server = Some("fed.example.test:443".into())).await;
    let (status, v) = fed_get(&a, "/_matrix/key/v2/server", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["server_name"], a.server_name);
    let before = check_key_response(&a.server_name, &v);

    let (status, v) = fed_get(&a, "/_matrix/federation/v1/version", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["server"]["name"], "Seed");
    // Delegation is served on both listeners.
    let (status, v) = fed_get(&a, "/.well-known/matrix/server", None).await;
    assert_eq!((status.as_u16(), v["m.server"].clone()), (200, json!("fed.example.test:443")));
    let (status, v) = a.app.get("/.well-known/matrix/server", None).await;
    assert_eq!((status.as_u16(), v["m.server"].clone()), (200, json!("fed.example.test:443")));
    let (status, v) = fed_get(&a, "/_matrix/federation/v1/nonsense", None).await;
    assert_err(status, &v, 404, "M_UNRECOGNIZED");

    a.app.restart().await;
    let (status, v) = fed_get(&a, "/_matrix/key/v2/server", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(check_key_response(&a.server_name, &v), before, "the key survives a restart");
}

#[tokio::test]
async fn signed_requests_pass_and_unsigned_or_forged_ones_get_401() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let b = FedApp::spawn(Host::Ip, |_| {}).await;
    let bob = b.app.register("bob").await;
    let (status, _) = b
        .app
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob.user_id)),
            Some(&bob.token),
            json!({"displayname": "Bob B"}),
        )
        .await;
    assert_eq!(status, 200);
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(&bob.user_id));

    // Signed by A's real key: B fetches A's key over TLS and lets it in.
    let (status, v) = signed_get(&a.signer(), &b, &path).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["displayname"], "Bob B");
    let (status, v) = signed_get(&a.signer(), &b, &format!("{path}&field=avatar_url")).await;
    assert_eq!((status.as_u16(), v), (200, json!({})));
    let (status, v) =
        signed_get(&a.signer(), &b, &format!("/_matrix/federation/v1/user/devices/{}", enc(&bob.user_id))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user_id"], bob.user_id);
    assert_eq!(v["devices"][0]["device_id"], bob.device_id);

    // No signature at all.
    let (status, v) = fed_get(&b, &path, None).await;
    assert_err(status, &v, 401, "M_UNAUTHORIZED");
    // Garbage in the header.
    let (status, v) = fed_get(&b, &path, Some("X-Matrix nonsense".into())).await;
    assert_err(status, &v, 401, "M_UNAUTHORIZED");
    // Claims to be A, with A's key id, signed by another key.
    let seed_b64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
    let a_version = a.signing_key().version().to_owned();
    let forger = Signer {
        origin: a.server_name.parse().unwrap(),
        key: seed::federation::signing_key::parse_key_line(&format!("ed25519 {a_version} {seed_b64}")).unwrap(),
    };
    let (status, v) = signed_get(&forger, &b, &path).await;
    assert_err(status, &v, 401, "M_UNAUTHORIZED");
    // Properly signed, but for another request (the path is part of the signature).
    let other = a.signer().header(&b.server_name, &Method::GET, "/_matrix/federation/v1/version", b"");
    let (status, v) = fed_get(&b, &path, Some(other)).await;
    assert_err(status, &v, 401, "M_UNAUTHORIZED");
    // Properly signed, for another destination.
    let elsewhere = a.signer().header("elsewhere.test", &Method::GET, &path, b"");
    let (status, v) = fed_get(&b, &path, Some(elsewhere)).await;
    assert_err(status, &v, 401, "M_UNAUTHORIZED");
    // From a server whose keys cannot be fetched (nobody listens there).
    let ghost = Signer { origin: "127.0.0.1:9".parse().unwrap(), key: a.signing_key() };
    let (status, v) = signed_get(&ghost, &b, &path).await;
    assert_err(status, &v, 401, "M_UNAUTHORIZED");
}

#[tokio::test]
async fn denied_peers_get_403_and_allow_lists_admit_only_listed_peers() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let a_name = a.server_name.clone();
    let b = FedApp::spawn(Host::Ip, move |c| c.federation.deny = vec![a_name]).await;
    let bob = b.app.register("bob").await;
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(&bob.user_id));
    let (status, v) = signed_get(&a.signer(), &b, &path).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");

    let c = FedApp::spawn(Host::Ip, |c| c.federation.allow = vec!["only.example.test".into()]).await;
    let carol = c.app.register("carol").await;
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", enc(&carol.user_id));
    let (status, v) = signed_get(&a.signer(), &c, &path).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");

    // And A's users get no profile of a server that refuses A.
    let alice = a.app.register("alice").await;
    let (status, v) = a.app.get(&format!("/_matrix/client/v3/profile/{}", enc(&bob.user_id)), Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn local_users_read_remote_profiles_and_resolve_remote_aliases() {
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let b = FedApp::spawn(Host::Ip, |_| {}).await;
    let alice = a.app.register("alice").await;
    let bob = b.app.register("bob").await;
    for (field, value) in [("displayname", "Bob on B"), ("avatar_url", "mxc://b/avatar")] {
        let (status, v) = b
            .app
            .put(
                &format!("/_matrix/client/v3/profile/{}/{field}", enc(&bob.user_id)),
                Some(&bob.token),
                json!({field: value}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }

    let (status, v) = a.app.get(&format!("/_matrix/client/v3/profile/{}", enc(&bob.user_id)), Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["displayname"].clone(), v["avatar_url"].clone()), (json!("Bob on B"), json!("mxc://b/avatar")));
    let (status, v) =
        a.app.get(&format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob.user_id)), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"displayname": "Bob on B"})));
    let (status, v) =
        a.app.get(&format!("/_matrix/client/v3/profile/{}/avatar_url", enc(&bob.user_id)), Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"avatar_url": "mxc://b/avatar"})));
    // A user B does not have.
    let ghost = format!("@nobody:{}", b.server_name);
    let (status, v) = a.app.get(&format!("/_matrix/client/v3/profile/{}", enc(&ghost)), Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");

    // A room alias on B, resolved through A.
    let room = b.app.create_room(&bob, json!({"room_alias_name": "lobby"})).await;
    let alias = format!("#lobby:{}", b.server_name);
    let (status, v) =
        a.app.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&alias)), Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["room_id"], room);
    assert_eq!(v["servers"], json!([b.server_name]));
    let missing = format!("#nope:{}", b.server_name);
    let (status, v) =
        a.app.get(&format!("/_matrix/client/v3/directory/room/{}", enc(&missing)), Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    // B answers alias queries only for its own aliases.
    let not_b = format!("/_matrix/federation/v1/query/directory?room_alias={}", enc("#x:elsewhere.test"));
    let (status, v) = signed_get(&a.signer(), &b, &not_b).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn key_query_serves_other_servers_keys_signed_as_notary() {
    let b = FedApp::spawn(Host::Ip, |_| {}).await;
    let b_name = b.server_name.clone();
    // A never asks B directly: only through B as a notary (exercises the notary path).
    let a = FedApp::spawn(Host::Localhost, move |c| {
        c.federation.key_fetch_direct = false;
        c.federation.trusted_key_servers = vec![b_name];
    })
    .await;
    let (status, v) = fed_get(&a, &format!("/_matrix/key/v2/query/{}", enc(&b.server_name)), None).await;
    assert_eq!(status, 200, "{v}");
    let doc = &v["server_keys"][0];
    let (b_key_id, _) = check_key_response(&b.server_name, doc);
    assert!(doc["signatures"][&a.server_name].is_object(), "counter-signed by the notary: {doc}");
    let (_, own) = fed_get(&b, "/_matrix/key/v2/server", None).await;
    assert!(own["verify_keys"][&b_key_id].is_object());

    // POST form, with our own name and an unknown server in the list.
    let body = json!({"server_keys": {b.server_name.clone(): {}, a.server_name.clone(): {}, "127.0.0.1:9": {}}});
    let resp = federation_common::tls_client()
        .post(format!("{}/_matrix/key/v2/query", a.fed_base()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let mut names: Vec<String> =
        v["server_keys"].as_array().unwrap().iter().map(|d| d["server_name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    let mut want = vec![a.server_name.clone(), b.server_name.clone()];
    want.sort();
    assert_eq!(names, want);
}

#[tokio::test]
async fn expired_remote_keys_are_fetched_again() {
    // B's key responses are valid for 1.5 s only.
    let b = FedApp::spawn(Host::Ip, |c| c.federation.key_validity_ms = 1_500).await;
    let a = FedApp::spawn(Host::Localhost, |_| {}).await;
    let path = format!("/_matrix/key/v2/query/{}", enc(&b.server_name));
    let (status, v) = fed_get(&a, &path, None).await;
    assert_eq!(status, 200, "{v}");
    let first = v["server_keys"][0]["valid_until_ts"].as_u64().unwrap();
    // Within validity: the cached response, unchanged.
    let (_, v) = fed_get(&a, &path, None).await;
    assert_eq!(v["server_keys"][0]["valid_until_ts"].as_u64().unwrap(), first);
    tokio::time::sleep(std::time::Duration::from_millis(1_700)).await;
    let (status, v) = fed_get(&a, &path, None).await;
    assert_eq!(status, 200, "{v}");
    let second = v["server_keys"][0]["valid_until_ts"].as_u64().unwrap();
    assert!(second > first, "refetched after expiry: {first} then {second}");
    check_key_response(&b.server_name, &v["server_keys"][0]);
}
