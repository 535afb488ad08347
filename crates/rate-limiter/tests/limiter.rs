//! WebSocketRateLimiter behaviour: backoff, connections, IPs, cleanup,
//! eviction, stores, concurrency, and the window guarantee end to end.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;
use serde_json::json;
use wsc_core::{Clock, ManualClock, MessageType, Timestamp, WebSocketMessage};
use wsc_rate_limiter::{
    FailurePolicy, LimitKind, MemoryStore, RateLimitConfig, RateLimitStore, StoreError,
    WebSocketRateLimiter, WindowDecision, WindowLimit, WindowRequest,
};

fn msg() -> WebSocketMessage {
    WebSocketMessage::new(MessageType::Chat, json!({"content": "x"}))
}

fn limiter(config: RateLimitConfig) -> (WebSocketRateLimiter, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_unix_micros(1_700_000_000_000_000));
    (
        WebSocketRateLimiter::with_clock(config, clock.shared()),
        clock,
    )
}

fn per_minute(n: u32) -> RateLimitConfig {
    RateLimitConfig {
        max_messages_per_minute: n,
        ..Default::default()
    }
}

#[tokio::test]
async fn first_refusal_waits_for_the_window_then_backoff_escalates_per_burst() {
    let (l, clock) = limiter(per_minute(2));
    l.record_message("u", &msg()).await.unwrap();
    l.record_message("u", &msg()).await.unwrap();
    // Burst 1: window retry only, however many frames it has.
    let first = l.record_message("u", &msg()).await.unwrap_err();
    assert_eq!(
        first.kind,
        LimitKind::MessageWindow {
            window: Duration::from_secs(60)
        }
    );
    assert_eq!(first.retry_after, Some(Duration::from_secs(61)));
    for _ in 0..5 {
        let again = l.record_message("u", &msg()).await.unwrap_err();
        assert_eq!(again.retry_after, Some(Duration::from_secs(61)));
    }
    assert_eq!(l.user_state("u").unwrap().violation_count, 1);
    clock.advance(Duration::from_secs(61));
    l.record_message("u", &msg()).await.unwrap();
    l.record_message("u", &msg()).await.unwrap();
    // Burst 2: blocked for base_backoff (1 s) on top, the window still rules.
    let second = l.record_message("u", &msg()).await.unwrap_err();
    let state = l.user_state("u").unwrap();
    assert_eq!(state.violation_count, 2);
    assert_eq!(state.current_backoff, Duration::from_secs(1));
    assert_eq!(second.retry_after, Some(Duration::from_secs(61)));
    clock.advance(Duration::from_secs(61));
    l.record_message("u", &msg()).await.unwrap();
    l.record_message("u", &msg()).await.unwrap();
    l.record_message("u", &msg()).await.unwrap_err();
    assert_eq!(
        l.user_state("u").unwrap().current_backoff,
        Duration::from_secs(2)
    );
}

#[tokio::test]
async fn backoff_blocks_beyond_the_window_and_is_capped_and_decays() {
    let config = RateLimitConfig {
        max_messages_per_minute: 0, // only a 1 s window
        max_messages_per_hour: 0,
        extra_windows: vec![WindowLimit::new(Duration::from_secs(1), 1)],
        base_backoff: Duration::from_secs(10),
        backoff_multiplier: 3.0,
        max_backoff: Duration::from_secs(50),
        violation_decay: Duration::from_secs(600),
        ..Default::default()
    };
    let (l, clock) = limiter(config);
    let mut backoffs = Vec::new();
    for _ in 0..5 {
        l.record_message("u", &msg()).await.unwrap();
        let err = l.record_message("u", &msg()).await.unwrap_err();
        let state = l.user_state("u").unwrap();
        backoffs.push(state.current_backoff);
        if state.current_backoff > Duration::ZERO {
            assert_eq!(err.retry_after, Some(state.current_backoff));
            // While blocked: refused as backoff with the remaining block.
            clock.advance(Duration::from_secs(2));
            let blocked = l.record_message("u", &msg()).await.unwrap_err();
            assert_eq!(blocked.kind, LimitKind::ViolationBackoff);
            assert_eq!(
                blocked.retry_after,
                Some(state.current_backoff - Duration::from_secs(2))
            );
            assert!(!l.check_message_rate_limit("u").await);
        }
        clock.advance(Duration::from_secs(60));
    }
    let s = Duration::from_secs;
    assert_eq!(backoffs, [s(0), s(10), s(30), s(50), s(50)]);
    // After a quiet violation_decay, the count starts over.
    clock.advance(Duration::from_secs(601));
    l.record_message("u", &msg()).await.unwrap();
    l.record_message("u", &msg()).await.unwrap_err();
    assert_eq!(l.user_state("u").unwrap().violation_count, 1);
}

