//! Connection churn: 1 000 connect/disconnect cycles leave no connection,
//! permit, session or memory behind. Its own binary because it counts the
//! process's live heap bytes with a counting allocator.

use std::alloc::System;
use std::time::Duration;

use cap::Cap;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsc_server::GatewayConfig;

mod support;
use support::*;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const USER: &str = "churner";
const TTL: Duration = Duration::from_secs(300);

/// `n` cycles of: connect, one ping answered, close (half of them cleanly,
/// half by dropping the socket).
async fn churn(r: &Running, n: usize) {
    for i in 0..n {
        let (mut ws, _) = connect(r, &format!("user_id={USER}")).await;
        ping_pong(&mut ws).await;
        if i % 2 == 0 {
            ws.send(Message::Close(None)).await.unwrap();
            while ws.next().await.is_some() {}
        }
    }
}

/// Waits (up to 10 s of the paused clock) until the gateway holds no
/// connection and no session: connections end, then sessions pass their
/// TTL and are swept.
async fn settle(r: &Running) {
    for _ in 0..500 {
        let open = r
            .gateway
            .performance_monitor()
            .get_system_wide_metrics()
            .total_active_connections;
        if open == 0 && r.gateway.rate_limiter().active_connections(USER) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    r.gateway.sessions().cleanup_expired().await.unwrap();
}

/// On paused tokio time (real sockets): waiting out the session TTL takes
/// no real time.
#[tokio::test(start_paused = true)]
async fn a_thousand_connect_disconnect_cycles_leak_nothing() {
    let r = start_on_tokio_time(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_connections_per_user: 5,
            max_handshakes_per_ip: 0,
            max_messages_per_ip_per_minute: Some(0),
            max_messages_per_minute: 100_000,
            max_messages_per_hour: 100_000,
            ..Default::default()
        },
        sessions: wsc_server::SessionsConfig {
            session_ttl: TTL,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // Warm up with the same load: first-use allocations and the high-water
    // capacity of maps (1 000 sessions detached at once) happen here.
    churn(&r, 1_000).await;
    settle(&r).await;
    let before = ALLOCATOR.allocated();

    churn(&r, 1_000).await;
    settle(&r).await;
    let after = ALLOCATOR.allocated();

    assert_eq!(r.gateway.stats().connections, 2_000);
    let system = r.gateway.performance_monitor().get_system_wide_metrics();
    assert_eq!(system.total_active_connections, 0, "connections left open");
    assert_eq!(
        r.gateway.rate_limiter().active_connections(USER),
        0,
        "permits leaked"
    );
    assert_eq!(
        r.gateway.sessions().session_count().await.unwrap(),
        0,
        "sessions leaked"
    );
    // Every permit is really free: the user can open its full allowance.
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(connect(&r, &format!("user_id={USER}")).await);
    }
    // A leak of even one session (about 500 bytes) or one connection's
    // state (kilobytes) per cycle would be hundreds of KiB here.
    let grown = after.saturating_sub(before);
    println!("live heap before {before} B, after 1 000 cycles {after} B (+{grown} B)");
    assert!(
        grown < 128 * 1024,
        "the heap grew by {grown} bytes over 1 000 cycles"
    );
}
