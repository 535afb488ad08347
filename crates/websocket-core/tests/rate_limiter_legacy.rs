//! The legacy rate-limiter behaviours, through the facade's legacy names.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use websocket_core::rate_limiter::{
    AdaptiveRateLimiter, RateLimitConfig, RateLimitExceededException, RateLimiter,
    UserRateLimitState, WebSocketRateLimiter, check_rate_limit,
};
use websocket_core::time::{ManualClock, SharedClock};
use websocket_core::types::{MessageType, WebSocketMessage};

fn limiter(config: RateLimitConfig) -> (WebSocketRateLimiter, ManualClock) {
    let clock = ManualClock::default();
    let shared: SharedClock = clock.shared();
    (WebSocketRateLimiter::with_clock(config, shared), clock)
}

fn chat() -> WebSocketMessage {
    WebSocketMessage::new(MessageType::Chat, json!({"content": "hello"}))
}

#[tokio::test]
async fn within_limits_everything_is_admitted() {
    let (l, _) = limiter(RateLimitConfig::default());
    assert!(l.check_connection_limit("user-1").await);
    l.record_connection("user-1", "conn-1").await.unwrap();
    for _ in 0..10 {
        assert!(l.check_message_rate_limit("user-1").await);
        l.record_message("user-1", &chat()).await.unwrap();
    }
    assert_eq!(l.messages_in_window("user-1"), 10);
    assert_eq!(l.active_connections("user-1"), 1);
}

#[tokio::test]
async fn over_the_limits_the_errors_say_which() {
    let (l, _) = limiter(RateLimitConfig {
        max_connections_per_user: 2,
        max_messages_per_minute: 5,
        ..Default::default()
    });
    l.record_connection("u", "c1").await.unwrap();
    l.record_connection("u", "c2").await.unwrap();
    let err: RateLimitExceededException = l.record_connection("u", "c3").await.unwrap_err();
    assert!(err.to_string().contains("connection limit"), "{err}");
    for _ in 0..5 {
        l.record_message("u", &chat()).await.unwrap();
    }
    let err = l.record_message("u", &chat()).await.unwrap_err();
    assert!(err.to_string().contains("message rate limit"), "{err}");
    assert!(err.retry_after.is_some());
    assert!(!l.check_message_rate_limit("u").await);
}

#[tokio::test]
async fn the_window_slides() {
    let (l, clock) = limiter(RateLimitConfig::default()); // 60 per minute
    for _ in 0..60 {
        l.record_message("u", &chat()).await.unwrap();
        clock.advance(Duration::from_secs(1));
    }
    // The 60th was admitted; the 61st is refused.
    assert!(l.record_message("u", &chat()).await.is_err());
    // Once 15 of them are more than 60 s old, exactly 15 more are admitted.
    clock.advance(Duration::from_secs(15));
    let admitted = {
        let mut n = 0;
        for _ in 0..30 {
            n += usize::from(l.record_message("u", &chat()).await.is_ok());
        }
        n
    };
    assert_eq!(admitted, 15);
}

#[tokio::test]
async fn disconnect_cleans_up_the_connection() {
    let (l, _) = limiter(RateLimitConfig {
        max_connections_per_user: 1,
        ..Default::default()
    });
    l.record_connection("u", "c1").await.unwrap();
    assert!(!l.check_connection_limit("u").await);
    l.remove_connection("u", "c1").await;
    assert!(l.check_connection_limit("u").await);
    l.record_connection("u", "c2").await.unwrap();
    let state: UserRateLimitState = l.user_state("u").unwrap();
    assert_eq!(state.active_connections, ["c2"]);
}

#[tokio::test]
async fn users_are_isolated() {
    let (l, _) = limiter(RateLimitConfig {
        max_messages_per_minute: 3,
        ..Default::default()
    });
    for _ in 0..3 {
        l.record_message("alice", &chat()).await.unwrap();
    }
    assert!(l.record_message("alice", &chat()).await.is_err());
    l.record_message("bob", &chat()).await.unwrap();
    assert_eq!(l.messages_in_window("bob"), 1);
    assert_eq!(l.tracked_users(), 2);
}

#[tokio::test]
async fn every_message_type_counts() {
    let (l, _) = limiter(RateLimitConfig {
        max_messages_per_minute: 1_000,
        ..Default::default()
    });
    for t in MessageType::ALL {
        l.record_message("u", &WebSocketMessage::new(*t, json!({})))
            .await
            .unwrap();
    }
    assert_eq!(l.messages_in_window("u"), MessageType::ALL.len());
}

