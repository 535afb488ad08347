//! The rate-limit layer per request beside `tower_governor`'s, in the same
//! run: an axum router with one trivial route, each request carrying its
//! peer address (`ConnectInfo`, 1 024 clients in turn), limits high enough
//! never to refuse; `wsc` with one window and with two (minute and hour).
//! (One key alone cannot pass 65 535 admissions per window tick: the
//! windows count in 16 bits, which keeps a user under 512 bytes.)
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use wsc_rate_limiter::{KeyBy, RateLimitConfig, RateLimitLayer, WebSocketRateLimiter};

/// A request from the `i`-th of 1 024 client addresses.
fn request(i: u32) -> Request<Body> {
    let mut r = Request::get("/").body(Body::empty()).expect("a request");
    let [_, _, a, b] = (i % 1024).to_be_bytes();
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 0, a, b], 40_000))));
    r
}

fn route() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn wsc(hour: u32) -> Router {
    let limiter = WebSocketRateLimiter::new(RateLimitConfig {
        max_messages_per_minute: 100_000_000,
        max_messages_per_hour: hour,
        ..Default::default()
    });
    route().layer(RateLimitLayer::new(
        limiter,
        KeyBy::PeerIp {
            trusted_proxies: Vec::new(),
        },
    ))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let governor = {
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .expect("a governor config");
        route().layer(GovernorLayer::new(config))
    };
    let mut group = c.benchmark_group("layer/per_request");
    group.throughput(Throughput::Elements(1));
    for (name, app) in [
        ("no_layer", route()),
        ("tower_governor", governor),
        ("wsc_1_window", wsc(0)),
        ("wsc_2_windows", wsc(1_000_000_000)),
    ] {
        let mut i = 0u32;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let response = rt
                    .block_on(app.clone().oneshot(request(i)))
                    .expect("infallible");
                assert!(response.status().is_success());
                black_box(response);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