#[tokio::test]
async fn connections_are_idempotent_distinct_and_permits_release() {
    let (l, _) = limiter(RateLimitConfig {
        max_connections_per_user: 2,
        ..Default::default()
    });
    l.record_connection("u", "a").unwrap();
    l.record_connection("u", "a").unwrap();
    assert_eq!(l.active_connections("u"), 1);
    l.record_connection("u", "b").unwrap();
    let err = l.record_connection("u", "c").unwrap_err();
    assert_eq!(err.kind, LimitKind::Connections);
    assert_eq!(err.retry_after, None);
    assert!(err.to_string().contains("connection limit"));
    assert!(!l.check_connection_limit("u"));
    l.remove_connection("u", "a");
    l.remove_connection("u", "a");
    assert_eq!(l.active_connections("u"), 1);
    {
        let permit = l.acquire_connection("u", "p").unwrap();
        assert_eq!(permit.connection_id(), "p");
        assert!(l.acquire_connection("u", "q").is_err());
        assert!(l.acquire_connection("u", "p").is_err(), "one permit per id");
    }
    assert_eq!(l.active_connections("u"), 1);
    assert_eq!(l.user_state("u").unwrap().active_connections, ["b"]);
}

#[tokio::test]
async fn ip_handshakes_window_and_failure_backoff() {
    let (l, clock) = limiter(RateLimitConfig {
        max_handshakes_per_ip: 3,
        ip_window: Duration::from_secs(60),
        ip_failures_before_backoff: 2,
        ip_base_backoff: Duration::from_secs(4),
        ..Default::default()
    });
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    for _ in 0..3 {
        l.check_handshake(ip).unwrap();
    }
    let err = l.check_handshake(ip).unwrap_err();
    assert_eq!(err.kind, LimitKind::IpHandshakes);
    assert_eq!(err.retry_after, Some(Duration::from_secs(61)));
    l.check_handshake(other).unwrap();

    clock.advance(Duration::from_secs(61));
    l.record_handshake_failure(ip);
    l.check_handshake(ip).unwrap();
    l.record_handshake_failure(ip);
    let err = l.check_handshake(ip).unwrap_err();
    assert_eq!(err.kind, LimitKind::IpBackoff);
    assert_eq!(err.retry_after, Some(Duration::from_secs(4)));
    clock.advance(Duration::from_secs(4));
    l.check_handshake(ip).unwrap();
    l.record_handshake_failure(ip);
    assert_eq!(
        l.check_handshake(ip).unwrap_err().retry_after,
        Some(Duration::from_secs(8))
    );
    clock.advance(Duration::from_secs(8));
    l.record_handshake_success(ip);
    l.record_handshake_failure(ip);
    l.check_handshake(ip).unwrap();
}

proptest! {
    /// Whatever an IP sends while it is blocked (failures, handshakes, at
    /// any pace), its block ends when its first `Retry-After` said: a block
    /// is never extended by the requests it refuses.
    #[test]
    fn a_block_is_never_extended_by_what_it_refuses(
        failures_before in 1u32..20,
        steps in prop::collection::vec((any::<bool>(), 0u64..400), 1..60),
    ) {
        let (l, clock) = limiter(RateLimitConfig {
            ip_failures_before_backoff: 5,
            ip_base_backoff: Duration::from_secs(1),
            max_handshakes_per_ip: 0,
            ..Default::default()
        });
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        for _ in 0..failures_before {
            l.record_handshake_failure(ip);
        }
        let Err(first) = l.check_handshake(ip) else {
            prop_assert!(failures_before < 5);
            return Ok(());
        };
        let until = first.retry_after.unwrap();
        let mut elapsed = Duration::ZERO;
        for (fail, ms) in steps {
            let step = Duration::from_millis(ms);
            if elapsed + step >= until {
                break;
            }
            clock.advance(step);
            elapsed += step;
            if fail {
                l.record_handshake_failure(ip);
            }
            let err = l.check_handshake(ip).unwrap_err();
            prop_assert_eq!(err.retry_after, Some(until - elapsed), "Retry-After tells the truth");
        }
        clock.advance(until - elapsed);
        prop_assert!(l.check_handshake(ip).is_ok(), "free when it said");
    }
}

