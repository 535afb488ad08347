//! Bytes per tracked user with the default configuration, measured with a
//! counting global allocator (the `cap` crate): every heap byte the limiter
//! requests for 100 000 users — map tables, eviction queue, keys, window
//! rings — divided by the number of users. This binary holds one test so
//! nothing else allocates meanwhile.

use std::alloc::System;

use cap::Cap;
use serde_json::json;
use wsc_core::{ManualClock, MessageType, WebSocketMessage};
use wsc_rate_limiter::{RateLimitConfig, WebSocketRateLimiter};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

#[test]
fn a_user_costs_at_most_512_bytes_with_the_default_config() {
    const USERS: usize = 100_000;
    let ids: Vec<String> = (0..USERS).map(|i| format!("user-{i:06}")).collect();
    let msg = WebSocketMessage::new(MessageType::Chat, json!({}));
    let clock = ManualClock::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let before = ALLOCATOR.allocated();
    let limiter = WebSocketRateLimiter::with_clock(RateLimitConfig::default(), clock.shared());
    for id in &ids {
        rt.block_on(limiter.record_message(id, &msg)).unwrap();
    }
    let after = ALLOCATOR.allocated();
    assert_eq!(limiter.tracked_users(), USERS);

    let per_user = (after - before) as f64 / USERS as f64;
    let estimate = limiter.approximate_user_bytes() as f64 / USERS as f64;
    println!("measured {per_user:.0} bytes per user (the limiter's own estimate: {estimate:.0})");
    assert!(per_user <= 512.0, "{per_user:.0} bytes per user");
    // The estimate accounts for what the allocator saw, within 20 %.
    assert!(
        (estimate - per_user).abs() / per_user < 0.2,
        "{estimate} vs {per_user}"
    );
    drop(limiter);
}
