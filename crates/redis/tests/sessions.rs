//! The Redis session store against a real redis-server: every step gives
//! the in-memory store's answer.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use wsc_core::{MessageType, Timestamp, WebSocketMessage, WireFrame};
use wsc_reconnection::{
    BufferLimits, MemorySessionStore, OverflowPolicy, SessionRecord, SessionStore,
};
use wsc_redis::{RedisSessionConfig, RedisSessionStore, connect};

/// Session `s` of user `cy`, new at `t0`.
fn session_s(t0: Timestamp) -> SessionRecord {
    SessionRecord {
        session_id: "s".into(),
        user_id: "cy".into(),
        epoch: 1,
        created_at: t0,
        detached_at: None,
        last_seq: 0,
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        critical: bool,
        bytes: usize,
        dt: i64,
    },
    Ack(u64),
    Replay(u64),
    Detach(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Steps of exactly 0.5 s and 1 s meet the age limit's boundary.
        6 => (any::<bool>(), 1usize..400, prop_oneof![Just(0i64), Just(500_000i64), Just(1_000_000i64), 0i64..3_000_000])
            .prop_map(|(critical, bytes, dt)| Op::Append { critical, bytes, dt }),
        1 => (0u64..4).prop_map(Op::Ack),
        2 => (0u64..4).prop_map(Op::Replay),
        1 => any::<bool>().prop_map(Op::Detach),
    ]
}

fn limits() -> impl Strategy<Value = BufferLimits> {
    (
        0usize..6,
        50usize..1_500,
        (1u64..12).prop_map(|k| k * 500),
        prop_oneof![
            Just(OverflowPolicy::DropOldest),
            Just(OverflowPolicy::DropNewest),
            Just(OverflowPolicy::DropLowPriority)
        ],
    )
        .prop_map(|(max_frames, max_bytes, age_ms, policy)| BufferLimits {
            max_frames,
            max_bytes,
            max_age: Duration::from_millis(age_ms),
            policy,
        })
}