proptest! {
    /// Frames from one IP, any users, any pacing: at most the IP's budget
    /// is admitted in any 60 s, and a frame the IP refuses costs its user
    /// nothing (the user's own window still admits its full limit).
    #[test]
    fn an_ips_frames_stay_within_its_budget_and_refusals_cost_users_nothing(
        steps in prop::collection::vec((0usize..6, 0u64..3_000), 1..200),
    ) {
        let (l, clock) = limiter(RateLimitConfig {
            max_messages_per_minute: 8,
            max_messages_per_hour: 0,
            max_messages_per_ip_per_minute: 12,
            burst_allowance: 0,
            ..Default::default()
        });
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
        let mut admitted: Vec<Duration> = Vec::new();
        let mut elapsed = Duration::ZERO;
        for (user, ms) in steps {
            clock.advance(Duration::from_millis(ms));
            elapsed += Duration::from_millis(ms);
            let r = rt.block_on(l.record_message_from(&format!("u{user}"), ip, &msg()));
            match r {
                Ok(()) => admitted.push(elapsed),
                Err(e) => prop_assert!(
                    e.kind == LimitKind::IpMessages || e.kind.is_message_limit(),
                    "{e}"
                ),
            }
        }
        for (i, at) in admitted.iter().enumerate() {
            let in_minute = admitted[i..]
                .iter()
                .take_while(|t| **t < *at + Duration::from_secs(60))
                .count();
            prop_assert!(in_minute <= 12, "{in_minute} admitted within a minute");
        }
        // A user the IP refused can still send its own full limit from
        // another IP.
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8));
        let fresh = "never-admitted";
        clock.advance(Duration::from_secs(61));
        for i in 0..12 {
            let filler = format!("filler-{}", i % 3);
            prop_assert!(rt.block_on(l.record_message_from(&filler, ip, &msg())).is_ok());
        }
        let refused = rt.block_on(l.record_message_from(fresh, ip, &msg())).unwrap_err();
        prop_assert_eq!(refused.kind, LimitKind::IpMessages);
        for _ in 0..8 {
            prop_assert!(rt.block_on(l.record_message_from(fresh, other, &msg())).is_ok());
        }
    }
}

#[tokio::test]
async fn cleanup_drops_only_inactive_users_without_connections() {
    let (l, clock) = limiter(RateLimitConfig {
        cleanup_inactive_after: Some(Duration::from_secs(300)),
        ..Default::default()
    });
    l.record_message("idle", &msg()).await.unwrap();
    l.record_connection("connected", "c1").unwrap();
    clock.advance(Duration::from_secs(200));
    l.record_message("recent", &msg()).await.unwrap();
    clock.advance(Duration::from_secs(101));
    assert_eq!(l.cleanup_expired_data(), 1);
    assert!(l.user_state("idle").is_none());
    assert!(l.user_state("connected").is_some() && l.user_state("recent").is_some());
    assert_eq!(l.tracked_users(), 2);
}

#[tokio::test]
async fn background_cleanup_runs_on_the_injected_clock() {
    let (l, clock) = limiter(RateLimitConfig {
        cleanup_inactive_after: Some(Duration::from_secs(30)),
        ..Default::default()
    });
    l.record_message("idle", &msg()).await.unwrap();
    let handle = l.spawn_cleanup(Duration::from_secs(10));
    while l.tracked_users() > 0 {
        tokio::task::yield_now().await;
    }
    handle.stop().await;
    assert!(clock.sleeps().iter().all(|d| *d == Duration::from_secs(10)));
}

