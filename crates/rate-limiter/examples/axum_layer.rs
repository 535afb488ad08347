//! The rate limiter as a tower layer in an axum app: 5 requests a minute
//! per client address, on an HTTP route and a WebSocket upgrade alike; the
//! sixth request is answered 429 with `Retry-After` and a JSON body.
//!
//! `cargo run -p wsc-rate-limiter --features tower --example axum_layer`

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::{Router, routing::get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsc_rate_limiter::{KeyBy, RateLimitConfig, RateLimitLayer, WebSocketRateLimiter};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let limiter = WebSocketRateLimiter::new(RateLimitConfig {
        max_messages_per_minute: 5,
        max_messages_per_hour: 0,
        burst_allowance: 0,
        ..Default::default()
    });
    let app = Router::new()
        .route("/search", get(|| async { "results\n" }))
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async { ws.on_upgrade(|_socket| async {}) }),
        )
        // Behind a reverse proxy, list it here: its X-Forwarded-For is read.
        .layer(RateLimitLayer::new(
            limiter,
            KeyBy::PeerIp {
                trusted_proxies: vec![],
            },
        ));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    for i in 1..=6 {
        let answer = get_search(addr).await?;
        let status = answer.lines().next().unwrap_or_default();
        println!("request {i}: {status}");
        if i == 6 {
            assert!(status.contains("429"), "the sixth request is refused");
            let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
            println!("  {body}");
        }
    }
    Ok(())
}

/// One raw HTTP/1.1 GET /search; the whole answer.
async fn get_search(addr: SocketAddr) -> std::io::Result<String> {
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket
        .write_all(b"GET /search HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await?;
    Ok(answer)
}
