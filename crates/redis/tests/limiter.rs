//! The Redis rate-limit store against a real redis-server: the same
//! decisions as the in-memory store, and shared limits across nodes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use wsc_core::{ManualClock, MessageType, Timestamp, WebSocketMessage};
use wsc_rate_limiter::{
    MemoryStore, RateLimitConfig, RateLimitStore, WebSocketRateLimiter, WindowLimit, WindowRequest,
};
use wsc_redis::{RedisRateLimitStore, connect};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[derive(Clone, Debug)]
struct Case {
    windows: Vec<WindowLimit>,
    burst: u32,
    /// (µs since the previous step, record?)
    steps: Vec<(i64, bool)>,
}

fn window() -> impl Strategy<Value = WindowLimit> {
    (1u64..8_000, 0u32..5, 1u32..12).prop_map(|(ms, limit, buckets)| WindowLimit {
        length: Duration::from_millis(ms),
        limit,
        buckets,
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(window(), 1..3),
        0u32..2,
        prop::collection::vec(
            (
                prop_oneof![Just(0i64), 0i64..2_000, 0i64..3_000_000, Just(-500_000i64)],
                prop::bool::weighted(0.8),
            ),
            1..60,
        ),
    )
        .prop_map(|(windows, burst, steps)| Case {
            windows,
            burst,
            steps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every decision (admitted, refusing window, retry time) and every
    /// count equals the in-memory store's, including a clock stepped back:
    /// on one Redis and on a Redis Cluster.
    #[test]
    fn redis_decides_exactly_like_memory(case in case()) {
        let rt = runtime();
        for url in support::urls() {
        rt.block_on(async {
            let redis = connect(&url).await.unwrap();
            let remote = RedisRateLimitStore::new(redis, support::unique_prefix("parity"));
            let memory = MemoryStore::new(16);
            let mut now = Timestamp::from_unix_micros(1_764_000_000_000_000);
            for (dt, record) in &case.steps {
                now = Timestamp::from_unix_micros(now.as_unix_micros() + dt);
                let request = WindowRequest {
                    key: "u",
                    windows: &case.windows,
                    burst: case.burst,
                    now,
                    record: *record,
                };
                let want = memory.decide(request).await.unwrap();
                let got = remote.decide(request).await.unwrap();
                prop_assert_eq!(got, want, "at {:?} in {:?}", now, case);
                let want = memory.counts("u", &case.windows, now).await.unwrap();
                let got = remote.counts("u", &case.windows, now).await.unwrap();
                prop_assert_eq!(got, want);
            }
            remote.forget("u").await.unwrap();
            prop_assert_eq!(
                remote.counts("u", &case.windows, now).await.unwrap(),
                vec![0; case.windows.len()]
            );
            Ok(())
        })?;
        }
    }
}

fn message() -> WebSocketMessage {
    WebSocketMessage::new(MessageType::Ping, serde_json::json!({}))
}

/// Two gateway nodes, each with its own limiter and Redis connection, share
/// one user's windows: together they admit exactly the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_users_windows() {
    for url in support::urls() {
        two_nodes_share_one_users_windows_on(&url).await;
    }
}

async fn two_nodes_share_one_users_windows_on(url: &str) {
    let prefix = support::unique_prefix("nodes");
    let clock = ManualClock::default();
    let config = RateLimitConfig {
        max_messages_per_minute: 10,
        max_messages_per_hour: 25,
        // Windows only: no violation backoff on top.
        base_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        ..Default::default()
    };
    let node = |redis| {
        WebSocketRateLimiter::with_store(
            config.clone(),
            clock.shared(),
            Arc::new(RedisRateLimitStore::new(redis, prefix.clone())),
        )
    };
    let a = Arc::new(node(connect(url).await.unwrap()));
    let b = Arc::new(node(connect(url).await.unwrap()));
    let mut tasks = Vec::new();
    for limiter in [a.clone(), b.clone(), a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..20 {
                if limiter.record_message("ann", &message()).await.is_ok() {
                    admitted += 1;
                }
            }
            admitted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 10, "the minute window holds across both nodes");
    // The refusal's retry is the window's, from either node.
    let refused = b.record_message("ann", &message()).await.unwrap_err();
    let retry = refused.retry_after.unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(61),
        "{retry:?}"
    );
    // A minute later the minute window admits again, up to the hour's 25.
    let mut later = 0;
    for minute in 1..=3 {
        clock.advance(Duration::from_secs(61));
        for limiter in [&a, &b] {
            for _ in 0..10 {
                if limiter.record_message("ann", &message()).await.is_ok() {
                    later += 1;
                }
            }
        }
        assert!(later <= 10 * minute);
    }
    assert_eq!(10 + later, 25, "the hour window holds across both nodes");
}

/// Concurrent decisions share pipelined round trips, and each caller gets
/// its own exact answer: key `k{i}` admits exactly `i + 1` of the 24
/// decisions made for it, all in flight at once with the other keys' (on a
/// cluster the keys fall in different slots: one call per slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_are_batched_and_each_gets_its_answer() {
    for url in support::urls() {
        batched_on(&url).await;
    }
}