#[tokio::test]
async fn a_flood_of_new_ids_stays_within_the_cap() {
    let (l, _) = limiter(RateLimitConfig {
        max_tracked_users: 100,
        ..Default::default()
    });
    l.record_connection("holder", "c").unwrap();
    for i in 0..10_000 {
        l.record_message(&format!("flood-{i}"), &msg())
            .await
            .unwrap();
    }
    assert!(l.tracked_users() <= 100, "{}", l.tracked_users());
    assert_eq!(
        l.active_connections("holder"),
        1,
        "users with connections are kept"
    );
    assert!(l.evicted_users() >= 9_900);
}

#[tokio::test]
async fn memory_store_behaves_like_the_local_windows() {
    let clock = ManualClock::new(Timestamp::from_unix_micros(1_700_000_000_000_000));
    let config = per_minute(3);
    let local = WebSocketRateLimiter::with_clock(config.clone(), clock.shared());
    let shared =
        WebSocketRateLimiter::with_store(config, clock.shared(), Arc::new(MemoryStore::default()));
    for step in 0..40u64 {
        clock.advance(Duration::from_millis(step * 997 % 7_000));
        let a = local.record_message("u", &msg()).await;
        let b = shared.record_message("u", &msg()).await;
        assert_eq!(a, b, "step {step}");
    }
}

/// A store that fails every call.
#[derive(Debug, Default)]
struct DownStore(AtomicUsize);

#[async_trait]
impl RateLimitStore for DownStore {
    async fn decide(&self, _: WindowRequest<'_>) -> Result<WindowDecision, StoreError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::new("connection refused"))
    }
    async fn counts(
        &self,
        _: &str,
        _: &[WindowLimit],
        _: Timestamp,
    ) -> Result<Vec<u32>, StoreError> {
        Err(StoreError::new("connection refused"))
    }
    async fn forget(&self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::new("connection refused"))
    }
}

#[tokio::test]
async fn store_failures_follow_the_policy() {
    let clock = ManualClock::default();
    let open = WebSocketRateLimiter::with_store(
        per_minute(1),
        clock.shared(),
        Arc::new(DownStore::default()),
    );
    open.record_message("u", &msg()).await.unwrap();
    open.record_message("u", &msg()).await.unwrap();
    assert_eq!(open.store_failures(), 2);
    let closed = WebSocketRateLimiter::with_store(
        RateLimitConfig {
            store_failure: FailurePolicy::FailClosed,
            ..per_minute(1)
        },
        clock.shared(),
        Arc::new(DownStore::default()),
    );
    let err = closed.record_message("u", &msg()).await.unwrap_err();
    assert_eq!(err.kind, LimitKind::StoreUnavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_racing_admit_exactly_the_limit() {
    let (l, _) = limiter(RateLimitConfig {
        max_messages_per_minute: 100,
        max_messages_per_hour: 1_000,
        ..Default::default()
    });
    let admitted = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (l, admitted) = (l.clone(), admitted.clone());
            tokio::spawn(async move {
                for _ in 0..1_000 {
                    if l.record_message("hot", &msg()).await.is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), 100);
    assert_eq!(l.messages_in_window("hot"), 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// End to end through the limiter with two windows: no window of length
    /// W ever holds more than N admitted messages.
    #[test]
    fn no_window_ever_holds_more_than_its_limit(
        per_second in 1u32..6,
        per_ten in 1u32..30,
        gaps in prop::collection::vec(0u64..700, 1..300),
    ) {
        let config = RateLimitConfig {
            max_messages_per_minute: 0,
            max_messages_per_hour: 0,
            extra_windows: vec![
                WindowLimit::new(Duration::from_secs(1), per_second),
                WindowLimit::new(Duration::from_secs(10), per_ten),
            ],
            base_backoff: Duration::from_millis(300),
            ..Default::default()
        };
        let (l, clock) = limiter(config);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut admitted: Vec<i64> = Vec::new();
        for gap in gaps {
            clock.advance(Duration::from_millis(gap));
            if rt.block_on(l.record_message("u", &msg())).is_ok() {
                admitted.push(clock.now().as_unix_micros());
            }
        }
        for (w, n) in [(1_000_000i64, per_second), (10_000_000, per_ten)] {
            for &a in &admitted {
                let inside = admitted.iter().filter(|&&b| b > a - w && b <= a).count() as u32;
                prop_assert!(inside <= n, "{inside} > {n} within {w} µs");
            }
        }
    }
}
