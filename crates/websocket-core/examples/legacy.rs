//! The facade used the legacy way: the old Python package's module paths,
//! type names and `async` methods, unchanged.
//!
//! `cargo run -p websocket-core --example legacy`

use serde_json::json;
use websocket_core::event_monitor::{AgentSession, ChatEventMonitor, EventMonitorConfig};
use websocket_core::rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
use websocket_core::types::{MessageType, WebSocketMessage};

#[tokio::main]
async fn main() {
    // rate_limiter: one user, two connections at most.
    let limiter = WebSocketRateLimiter::new(RateLimitConfig {
        max_connections_per_user: 2,
        ..RateLimitConfig::default()
    });
    limiter
        .record_connection("user-1", "conn-1")
        .await
        .expect("first");
    limiter
        .record_connection("user-1", "conn-2")
        .await
        .expect("second");
    let refused = limiter.record_connection("user-1", "conn-3").await;
    println!("third connection: {refused:?}");
    assert!(refused.is_err());
    let hello = WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi"}));
    assert!(limiter.record_message("user-1", &hello).await.is_ok());

    // event_monitor: a run's lifecycle, validated.
    let monitor = ChatEventMonitor::new(EventMonitorConfig::default());
    monitor
        .start_session_tracking("run-1", AgentSession::new("user-1"))
        .await;
    for t in [
        MessageType::AgentStarted,
        MessageType::AgentThinking,
        MessageType::ToolExecuting,
        MessageType::ToolCompleted,
        MessageType::AgentCompleted,
    ] {
        let event = WebSocketMessage::new(t, json!({"tool_name": "search"}));
        monitor
            .record_event("run-1", event)
            .await
            .expect("recorded");
    }
    let verdict = monitor.validate_session_completion("run-1").await;
    println!(
        "run-1: {verdict:?}; health {:?}",
        monitor.check_health().await.status
    );
    assert_eq!(verdict, Ok(true));
    // Legacy names of the types still read the same.
    println!(
        "{} = {}",
        MessageType::AgentCompleted.legacy_name(),
        MessageType::AgentCompleted.as_str()
    );
}
