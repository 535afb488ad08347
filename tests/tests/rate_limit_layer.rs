//! `RateLimitLayer` in an axum app over real sockets: each key kind (the
//! peer address, behind a trusted proxy too; a header; a function of the
//! request; an axum extractor), HTTP routes and WebSocket upgrades, and the 429's status,
//! `Retry-After` and JSON body.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsc_rate_limiter::{KeyBy, RateLimitConfig, RateLimitLayer, WebSocketRateLimiter};

/// An app whose routes allow 3 requests a minute per key.
async fn app(key: KeyBy) -> SocketAddr {
    let limiter = WebSocketRateLimiter::new(RateLimitConfig {
        max_messages_per_minute: 3,
        max_messages_per_hour: 0,
        burst_allowance: 0,
        ..Default::default()
    });
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(|_socket| async {}) }),
        )
        .layer(RateLimitLayer::new(limiter, key));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

/// One raw HTTP/1.1 GET: status, head, body.
async fn get_raw(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    (status, head.to_owned(), body.to_owned())
}

fn retry_after(head: &str) -> Option<u64> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

#[tokio::test]
async fn keyed_by_a_header_each_key_has_its_own_window_and_refusals_are_429_json() {
    let addr = app(KeyBy::Header("x-api-key".parse().unwrap())).await;
    for _ in 0..3 {
        assert_eq!(get_raw(addr, "/hello", "X-Api-Key: a\r\n").await.0, 200);
    }
    let (status, head, body) = get_raw(addr, "/hello", "X-Api-Key: a\r\n").await;
    assert_eq!(status, 429);
    let secs = retry_after(&head).expect("Retry-After");
    assert!((1..=61).contains(&secs), "{secs}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "rate_limited", "{v}");
    assert!(v["retry_after_ms"].as_u64().is_some(), "{v}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    // Another key, and no key at all, pass.
    assert_eq!(get_raw(addr, "/hello", "X-Api-Key: b\r\n").await.0, 200);
    assert_eq!(get_raw(addr, "/hello", "").await.0, 200);
}

#[tokio::test]
async fn keyed_by_peer_address_and_behind_a_trusted_proxy_by_the_client_it_names() {
    let addr = app(KeyBy::PeerIp {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
    })
    .await;
    let via = |client: &'static str| format!("X-Forwarded-For: {client}\r\n");
    for _ in 0..3 {
        assert_eq!(get_raw(addr, "/hello", &via("203.0.113.1")).await.0, 200);
    }
    assert_eq!(get_raw(addr, "/hello", &via("203.0.113.1")).await.0, 429);
    assert_eq!(get_raw(addr, "/hello", &via("203.0.113.2")).await.0, 200);
    // Untrusted: the peer (127.0.0.1) is the key, whatever it claims.
    let addr = app(KeyBy::PeerIp {
        trusted_proxies: Vec::new(),
    })
    .await;
    for i in 0..3 {
        let claim = format!("X-Forwarded-For: 198.51.100.{i}\r\n");
        assert_eq!(get_raw(addr, "/hello", &claim).await.0, 200);
    }
    assert_eq!(get_raw(addr, "/hello", &via("198.51.100.99")).await.0, 429);
}

#[tokio::test]
async fn keyed_by_a_function_of_the_request_it_limits_websocket_upgrades_too() {
    let addr = app(KeyBy::custom(|parts| {
        parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("user_id="))
            .map(str::to_owned)
    }))
    .await;
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user_id=ann"))
            .await
            .expect("upgraded");
        drop(ws);
    }
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user_id=ann")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().get("retry-after").is_some());
        }
        other => panic!("the fourth upgrade was not refused: {other:?}"),
    }
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user_id=bob"))
            .await
            .is_ok()
    );
}

/// The application's own authentication, as an axum extractor: the user a
/// bearer token names (a toy scheme: the token is `user-NAME`).
struct AuthUser(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuthUser {
    type Rejection = axum::http::StatusCode;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer user-"))
            .map(|name| AuthUser(name.to_owned()))
            .ok_or(axum::http::StatusCode::UNAUTHORIZED)
    }
}

#[tokio::test]
async fn keyed_by_an_axum_extractor_per_authenticated_user_on_routes_and_upgrades() {
    let addr = app(KeyBy::extractor(|AuthUser(name)| {
        Some(format!("user:{name}"))
    }))
    .await;
    let ann = "Authorization: Bearer user-ann\r\n";
    for _ in 0..3 {
        assert_eq!(get_raw(addr, "/hello", ann).await.0, 200);
    }
    let (status, head, body) = get_raw(addr, "/hello", ann).await;
    assert_eq!(status, 429, "{head}");
    assert!(retry_after(&head).is_some_and(|s| s >= 1), "{head}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "rate_limited");
    // ann's upgrade is counted in the same window: refused.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/ws"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", "Bearer user-ann".parse().unwrap());
    match tokio_tungstenite::connect_async(request.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("ann's upgrade was not refused: {other:?}"),
    }
    // Another user has a window of their own, for upgrades too.
    request
        .headers_mut()
        .insert("authorization", "Bearer user-bob".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    // A request the extractor rejects passes uncounted (the route answers).
    for _ in 0..5 {
        assert_eq!(get_raw(addr, "/hello", "").await.0, 200);
    }
}
