//! The client listener (`src/api/serve.rs`): HTTP/2 prior knowledge is still spoken,
//! keep-alive works, and the edge (NUL check, Matrix error JSON, CORS) applies to every
//! route. Memory per idle long-poll and hung-up clients: `tests/idle_poll_memory.rs`.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::TestApp;

/// A client that opens with the HTTP/2 preface (prior knowledge) is answered in HTTP/2: the
/// server's first frame is its SETTINGS frame.
#[tokio::test]
async fn http2_prior_knowledge_is_answered_in_http2() {
    let app = TestApp::spawn().await;
    let addr = app.running.as_ref().unwrap().addr;
    let first_frame = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
        let mut head = [0u8; 9];
        s.read_exact(&mut head).unwrap();
        head
    })
    .await
    .unwrap();
    assert_eq!(first_frame[3], 4, "frame type SETTINGS, got {first_frame:?}");
    assert_eq!(&first_frame[5..9], &[0, 0, 0, 0], "on stream 0");
}

/// HTTP/1.1 keep-alive: two requests on one connection, both answered.
#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let app = TestApp::spawn().await;
    let addr = app.running.as_ref().unwrap().addr;
    let answers = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!("GET /_matrix/client/versions HTTP/1.1\r\nhost: {addr}\r\n\r\n");
        let mut answers = Vec::new();
        for _ in 0..2 {
            s.write_all(req.as_bytes()).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            // Read until the JSON body is complete (`versions` ends with `}`).
            while got == 0 || !String::from_utf8_lossy(&buf[..got]).trim_end().ends_with('}') {
                let n = s.read(&mut buf[got..]).unwrap();
                assert!(n > 0, "connection closed early");
                got += n;
            }
            answers.push(String::from_utf8_lossy(&buf[..got]).into_owned());
        }
        answers
    })
    .await
    .unwrap();
    for a in answers {
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains("\"versions\""), "{a}");
    }
}

/// The edge applies to every route: CORS headers on a normal answer and on a preflight, a
/// NUL in the path refused as Matrix JSON, an unknown route answered as Matrix JSON.
#[tokio::test]
async fn the_edge_applies_cors_nul_check_and_matrix_errors() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(format!("{}/_matrix/client/versions", app.base))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("*"));
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/_matrix/client/v3/sync", app.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "preflight: {}", preflight.status());
    assert!(preflight.headers().contains_key("access-control-allow-methods"));

    let u = app.register("edge").await;
    let (status, body) = app.get("/_matrix/client/v3/rooms/%00x/state", Some(&u.token)).await;
    common::assert_err(status, &body, 400, "M_INVALID_PARAM");
    let (status, body) = app.get("/_matrix/client/v3/no/such/route", Some(&u.token)).await;
    common::assert_err(status, &body, 404, "M_UNRECOGNIZED");
}