#[tokio::test]
async fn inactive_users_are_cleaned_up() {
    let (l, clock) = limiter(RateLimitConfig {
        cleanup_inactive_after: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    l.record_message("gone", &chat()).await.unwrap();
    l.record_connection("here", "c").await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(l.cleanup_expired_data().await, 1);
    assert_eq!(l.tracked_users(), 1);
    assert!(l.user_state("gone").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_records() {
    let (l, _) = limiter(RateLimitConfig {
        max_messages_per_minute: 40,
        ..Default::default()
    });
    let l = Arc::new(l);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move { l.record_message("u", &chat()).await.is_ok() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 40);
    assert_eq!(l.messages_in_window("u"), 40);
}

#[tokio::test]
async fn adaptive_limits_follow_load() {
    let clock = ManualClock::default();
    let a = AdaptiveRateLimiter::with_clock(8, Duration::from_secs(10), clock.shared());
    assert_eq!(a.remaining_quota("c"), 8);
    assert!(a.is_allowed("c", Some(0.7)).await); // limit 6
    assert_eq!(a.remaining_quota("c"), 5);
    assert!(a.is_allowed("c", Some(0.9)).await); // limit 4
    assert_eq!(a.remaining_quota("c"), 2);
    assert!(a.is_allowed("c", None).await);
    assert!(a.is_allowed("c", None).await);
    assert!(!a.is_allowed("c", None).await);
    clock.advance(Duration::from_secs(11));
    assert_eq!(a.remaining_quota("c"), 4, "pruned after the window");
}

#[tokio::test]
async fn the_process_wide_check_really_limits() {
    let w = Duration::from_secs(3600);
    let results: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(check_rate_limit("legacy-facade-test", 3, w).await);
        }
        v
    };
    assert_eq!(results, [true, true, true, false, false]);
    assert!(check_rate_limit("legacy-facade-test-other", 3, w).await);
}

#[test]
fn keyed_limits_per_user_and_endpoint() {
    let l = RateLimiter::new();
    l.set_rate_limit("Alice", "/API/chat", 2, Duration::from_secs(60));
    assert!(l.check_rate_limit("alice", "/api/chat?x=1"));
    assert!(l.check_rate_limit(" ALICE ", "/api/chat#frag"));
    assert!(!l.check_rate_limit("alice", "/api/chat"));
    assert!(l.check_rate_limit("bob", "/api/chat"));
}

/// The legacy package's signatures, called as legacy code calls them.
#[allow(dead_code)]
fn contract_compiles(l: &WebSocketRateLimiter, m: &WebSocketMessage) {
    let _: fn(RateLimitConfig) -> WebSocketRateLimiter = WebSocketRateLimiter::new;
    let _: fn(RateLimitConfig, SharedClock) -> WebSocketRateLimiter =
        WebSocketRateLimiter::with_clock;
    let _: &RateLimitConfig = l.config();
    let _: usize = l.tracked_users();
    let _: usize = l.active_connections("u");
    let _: usize = l.messages_in_window("u");
    let _: Option<UserRateLimitState> = l.user_state("u");
    let RateLimitConfig {
        max_connections_per_user: _,
        max_messages_per_minute: _,
        max_messages_per_hour: _,
        burst_allowance: _,
        backoff_multiplier: _,
        max_backoff: _,
        cleanup_inactive_after: _,
        ..
    } = RateLimitConfig::default();
    let _: Option<Duration> = RateLimitConfig::default().cleanup_inactive_after;
    let _: f64 = RateLimitConfig::default().backoff_multiplier;
    let e: Option<RateLimitExceededException> = None;
    let _: Option<Option<Duration>> = e.map(|e| e.retry_after);
    fn is_send<T: Send>(_: &T) {}
    is_send(&l.check_connection_limit("u"));
    is_send(&l.record_connection("u", "c"));
    is_send(&l.remove_connection("u", "c"));
    is_send(&l.check_message_rate_limit("u"));
    is_send(&l.record_message("u", m));
    is_send(&l.cleanup_expired_data());
    let _: fn(u32, Duration) -> AdaptiveRateLimiter = AdaptiveRateLimiter::new;
    let s = UserRateLimitState {
        user_id: String::new(),
        active_connections: Vec::new(),
        last_activity: websocket_core::time::Timestamp::from_unix_micros(0),
        violation_count: 0u32,
        current_backoff: Duration::ZERO,
        blocked_until: None,
        window_counts: Vec::new(),
    };
    let _ = s;
    fn shareable<T: Send + Sync>() {}
    shareable::<WebSocketRateLimiter>();
    shareable::<AdaptiveRateLimiter>();
    shareable::<RateLimiter>();
    is_send(&check_rate_limit("c", 1, Duration::from_secs(1)));
    let config = RateLimitConfig::default();
    let _: RateLimitConfig = config.clone();
    assert!(config == RateLimitConfig::default());
}