fn shown(frames: Vec<WireFrame>) -> Vec<String> {
    frames.iter().map(|f| f.as_str().to_owned()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn redis_sessions_behave_exactly_like_memory(
        limits in limits(),
        ops in prop::collection::vec(op(), 1..50),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for url in support::urls() {
        rt.block_on(async {
            let redis = connect(&url).await.unwrap();
            let remote = RedisSessionStore::new(redis, RedisSessionConfig {
                prefix: support::unique_prefix("sessions"),
                limits,
                ..Default::default()
            });
            let memory = MemorySessionStore::new(limits, 10);
            let mut now = Timestamp::from_unix_micros(1_764_000_000_000_000);
            let record = SessionRecord {
                session_id: "s1".into(),
                user_id: "ann".into(),
                epoch: 1,
                created_at: now,
                detached_at: None,
                last_seq: 0,
            };
            prop_assert!(memory.create(record.clone()).await.unwrap());
            prop_assert!(remote.create(record).await.unwrap());
            let mut n = 0u64;
            for op in &ops {
                match op {
                    Op::Append { critical, bytes, dt } => {
                        now = Timestamp::from_unix_micros(now.as_unix_micros() + dt);
                        n += 1;
                        let t = if *critical { MessageType::ToolCompleted } else { MessageType::Pong };
                        // `bytes` of filler: frames of many sizes meet the byte bound.
                        let msg = WebSocketMessage::new(t, json!({"n": n, "pad": "x".repeat(*bytes)}))
                            .with_message_id(format!("m{n}"));
                        let want = support::append(&memory, "s1", msg.clone(), now).await.unwrap().unwrap();
                        let got = support::append(&remote, "s1", msg, now).await.unwrap().unwrap();
                        prop_assert_eq!(got.epoch, want.epoch);
                        prop_assert_eq!(got.push.seq, want.push.seq);
                        prop_assert_eq!(got.push.dropped, want.push.dropped, "{:?}", op);
                        prop_assert_eq!(got.push.dropped_critical, want.push.dropped_critical);
                        prop_assert_eq!(
                            got.push.frame.map(|f| f.as_str().to_owned()),
                            want.push.frame.map(|f| f.as_str().to_owned())
                        );
                    }
                    Op::Ack(back) => {
                        let last = memory.get("s1").await.unwrap().unwrap().last_seq;
                        let seq = last.saturating_sub(*back);
                        memory.ack("s1", seq).await.unwrap();
                        remote.ack("s1", seq).await.unwrap();
                    }
                    Op::Replay(back) => {
                        let last = memory.get("s1").await.unwrap().unwrap().last_seq;
                        for seq in [last.saturating_sub(*back), last + 1] {
                            let want = memory.replay_after("s1", seq).await.unwrap().unwrap().map(shown);
                            let got = remote.replay_after("s1", seq).await.unwrap().unwrap().map(shown);
                            prop_assert_eq!(got, want, "replay after {}", seq);
                        }
                    }
                    Op::Detach(detach) => {
                        let at = detach.then_some(now);
                        memory.set_detached("s1", at).await.unwrap();
                        remote.set_detached("s1", at).await.unwrap();
                    }
                }
                prop_assert_eq!(remote.get("s1").await.unwrap(), memory.get("s1").await.unwrap());
            }
            prop_assert_eq!(
                remote.buffered_for_user("ann").await.unwrap().iter().map(|f| f.as_str().to_owned()).collect::<Vec<_>>(),
                memory.buffered_for_user("ann").await.unwrap().iter().map(|f| f.as_str().to_owned()).collect::<Vec<_>>()
            );
            prop_assert!(remote.remove("s1").await.unwrap());
            prop_assert_eq!(remote.get("s1").await.unwrap(), None);
            prop_assert!(remote.replay_after("s1", 0).await.unwrap().is_none());
            Ok(())
        })?;
        }
    }
}

#[tokio::test]
async fn expiry_count_cap_and_unknown_sessions() {
    for url in support::urls() {
        expiry_count_cap_and_unknown_sessions_on(&url).await;
    }
}

async fn expiry_count_cap_and_unknown_sessions_on(url: &str) {
    let redis = connect(url).await.unwrap();
    let store = RedisSessionStore::new(
        redis,
        RedisSessionConfig {
            prefix: support::unique_prefix("expiry"),
            max_sessions: 2,
            ..Default::default()
        },
    );
    let t0 = Timestamp::from_unix_micros(1_764_000_000_000_000);
    let record = |id: &str| SessionRecord {
        session_id: id.into(),
        user_id: "bo".into(),
        epoch: 1,
        created_at: t0,
        detached_at: None,
        last_seq: 0,
    };
    assert!(store.create(record("a")).await.unwrap());
    assert!(store.create(record("b")).await.unwrap());
    assert!(!store.create(record("c")).await.unwrap(), "the cap holds");
    assert_eq!(store.session_count().await.unwrap(), 2);
    store.set_detached("a", Some(t0)).await.unwrap();
    let ttl = Duration::from_secs(60);
    let at = |s: u64| Timestamp::from_unix_micros(t0.as_unix_micros() + s as i64 * 1_000_000);
    assert!(store.expired(at(60), ttl).await.unwrap().is_empty());
    assert_eq!(
        store.expired(at(61), ttl).await.unwrap(),
        vec!["a".to_owned()]
    );
    store.set_detached("a", None).await.unwrap();
    assert!(
        store.expired(at(61), ttl).await.unwrap().is_empty(),
        "attached again"
    );
    assert!(
        support::append(
            &store,
            "nope",
            WebSocketMessage::new(MessageType::Pong, json!({})),
            t0
        )
        .await
        .unwrap()
        .is_none()
    );
    assert!(store.get("nope").await.unwrap().is_none());
    assert!(store.remove("a").await.unwrap());
    assert!(!store.remove("a").await.unwrap());
    assert_eq!(store.session_count().await.unwrap(), 1);
}

/// A publish retried after its answer was lost (Redis died after running
/// it) must not append the frame twice.
#[tokio::test]
async fn a_retried_append_with_the_same_message_id_is_not_duplicated() {
    for url in support::urls() {
        a_retried_append_with_the_same_message_id_is_not_duplicated_on(&url).await;
    }
}

async fn a_retried_append_with_the_same_message_id_is_not_duplicated_on(url: &str) {
    let redis = connect(url).await.unwrap();
    let store = RedisSessionStore::new(
        redis,
        RedisSessionConfig {
            prefix: support::unique_prefix("repeat"),
            ..Default::default()
        },
    );
    let t0 = Timestamp::from_unix_micros(1_764_000_000_000_000);
    assert!(store.create(session_s(t0)).await.unwrap());
    let msg =
        |id: &str| WebSocketMessage::new(MessageType::AgentThinking, json!({})).with_message_id(id);
    let first = support::append(&store, "s", msg("run-1-1"), t0)
        .await
        .unwrap()
        .unwrap();
    assert!(first.push.frame.is_some());
    let again = support::append(&store, "s", msg("run-1-1"), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.push.seq, first.push.seq);
    assert!(again.push.frame.is_none(), "nothing new to deliver");
    let next = support::append(&store, "s", msg("run-1-2"), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.push.seq, first.push.seq + 1);
    let frames = store.replay_after("s", 0).await.unwrap().unwrap().unwrap();
    assert_eq!(frames.len(), 2);
    // Frames without an id are never taken for repeats.
    let plain = || WebSocketMessage::new(MessageType::Pong, json!({}));
    let a = support::append(&store, "s", plain(), t0)
        .await
        .unwrap()
        .unwrap();
    let b = support::append(&store, "s", plain(), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.push.seq, a.push.seq + 1);
}

/// Message ids are remembered in two generations of 4 096: the last 4 096
/// at least are always known (a full generation is not simply dropped, which
/// would forget the id appended just before), and memory stays bounded.
#[tokio::test]
async fn message_ids_are_remembered_in_two_bounded_generations() {
    for url in support::urls() {
        message_ids_are_remembered_in_two_bounded_generations_on(&url).await;
    }
}

async fn message_ids_are_remembered_in_two_bounded_generations_on(url: &str) {
    let redis = connect(url).await.unwrap();
    let store = RedisSessionStore::new(
        redis,
        RedisSessionConfig {
            prefix: support::unique_prefix("generations"),
            ..Default::default()
        },
    );
    let t0 = Timestamp::from_unix_micros(1_764_000_000_000_000);
    assert!(store.create(session_s(t0)).await.unwrap());
    let append = |i: usize| {
        let msg = WebSocketMessage::new(MessageType::AgentProgress, json!({}))
            .with_message_id(format!("p-{i}"));
        let store = &store;
        async move { support::append(store, "s", msg, t0).await.unwrap().unwrap() }
    };
    let known = |i: usize| {
        let store = &store;
        async move { store.holds_message("s", &format!("p-{i}")).await.unwrap() }
    };
    for i in 0..4_097 {
        append(i).await;
    }
    // The first generation filled at 4 096; p-4096 started the next.
    assert!(known(0).await && known(4_095).await && known(4_096).await);
    assert!(append(4_095).await.push.frame.is_none(), "a repeat");
    for i in 4_097..8_193 {
        append(i).await;
    }
    // The second filled too: the first generation is gone, the last 4 096
    // and more are known.
    assert!(!known(0).await && !known(4_095).await, "bounded");
    assert!(known(4_096).await && known(8_191).await && known(8_192).await);
    assert!(append(0).await.push.frame.is_some(), "forgotten: new again");
}

/// Session `s`'s keys as they are now (`DUMP`), to put back later as a
/// replica that missed the appends in between would hold them.
struct Snapshot {
    keys: Vec<(String, Option<Vec<u8>>)>,
}

impl Snapshot {
    async fn take(redis: &mut wsc_redis::RedisConnection, prefix: &str) -> Snapshot {
        let mut keys = Vec::new();
        for kind in ["s", "f", "n"] {
            let key = format!("{prefix}{kind}:{{s}}");
            let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(redis)
                .await
                .unwrap();
            keys.push((key, dumped));
        }
        Snapshot { keys }
    }

    async fn restore(self, redis: &mut wsc_redis::RedisConnection) {
        for (key, dumped) in self.keys {
            let command = match dumped {
                Some(value) => {
                    let mut restore = redis::cmd("RESTORE");
                    restore.arg(&key).arg(60_000).arg(value).arg("REPLACE");
                    restore
                }
                // A key the replica did not have yet.
                None => {
                    let mut delete = redis::cmd("DEL");
                    delete.arg(&key);
                    delete
                }
            };
            command.query_async::<()>(redis).await.unwrap();
        }
    }
}

/// A failover that loses acknowledged appends (the promoted replica had
/// not received them; simulated by restoring the session's keys as they
/// were before the last two appends): the next append does not reuse their
/// seqs. A client that has every frame resumes without a hole; one that
/// lacks a lost frame is refused (a gap) — never a hole, never a seq twice.
#[tokio::test]
async fn appends_lost_in_a_failover_never_have_their_seqs_reused() {
    for url in support::urls() {
        lost_appends_on(&url).await;
    }
}

async fn lost_appends_on(url: &str) {
    let mut redis = connect(url).await.unwrap();
    let prefix = support::unique_prefix("failover");
    let store = RedisSessionStore::new(
        redis.clone(),
        RedisSessionConfig {
            prefix: prefix.clone(),
            ..Default::default()
        },
    );
    let t0 = Timestamp::from_unix_micros(1_764_000_000_000_000);
    assert!(store.create(session_s(t0)).await.unwrap());
    let frame = |n: u64| WebSocketMessage::new(MessageType::AgentThinking, json!({"n": n}));
    for n in 1..=3 {
        support::append(&store, "s", frame(n), t0)
            .await
            .unwrap()
            .unwrap();
    }
    // What the replica has when the master dies: the session after seq 3.
    let snapshot = Snapshot::take(&mut redis, &prefix).await;
    // Seqs 4 and 5 are acknowledged (and delivered), then lost.
    for n in 4..=5 {
        let appended = support::append(&store, "s", frame(n), t0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(appended.push.seq, n);
    }
    snapshot.restore(&mut redis).await;
    // The run goes on: its next frames are numbered after what was lost.
    let six = support::append(&store, "s", frame(6), t0)
        .await
        .unwrap()
        .unwrap();
    let seven = support::append(&store, "s", frame(7), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (six.push.seq, seven.push.seq),
        (6, 7),
        "lost seqs not reused"
    );
    // A client that had 5 resumes with 6 and 7; one that had 3 or 4 lacks a
    // lost frame: refused, told.
    let after_five = store.replay_after("s", 5).await.unwrap().unwrap().unwrap();
    let payloads: Vec<_> = after_five
        .iter()
        .map(|f| f.decode().unwrap().payload["n"].clone())
        .collect();
    assert_eq!(payloads, [json!(6), json!(7)], "on {url}");
    for lacking in [3, 4] {
        assert!(
            store
                .replay_after("s", lacking)
                .await
                .unwrap()
                .unwrap()
                .is_err(),
            "a client lacking a lost frame is refused (last seq {lacking}) on {url}"
        );
    }
}

/// The lost appends were made by one gateway and delivered by another (its
/// client is attached there, or resumed there): the delivering gateway's
/// next append does not reuse their seqs either.
#[tokio::test]
async fn a_gateway_that_delivered_lost_frames_numbers_after_them() {
    for url in support::urls() {
        delivered_then_lost_on(&url).await;
    }
}

async fn delivered_then_lost_on(url: &str) {
    let mut redis = connect(url).await.unwrap();
    let prefix = support::unique_prefix("delivered");
    let config = || RedisSessionConfig {
        prefix: prefix.clone(),
        ..Default::default()
    };
    // Gateway A runs the agent; gateway B holds the client.
    let a = RedisSessionStore::new(redis.clone(), config());
    let b = RedisSessionStore::new(redis.clone(), config());
    let t0 = Timestamp::from_unix_micros(1_764_000_000_000_000);
    assert!(a.create(session_s(t0)).await.unwrap());
    let frame = |n: u64| WebSocketMessage::new(MessageType::AgentThinking, json!({"n": n}));
    for n in 1..=3 {
        support::append(&a, "s", frame(n), t0)
            .await
            .unwrap()
            .unwrap();
    }
    let snapshot = Snapshot::take(&mut redis, &prefix).await;
    for n in 4..=5 {
        support::append(&a, "s", frame(n), t0)
            .await
            .unwrap()
            .unwrap();
    }
    // B hands 1..=5 to its client (what its catch-up reads).
    let delivered = b.replay_after("s", 0).await.unwrap().unwrap().unwrap();
    assert_eq!(delivered.last().and_then(|f| f.seq()), Some(5));
    // The failover loses 4 and 5 (and gateway A with them).
    snapshot.restore(&mut redis).await;
    // The client starts a new run through B: its frames come after 5.
    let next = support::append(&b, "s", frame(6), t0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next.push.seq, 6,
        "seqs the client has are not reused on {url}"
    );
    let after_five = b.replay_after("s", 5).await.unwrap().unwrap().unwrap();
    assert_eq!(after_five.len(), 1);
    assert!(b.replay_after("s", 3).await.unwrap().unwrap().is_err());
}

/// Start keys and the ids of published frames live apart: a backend
/// publishing 10 000 frames with message ids into a session never makes
/// it forget a client's start key (a retried start would run twice) — in
/// memory and in Redis (one Redis and a cluster).
#[tokio::test]
async fn publishes_never_evict_start_keys() {
    let memory = MemorySessionStore::new(Default::default(), 10);
    start_keys_survive_publishes(&memory).await;
    for url in support::urls() {
        let store = RedisSessionStore::new(
            connect(&url).await.unwrap(),
            RedisSessionConfig {
                prefix: support::unique_prefix("claims"),
                ..Default::default()
            },
        );
        start_keys_survive_publishes(&store).await;
    }
}

async fn start_keys_survive_publishes(store: &dyn SessionStore) {
    let t0 = Timestamp::from_unix_micros(1_764_000_000_000_000);
    assert!(store.create(session_s(t0)).await.unwrap());
    assert!(store.claim_key("s", "start:r1").await.unwrap());
    for i in 0..10_000 {
        let id = format!("p-{i}");
        let msg = WebSocketMessage::new(MessageType::AgentProgress, json!({}))
            .with_message_id(id.clone());
        support::append(store, "s", msg, t0).await.unwrap();
        store.remember_message("s", &id).await.unwrap();
    }
    assert!(
        store.holds_claimed("s", "start:r1").await.unwrap(),
        "still known"
    );
    assert!(
        !store.claim_key("s", "start:r1").await.unwrap(),
        "a retried start is a repeat"
    );
    assert!(
        !store.holds_claimed("s", "p-9999").await.unwrap(),
        "publish ids are not start keys"
    );
}
