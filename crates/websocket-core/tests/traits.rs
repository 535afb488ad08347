//! What the legacy contract asks beyond the signatures: every config implements
//! Default, Clone, PartialEq and Debug; reports and snapshots Clone, Debug
//! and Serialize; monitors, limiters and handlers are Send + Sync.

use serde::Serialize;
use websocket_core::event_monitor as em;
use websocket_core::performance_monitor_core as pm;
use websocket_core::rate_limiter as rl;
use websocket_core::reconnection_handler as rh;

fn config<T: Default + Clone + PartialEq + std::fmt::Debug>() {}
fn snapshot<T: Clone + std::fmt::Debug + Serialize>() {}
fn shared<T: Send + Sync + 'static>() {}

#[test]
fn configs_snapshots_and_shared_types() {
    config::<em::EventMonitorConfig>();
    config::<rl::RateLimitConfig>();
    config::<pm::PerformanceMonitorConfig>();
    config::<pm::PerformanceThresholds>();
    config::<rh::ReconnectionConfig>();

    snapshot::<em::EventTracker>();
    snapshot::<em::EventMetrics>();
    snapshot::<em::HealthReport>();
    snapshot::<rl::UserRateLimitState>();
    snapshot::<pm::PerformanceMetrics>();
    snapshot::<pm::ThroughputMetrics>();
    snapshot::<pm::PerformanceAlert>();
    snapshot::<pm::PerformanceReport>();
    snapshot::<pm::SystemMetrics>();
    snapshot::<rh::ReconnectionSession>();
    snapshot::<rh::ReconnectionState>();
    snapshot::<rh::ReconnectionMetrics>();

    shared::<em::ChatEventMonitor>();
    shared::<rl::WebSocketRateLimiter>();
    shared::<rl::AdaptiveRateLimiter>();
    shared::<rl::RateLimiter>();
    shared::<pm::WebSocketPerformanceMonitor>();
    shared::<rh::WebSocketReconnectionHandler>();
    shared::<rh::SessionRegistry>();
}

#[test]
fn a_user_snapshot_serializes() {
    let clock = websocket_core::time::ManualClock::default();
    let limiter =
        rl::WebSocketRateLimiter::with_clock(rl::RateLimitConfig::default(), clock.shared());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(limiter.record_connection("u", "c1")).unwrap();
    let value = serde_json::to_value(limiter.user_state("u").unwrap()).unwrap();
    assert_eq!(value["active_connections"], serde_json::json!(["c1"]));
    assert_eq!(value["user_id"], "u");
}