async fn batched_on(url: &str) {
    let redis = connect(url).await.unwrap();
    let store = Arc::new(RedisRateLimitStore::new(
        redis,
        support::unique_prefix("batch"),
    ));
    let now = Timestamp::from_unix_micros(1_764_000_000_000_000);
    let mut tasks = Vec::new();
    for round in 0..24 {
        for i in 0..16u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let windows = [WindowLimit::new(Duration::from_secs(60), i + 1)];
                let key = format!("k{i}");
                let request = WindowRequest {
                    key: &key,
                    windows: &windows,
                    burst: 0,
                    now: Timestamp::from_unix_micros(now.as_unix_micros() + round),
                    record: true,
                };
                (i, store.decide(request).await.unwrap())
            }));
        }
    }
    let mut admitted = [0u32; 16];
    for task in tasks {
        let (i, decision) = task.await.unwrap();
        if decision.admitted {
            admitted[i as usize] += 1;
        } else {
            assert_eq!(decision.refused_window, Some(0));
            assert!(decision.retry_at.is_some(), "a refusal says when");
        }
    }
    let want: Vec<u32> = (1..=16).collect();
    assert_eq!(admitted.to_vec(), want, "each key admits exactly its limit");
    let stats = store.batch_stats();
    assert_eq!(stats.decisions, 24 * 16);
    assert!(
        stats.round_trips < stats.decisions / 2,
        "decisions in flight together share round trips: {stats:?}"
    );
}

/// A key outlives its admissions: the first write of a tick (an admission,
/// or a refusal that moves the head) sets its expiry to more than a window
/// ahead, which covers the tick's other admissions; those leave it.
#[tokio::test]
async fn a_key_expires_only_after_its_window() {
    for url in support::urls() {
        expires_on(&url).await;
    }
}

async fn expires_on(url: &str) {
    let redis = connect(url).await.unwrap();
    let prefix = support::unique_prefix("ttl");
    let store = RedisRateLimitStore::new(redis.clone(), prefix.clone());
    let windows = [WindowLimit::new(Duration::from_secs(60), 2)];
    let t0 = 1_764_000_000_000_000;
    let decide = |at: i64| {
        let store = store.clone();
        async move {
            let request = WindowRequest {
                key: "ann",
                windows: &windows,
                burst: 0,
                now: Timestamp::from_unix_micros(at),
                record: true,
            };
            store.decide(request).await.unwrap()
        }
    };
    let key = format!("{prefix}rl:ann");
    let pttl = || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            redis::cmd("PTTL")
                .arg(&key)
                .query_async::<i64>(&mut redis)
                .await
                .unwrap()
        }
    };
    assert!(decide(t0).await.admitted);
    assert!(pttl().await > 60_000, "made: it lives a window and more");
    // As if the expiry were about to fire.
    let about_to_expire = || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            redis::cmd("PEXPIRE")
                .arg(&key)
                .arg(5_000)
                .query_async::<()>(&mut redis)
                .await
                .unwrap();
        }
    };
    // The next admission (a tick later) pushes it out again.
    about_to_expire().await;
    assert!(decide(t0 + 2_000_000).await.admitted);
    assert!(pttl().await > 60_000, "an admission pushes the expiry out");
    // A refusal (the window is full) in a new tick writes the moved head,
    // and a full window's expiry with it.
    about_to_expire().await;
    assert!(!decide(t0 + 4_000_000).await.admitted);
    assert!(pttl().await > 60_000, "a write pushes the expiry out");
    // Admissions within the tick of that write leave it: it covers them.
    assert!(decide(t0 + 63_000_000).await.admitted);
    let written = pttl().await;
    assert!(written > 60_000, "the first admission of a tick writes it");
    assert!(decide(t0 + 63_500_000).await.admitted);
    assert!(pttl().await <= written, "the common path leaves the expiry");
}
