//! What everyday clients need besides rooms and presence: media, push rules and pushers, the
//! room and user directories, relations, and the empty third-party/TURN/3PID answers.
mod common;

use common::{assert_err, enc, TestApp, User};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    }));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, user: &User, path: &str, ct: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = app.http.post(format!("{}{path}", app.base)).bearer_auth(&user.token).body(body);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// GET with an optional token: (status, headers, body bytes).
async fn fetch(app: &TestApp, path: &str, token: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = app.http.get(format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.headers().clone(), resp.bytes().await.unwrap().to_vec())
}

fn mxc_parts(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("mxc://").expect("mxc uri");
    let (server, id) = rest.split_once('/').unwrap();
    (server.to_owned(), id.to_owned())
}

#[tokio::test]
async fn media_upload_download_keeps_bytes_type_and_name() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = upload(
        &app,
        &alice,
        "/_matrix/media/v3/upload?filename=notes%20%C3%A9t%C3%A9.txt",
        Some("text/plain"),
        b"hello media".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (server, id) = mxc_parts(v["content_uri"].as_str().unwrap());
    assert_eq!(server, "localhost");

    // Authenticated download needs a token.
    let (status, _, body) = fetch(&app, &format!("/_matrix/client/v1/media/download/{server}/{id}"), None).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, headers, body) =
        fetch(&app, &format!("/_matrix/client/v1/media/download/{server}/{id}"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"hello media");
    assert_eq!(headers["content-type"], "text/plain");
    let cd = headers["content-disposition"].to_str().unwrap();
    assert!(cd.starts_with("inline") && cd.contains("notes%20%C3%A9t%C3%A9%2Etxt"), "{cd}");

    // The legacy endpoint (no token) and the named variant, which overrides the file name.
    let (status, _, body) = fetch(&app, &format!("/_matrix/media/v3/download/{server}/{id}"), None).await;
    assert_eq!((status.as_u16(), body.as_slice()), (200, &b"hello media"[..]));
    let (status, headers, _) =
        fetch(&app, &format!("/_matrix/client/v1/media/download/{server}/{id}/other.txt"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().contains("other%2Etxt"));
    let (status, _, _) = fetch(&app, &format!("/_matrix/media/r0/download/{server}/{id}/x.bin"), None).await;
    assert_eq!(status, 200);

    // Unsafe types are served as attachments.
    let (_, v) = upload(&app, &alice, "/_matrix/media/v3/upload", Some("text/html"), b"<script>".to_vec()).await;
    let (_, id2) = mxc_parts(v["content_uri"].as_str().unwrap());
    let (_, headers, _) = fetch(&app, &format!("/_matrix/media/v3/download/localhost/{id2}"), None).await;
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert!(headers.contains_key("content-security-policy"));

    // Stored durably: a restart serves the same file.
    let mut app = app;
    app.restart().await;
    let (status, _, body) = fetch(&app, &format!("/_matrix/media/v3/download/{server}/{id}"), None).await;
    assert_eq!((status.as_u16(), body.as_slice()), (200, &b"hello media"[..]));
}

#[tokio::test]
async fn media_bad_input_gets_spec_errors() {
    let app = TestApp::spawn_with(|c| c.max_upload_bytes = 1000).await;
    let alice = app.register("alice").await;
    // Too big: 413 M_TOO_LARGE, and the limit is advertised by /config.
    let (status, v) =
        upload(&app, &alice, "/_matrix/media/v3/upload", Some("application/octet-stream"), vec![7; 1001]).await;
    assert_err(status, &v, 413, "M_TOO_LARGE");
    let (status, v) = upload(&app, &alice, "/_matrix/media/v3/upload", None, vec![7; 1000]).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app.get("/_matrix/client/v1/media/config", Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v["m.upload.size"].as_u64()), (200, Some(1000)));
    let (status, v) = app.get("/_matrix/media/v3/config", Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v["m.upload.size"].as_u64()), (200, Some(1000)));
    // Uploading needs a token.
    let resp = app.http.post(format!("{}/_matrix/media/v3/upload", app.base)).body("x").send().await.unwrap();
    let status = resp.status();
    assert_err(status, &resp.json().await.unwrap(), 401, "M_MISSING_TOKEN");
    // A file name longer than the bound.
    let long = "a".repeat(300);
    let (status, v) =
        upload(&app, &alice, &format!("/_matrix/media/v3/upload?filename={long}"), None, b"x".to_vec()).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");

    // Unknown ids, other servers, ids that are not ours: 404 M_NOT_FOUND, never a file path.
    for path in [
        "/_matrix/client/v1/media/download/localhost/nosuchmedia",
        "/_matrix/client/v1/media/download/example.org/nosuchmedia",
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fetc%2Fpasswd",
        "/_matrix/client/v1/media/thumbnail/localhost/nosuchmedia?width=32&height=32",
    ] {
        let (status, v) = app.get(path, Some(&alice.token)).await;
        assert_err(status, &v, 404, "M_NOT_FOUND");
    }
    let (status, v) = app.get("/_matrix/media/v3/download/localhost/nosuchmedia", None).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    // An invalid server name in the path.
    let (status, v) = app.get("/_matrix/media/v3/download/not%20a%20server/abc", None).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["errcode"].is_string());
    // URL previews are off: a clean error, not a 404 M_UNRECOGNIZED.
    let (status, v) =
        app.get("/_matrix/client/v1/media/preview_url?url=https%3A%2F%2Fexample.org", Some(&alice.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn media_thumbnails_crop_and_scale() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = upload(&app, &alice, "/_matrix/media/v3/upload", Some("image/png"), png(400, 200)).await;
    assert_eq!(status, 200, "{v}");
    let (_, id) = mxc_parts(v["content_uri"].as_str().unwrap());
    let base = format!("/_matrix/client/v1/media/thumbnail/localhost/{id}");

    let (status, headers, body) =
        fetch(&app, &format!("{base}?width=96&height=96&method=crop"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/jpeg");
    let img = image::load_from_memory(&body).unwrap();
    assert_eq!((img.width(), img.height()), (96, 96));

    let (status, _, body) = fetch(&app, &format!("{base}?width=300&height=200&method=scale"), Some(&alice.token)).await;
    assert_eq!(status, 200);
    let img = image::load_from_memory(&body).unwrap();
    assert_eq!((img.width(), img.height()), (320, 160), "scale keeps the 2:1 aspect ratio");
    // The cached thumbnail is served the second time, identical.
    let (_, _, again) = fetch(&app, &format!("{base}?width=300&height=200&method=scale"), Some(&alice.token)).await;
    assert_eq!(body, again);
    // Legacy path too.
    let (status, _, _) =
        fetch(&app, &format!("/_matrix/media/v3/thumbnail/localhost/{id}?width=32&height=32"), None).await;
    assert_eq!(status, 200);

    // Bad input: missing/zero sizes, unknown method, not an image.
    let (status, v) = app.get(&format!("{base}?width=32"), Some(&alice.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get(&format!("{base}?width=0&height=0"), Some(&alice.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get(&format!("{base}?width=32&height=32&method=stretch"), Some(&alice.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (_, v) = upload(&app, &alice, "/_matrix/media/v3/upload", Some("image/png"), b"not a png".to_vec()).await;
    let (_, bad) = mxc_parts(v["content_uri"].as_str().unwrap());
    let (status, v) = app
        .get(&format!("/_matrix/client/v1/media/thumbnail/localhost/{bad}?width=32&height=32"), Some(&alice.token))
        .await;
    assert_err(status, &v, 400, "M_UNKNOWN");
}

#[tokio::test]
async fn push_rules_start_from_the_server_default_and_support_crud() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = app.get("/_matrix/client/v3/pushrules/", Some(&alice.token)).await;
    assert_eq!(status, 200, "{v}");
    let ids = |v: &Value, kind: &str| -> Vec<String> {
        v[kind].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap().to_owned()).collect()
    };
    assert!(ids(&v["global"], "override").contains(&".m.rule.master".to_owned()), "{v}");
    assert!(ids(&v["global"], "underride").contains(&".m.rule.message".to_owned()));
    let (status, v) = app.get("/_matrix/client/v3/pushrules/global/override/.m.rule.master", Some(&alice.token)).await;
    assert_eq!((status.as_u16(), &v["enabled"]), (200, &json!(false)), "{v}");

    // Add a content rule, read it back, toggle it, change its actions, delete it.
    let rule = "/_matrix/client/v3/pushrules/global/content/cakes";
    let (status, v) = app.put(rule, Some(&alice.token), json!({"pattern": "cake*", "actions": ["notify"]})).await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = app.get(rule, Some(&alice.token)).await;
    assert_eq!((v["pattern"].as_str(), v["enabled"].as_bool()), (Some("cake*"), Some(true)), "{v}");
    let (status, _) = app.put(&format!("{rule}/enabled"), Some(&alice.token), json!({"enabled": false})).await;
    assert_eq!(status, 200);
    let (_, v) = app.get(&format!("{rule}/enabled"), Some(&alice.token)).await;
    assert_eq!(v, json!({"enabled": false}));
    let (status, _) = app.put(&format!("{rule}/actions"), Some(&alice.token), json!({"actions": []})).await;
    assert_eq!(status, 200);
    let (_, v) = app.get(&format!("{rule}/actions"), Some(&alice.token)).await;
    assert_eq!(v, json!({"actions": []}));
    // Server-default rules can be disabled (and it sticks) ...
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled";
    assert_eq!(app.put(master, Some(&alice.token), json!({"enabled": true})).await.0, 200);
    assert_eq!(app.get(master, Some(&alice.token)).await.1, json!({"enabled": true}));
    // ... and the saved ruleset reaches /sync as m.push_rules account data.
    let sync = app.sync(&alice, "timeout=0").await;
    let events = sync["account_data"]["events"].as_array().cloned().unwrap_or_default();
    let pr = events.iter().find(|e| e["type"] == "m.push_rules").expect("m.push_rules in sync");
    assert!(ids(&pr["content"]["global"], "content").contains(&"cakes".to_owned()));
    assert_eq!(app.raw(reqwest::Method::DELETE, rule, Some(&alice.token), None).await.0, 200);
    let (status, v) = app.get(rule, Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");

    // Bad input.
    let (status, v) = app
        .put(
            "/_matrix/client/v3/pushrules/global/content/.mine",
            Some(&alice.token),
            json!({"pattern": "x", "actions": []}),
        )
        .await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app
        .raw(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master",
            Some(&alice.token),
            None,
        )
        .await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) =
        app.put("/_matrix/client/v3/pushrules/global/room/notaroom", Some(&alice.token), json!({"actions": []})).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) =
        app.put("/_matrix/client/v3/pushrules/global/bogus/x", Some(&alice.token), json!({"actions": []})).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) =
        app.put("/_matrix/client/v3/pushrules/global/content/x", Some(&alice.token), json!({"actions": []})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) = app
        .put(
            "/_matrix/client/v3/pushrules/global/content/x?before=nosuchrule",
            Some(&alice.token),
            json!({"pattern": "x", "actions": []}),
        )
        .await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) =
        app.get("/_matrix/client/v3/pushrules/global/content/nosuchrule/actions", Some(&alice.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.get("/_matrix/client/v3/pushrules/", None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
    // The account-data API cannot overwrite the rules.
    let (status, _) = app
        .put(
            &format!("/_matrix/client/v3/user/{}/account_data/m.push_rules", enc(&alice.user_id)),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn pushers_are_stored_replaced_and_deleted() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let pusher = json!({
        "kind": "http", "app_id": "org.example.app", "pushkey": "key1", "app_display_name": "App",
        "device_display_name": "Phone", "lang": "en", "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}
    });
    let (status, v) = app.post("/_matrix/client/v3/pushers/set", Some(&alice.token), pusher.clone()).await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = app.get("/_matrix/client/v3/pushers", Some(&alice.token)).await;
    assert_eq!(v["pushers"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["pushers"][0]["data"]["url"], "https://push.example.org/_matrix/push/v1/notify");
    // Same app_id + pushkey for bob without append: it moves to bob.
    assert_eq!(app.post("/_matrix/client/v3/pushers/set", Some(&bob.token), pusher.clone()).await.0, 200);
    assert_eq!(app.get("/_matrix/client/v3/pushers", Some(&alice.token)).await.1["pushers"], json!([]));
    assert_eq!(app.get("/_matrix/client/v3/pushers", Some(&bob.token)).await.1["pushers"].as_array().unwrap().len(), 1);
    // kind null deletes.
    let del = json!({"kind": null, "app_id": "org.example.app", "pushkey": "key1"});
    assert_eq!(app.post("/_matrix/client/v3/pushers/set", Some(&bob.token), del).await.0, 200);
    assert_eq!(app.get("/_matrix/client/v3/pushers", Some(&bob.token)).await.1["pushers"], json!([]));
    // Bad input.
    let (status, v) = app.post("/_matrix/client/v3/pushers/set", Some(&bob.token), json!({"kind": "http"})).await;
    assert_err(status, &v, 400, "M_MISSING_PARAM");
    let mut bad = pusher.clone();
    bad["data"] = json!({"url": "ftp://x"});
    let (status, v) = app.post("/_matrix/client/v3/pushers/set", Some(&bob.token), bad).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let mut long = pusher.clone();
    long["pushkey"] = json!("k".repeat(600));
    let (status, v) = app.post("/_matrix/client/v3/pushers/set", Some(&bob.token), long).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app
        .raw(
            reqwest::Method::POST,
            "/_matrix/client/v3/pushers/set",
            Some(&bob.token),
            Some(common::RawBody::Text("{".into())),
        )
        .await;
    assert_err(status, &v, 400, "M_NOT_JSON");
    // Notifications: an empty list.
    let (status, v) = app.get("/_matrix/client/v3/notifications?limit=5", Some(&bob.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"notifications": []})));
}

#[tokio::test]
async fn public_rooms_list_published_public_rooms() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let lounge = app
        .create_room(&alice, json!({"preset": "public_chat", "visibility": "public", "name": "Lounge", "topic": "tea", "room_alias_name": "lounge"}))
        .await;
    let _unlisted = app.create_room(&alice, json!({"preset": "public_chat", "name": "Unlisted"})).await;
    let secret = app.create_room(&alice, json!({"preset": "private_chat", "name": "Secret"})).await;
    app.join(&bob, &lounge).await;

    let (status, v) = app.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, 200, "{v}");
    let chunk = v["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 1, "{v}");
    assert_eq!(chunk[0]["room_id"], lounge.as_str());
    assert_eq!(chunk[0]["name"], "Lounge");
    assert_eq!(chunk[0]["topic"], "tea");
    assert_eq!(chunk[0]["canonical_alias"], "#lounge:localhost");
    assert_eq!(chunk[0]["num_joined_members"], 2);
    assert_eq!(chunk[0]["join_rule"], "public");

    // Publishing a private room lists nothing new (join rule is not public); an admin may list
    // and unlist; a non-member may not.
    let dir = |room: &str| format!("/_matrix/client/v3/directory/list/room/{}", enc(room));
    assert_eq!(app.put(&dir(&secret), Some(&alice.token), json!({"visibility": "public"})).await.0, 200);
    assert_eq!(app.get(&dir(&secret), None).await.1, json!({"visibility": "public"}));
    assert_eq!(app.get("/_matrix/client/v3/publicRooms", None).await.1["chunk"].as_array().unwrap().len(), 1);
    let (status, v) = app.put(&dir(&secret), Some(&bob.token), json!({"visibility": "private"})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) = app.put(&dir(&lounge), Some(&bob.token), json!({"visibility": "private"})).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    assert_eq!(app.put(&dir(&lounge), Some(&alice.token), json!({"visibility": "private"})).await.0, 200);
    assert_eq!(app.get(&dir(&lounge), None).await.1, json!({"visibility": "private"}));
    assert_eq!(app.get("/_matrix/client/v3/publicRooms", None).await.1["chunk"], json!([]));
    assert_eq!(app.put(&dir(&lounge), Some(&alice.token), json!({"visibility": "public"})).await.0, 200);

    // Filtered search and paging.
    for i in 0..3 {
        app.create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "name": format!("Garden {i}")}),
        )
        .await;
    }
    let (status, v) = app
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&bob.token),
            json!({"filter": {"generic_search_term": "garden"}, "limit": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["chunk"].as_array().unwrap().len(), 2);
    assert_eq!(v["total_room_count_estimate"], 3);
    let next = v["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, v) = app
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&bob.token),
            json!({"filter": {"generic_search_term": "garden"}, "limit": 2, "since": next}),
        )
        .await;
    assert_eq!(v["chunk"].as_array().unwrap().len(), 1);
    assert!(v.get("next_batch").is_none(), "{v}");
    assert_eq!(app.get("/_matrix/client/v3/publicRooms?limit=1", None).await.1["chunk"][0]["room_id"], lounge.as_str());

    // Bad input.
    let (status, v) = app.get("/_matrix/client/v3/publicRooms?since=garbage", None).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get("/_matrix/client/v3/publicRooms?server=example.org", None).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.post("/_matrix/client/v3/publicRooms", None, json!({})).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
    let (status, v) = app
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&bob.token),
            json!({"filter": {"generic_search_term": "x".repeat(300)}}),
        )
        .await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get(&dir("!nosuchroom:localhost"), None).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.put(&dir(&lounge), Some(&alice.token), json!({"visibility": "sideways"})).await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn user_directory_finds_room_peers_and_users_in_public_rooms() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let _dave = app.register("dave").await;
    let (status, _) = app
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&bob.user_id)),
            Some(&bob.token),
            json!({"displayname": "Bobby Tables"}),
        )
        .await;
    assert_eq!(status, 200);
    let private = app.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    app.join(&bob, &private).await;
    app.create_room(&carol, json!({"preset": "public_chat"})).await;

    let search = |term: &str, limit: Option<u64>| {
        let mut body = json!({"search_term": term});
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        body
    };
    let ids = |v: &Value| -> Vec<String> {
        v["results"].as_array().unwrap().iter().map(|r| r["user_id"].as_str().unwrap().to_owned()).collect()
    };
    // By display name (shares a room), by id (in a public room); dave shares nothing.
    let (status, v) =
        app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), search("tables", None)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v), vec![bob.user_id.clone()]);
    assert_eq!(v["results"][0]["display_name"], "Bobby Tables");
    assert_eq!(v["limited"], false);
    let (_, v) = app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), search("CAROL", None)).await;
    assert_eq!(ids(&v), vec![carol.user_id.clone()]);
    let (_, v) = app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), search("dave", None)).await;
    assert_eq!(ids(&v), Vec::<String>::new());
    // LIKE wildcards are literal.
    let (_, v) = app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), search("%", None)).await;
    assert_eq!(ids(&v), Vec::<String>::new());
    // Limit.
    let (_, v) =
        app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), search("localhost", Some(1))).await;
    assert_eq!(ids(&v).len(), 1);
    assert_eq!(v["limited"], true);
    // Bad input.
    let (status, v) = app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), json!({})).await;
    assert_err(status, &v, 400, "M_BAD_JSON");
    let (status, v) =
        app.post("/_matrix/client/v3/user_directory/search", Some(&alice.token), search(&"x".repeat(300), None)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.post("/_matrix/client/v3/user_directory/search", None, search("bob", None)).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn relations_are_indexed_when_sent_and_paged() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = app.create_room(&alice, json!({"preset": "private_chat", "invite": [bob.user_id]})).await;
    app.join(&bob, &room).await;
    let parent = app.send_text(&alice, &room, "root").await;
    let send = |user: &User, kind: &str, content: Value| {
        let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{}", enc(&room), uuid::Uuid::new_v4().simple());
        let token = user.token.clone();
        let app = &app;
        async move {
            let (status, v) = app.put(&path, Some(&token), content).await;
            assert_eq!(status, 200, "{v}");
            v["event_id"].as_str().unwrap().to_owned()
        }
    };
    let thread = json!({"rel_type": "m.thread", "event_id": parent});
    let t1 = send(&bob, "m.room.message", json!({"msgtype": "m.text", "body": "t1", "m.relates_to": thread})).await;
    let t2 = send(&alice, "m.room.message", json!({"msgtype": "m.text", "body": "t2", "m.relates_to": thread})).await;
    let r1 = send(
        &bob,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": "👍"}}),
    )
    .await;
    // Encrypted events keep m.relates_to in clear: indexed as well.
    let e1 = send(
        &bob,
        "m.room.encrypted",
        json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x", "m.relates_to": thread}),
    )
    .await;
    send(&bob, "m.room.message", json!({"msgtype": "m.text", "body": "unrelated"})).await;

    let base = format!("/_matrix/client/v1/rooms/{}/relations/{}", enc(&room), enc(&parent));
    let ids = |v: &Value| -> Vec<String> {
        v["chunk"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
    };
    let (status, v) = app.get(&base, Some(&bob.token)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v), vec![e1.clone(), r1.clone(), t2.clone(), t1.clone()], "newest first");
    let (_, v) = app.get(&format!("{base}/m.thread"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![e1.clone(), t2.clone(), t1.clone()]);
    let (_, v) = app.get(&format!("{base}/m.thread/m.room.message?dir=f"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![t1.clone(), t2.clone()]);
    let (_, v) = app.get(&format!("{base}/m.annotation/m.reaction"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![r1.clone()]);
    assert_eq!(v["chunk"][0]["content"]["m.relates_to"]["key"], "👍");

    // Paging: two at a time, backwards then forwards.
    let (_, v) = app.get(&format!("{base}?limit=2"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![e1.clone(), r1.clone()]);
    let next = v["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, v) = app.get(&format!("{base}?limit=2&from={next}"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![t2.clone(), t1.clone()]);
    let (_, v) = app.get(&format!("{base}?limit=3&dir=f"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![t1.clone(), t2.clone(), r1.clone()]);
    let next = v["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, v) = app.get(&format!("{base}?limit=3&dir=f&from={next}"), Some(&bob.token)).await;
    assert_eq!(ids(&v), vec![e1.clone()]);

    // Bad input and access: outsiders get 403, unknown events 404, bad tokens 400.
    let (status, v) = app.get(&base, Some(&eve.token)).await;
    assert_err(status, &v, 403, "M_FORBIDDEN");
    let (status, v) =
        app.get(&format!("/_matrix/client/v1/rooms/{}/relations/%24nosuchevent", enc(&room)), Some(&bob.token)).await;
    assert_err(status, &v, 404, "M_NOT_FOUND");
    let (status, v) = app.get(&format!("{base}?from=garbage"), Some(&bob.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) = app.get(&format!("{base}?dir=sideways"), Some(&bob.token)).await;
    assert_err(status, &v, 400, "M_INVALID_PARAM");
    let (status, v) =
        app.get(&format!("/_matrix/client/v1/rooms/notaroom/relations/{}", enc(&parent)), Some(&bob.token)).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = app.get(&base, None).await;
    assert_err(status, &v, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn unsupported_features_answer_empty_not_unrecognized() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let (status, v) = app.get("/_matrix/client/v3/thirdparty/protocols", Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({})));
    let (status, v) = app.get("/_matrix/client/v3/voip/turnServer", Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(v["uris"], json!([]));
    let (status, v) = app.get("/_matrix/client/r0/account/3pid", Some(&alice.token)).await;
    assert_eq!((status.as_u16(), v), (200, json!({"threepids": []})));
    for path in [
        "/_matrix/client/v3/thirdparty/protocols",
        "/_matrix/client/v3/voip/turnServer",
        "/_matrix/client/v3/account/3pid",
    ] {
        let (status, v) = app.get(path, None).await;
        assert_err(status, &v, 401, "M_MISSING_TOKEN");
    }
}
