//! SessionRegistry: every refusal reason, attachment rules, slow consumers,
//! cleanup, the live/replay race, and replay exactness against a model.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use wsc_core::{ManualClock, MessageType, WebSocketMessage};
use wsc_reconnection::{
    Attached, BufferLimits, NotResumedReason, OverflowPolicy, RECENT_MESSAGE_IDS, ResumeOutcome,
    ResumeRequest, SessionConfig, SessionError, SessionRegistry, TokenSecret,
};

fn frame(t: MessageType) -> WebSocketMessage {
    WebSocketMessage::new(t, json!({"run_id": "r"}))
}

fn registry(config: SessionConfig) -> (SessionRegistry, ManualClock) {
    let clock = ManualClock::default();
    (SessionRegistry::with_clock(config, clock.shared()), clock)
}

fn request(a: &Attached, last_seq: u64) -> ResumeRequest {
    ResumeRequest {
        session_id: a.session_id.clone(),
        resume_token: a.resume_token.clone(),
        last_seq,
    }
}

async fn reason(r: &SessionRegistry, user: &str, req: &ResumeRequest) -> Option<NotResumedReason> {
    match r.resume(user, req).await.unwrap() {
        ResumeOutcome::Resumed { .. } => None,
        ResumeOutcome::NotResumed { reason } => Some(reason),
    }
}

#[tokio::test]
async fn every_refusal_reason_and_nothing_disturbed() {
    let (r, clock) = registry(SessionConfig {
        buffer: BufferLimits {
            max_frames: 3,
            policy: OverflowPolicy::DropLowPriority,
            ..Default::default()
        },
        session_ttl: Duration::from_secs(60),
        ..Default::default()
    });
    let a = r.open("alice").await.unwrap();
    for _ in 0..3 {
        r.publish(&a.session_id, frame(MessageType::AgentProgress))
            .await
            .unwrap();
    }
    let unknown = ResumeRequest {
        session_id: "0".repeat(32),
        ..request(&a, 0)
    };
    assert_eq!(
        reason(&r, "alice", &unknown).await,
        Some(NotResumedReason::UnknownSession)
    );
    let forged = ResumeRequest {
        resume_token: TokenSecret::random().token(&a.session_id, "alice", 1),
        ..request(&a, 0)
    };
    assert_eq!(
        reason(&r, "alice", &forged).await,
        Some(NotResumedReason::Unauthorized)
    );
    assert_eq!(
        reason(&r, "bob", &request(&a, 0)).await,
        Some(NotResumedReason::Unauthorized)
    );
    assert_eq!(
        reason(&r, "alice", &request(&a, 9)).await,
        Some(NotResumedReason::EpochMismatch)
    );
    // A fourth frame pushes seq 1 out: a replay after 0 would skip it.
    r.publish(&a.session_id, frame(MessageType::AgentProgress))
        .await
        .unwrap();
    assert_eq!(
        reason(&r, "alice", &request(&a, 0)).await,
        Some(NotResumedReason::Gap)
    );
    // None of that disturbed the session: the attachment still gets frames.
    let mut a = a;
    let seqs: Vec<u64> = std::iter::from_fn(|| a.frames.try_recv().ok())
        .map(|m| m.seq().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    // Expired after the TTL.
    r.detach(&a.session_id, a.attachment).await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(
        reason(&r, "alice", &request(&a, 4)).await,
        Some(NotResumedReason::Expired)
    );
    assert_eq!(r.cleanup_expired().await.unwrap(), 1);
    assert_eq!(
        reason(&r, "alice", &request(&a, 4)).await,
        Some(NotResumedReason::UnknownSession)
    );
}

#[tokio::test]
async fn losing_a_critical_frame_changes_the_epoch() {
    let (r, _) = registry(SessionConfig {
        buffer: BufferLimits {
            max_frames: 2,
            policy: OverflowPolicy::DropOldest,
            ..Default::default()
        },
        ..Default::default()
    });
    let a = r.open("alice").await.unwrap();
    for t in [
        MessageType::AgentStarted,
        MessageType::AgentThinking,
        MessageType::ToolExecuting,
    ] {
        r.publish(&a.session_id, frame(t)).await.unwrap();
    }
    assert_eq!(r.session(&a.session_id).await.unwrap().unwrap().epoch, 2);
    assert_eq!(
        reason(&r, "alice", &request(&a, 3)).await,
        Some(NotResumedReason::EpochMismatch)
    );
}

#[tokio::test]
async fn a_stale_connection_cannot_detach_the_new_one() {
    let (r, _) = registry(SessionConfig::default());
    let old = r.open("alice").await.unwrap();
    let ResumeOutcome::Resumed {
        attached: mut new, ..
    } = r.resume("alice", &request(&old, 0)).await.unwrap()
    else {
        panic!("resume refused");
    };
    r.detach(&old.session_id, old.attachment).await.unwrap();
    r.publish(&new.session_id, frame(MessageType::AgentStarted))
        .await
        .unwrap();
    assert_eq!(new.frames.recv().await.unwrap().seq(), Some(1));
    assert!(
        r.session(&new.session_id)
            .await
            .unwrap()
            .unwrap()
            .detached_at
            .is_none()
    );
    // The old attachment's receiver ended when the new one took over.
    let mut old = old;
    assert!(old.frames.recv().await.is_none());
}

/// Paused time: the grace a full queue waits passes at once.
#[tokio::test(start_paused = true)]
async fn a_slow_client_is_detached_but_stays_resumable() {
    let (r, _) = registry(SessionConfig {
        outbound_capacity: 4,
        ..Default::default()
    });
    let mut a = r.open("alice").await.unwrap();
    for _ in 0..10 {
        r.publish(&a.session_id, frame(MessageType::AgentThinking))
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while let Some(m) = a.frames.recv().await {
        got.push(m.seq().unwrap());
    }
    assert_eq!(got, [1, 2, 3, 4], "queue of 4, then detached");
    let ResumeOutcome::Resumed { replay, .. } = r.resume("alice", &request(&a, 4)).await.unwrap()
    else {
        panic!("resume refused");
    };
    assert_eq!(
        replay.iter().map(|m| m.seq().unwrap()).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
}

/// A client that reads, only slower than frames are published, is not
/// dropped: the publisher waits for room (backpressure) and every frame
/// arrives live, in order.
#[tokio::test(start_paused = true)]
async fn a_client_reading_slowly_is_kept_and_gets_every_frame() {
    let (r, _) = registry(SessionConfig {
        outbound_capacity: 4,
        ..Default::default()
    });
    let mut a = r.open("alice").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(m) = a.frames.recv().await {
            got.push(m.seq().unwrap());
            if got.len() == 50 {
                break;
            }
            // Well under the grace per frame, far slower than publishing.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        got
    });
    for _ in 0..50 {
        r.publish(&a.session_id, frame(MessageType::AgentResponseChunk))
            .await
            .unwrap();
    }
    assert_eq!(reader.await.unwrap(), (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn acks_trim_the_buffer() {
    let (r, _) = registry(SessionConfig::default());
    let a = r.open("alice").await.unwrap();
    for _ in 0..5 {
        r.publish(&a.session_id, frame(MessageType::AgentThinking))
            .await
            .unwrap();
    }
    r.ack(&a.session_id, 3).await.unwrap();
    assert_eq!(
        reason(&r, "alice", &request(&a, 2)).await,
        Some(NotResumedReason::Gap)
    );
    let ResumeOutcome::Resumed { replay, .. } = r.resume("alice", &request(&a, 3)).await.unwrap()
    else {
        panic!("resume refused");
    };
    assert_eq!(replay.len(), 2);
}

/// A frame published once by message id stays once after it left the
/// buffer (acknowledged, or evicted by newer frames): a backend retrying a
/// publish whose answer it lost never duplicates it. The memory is bounded:
/// the last `RECENT_MESSAGE_IDS` ids.
#[tokio::test]
async fn a_publish_once_stays_once_after_its_frame_left_the_buffer() {
    let (r, _) = registry(SessionConfig {
        buffer: BufferLimits {
            max_frames: 4,
            ..BufferLimits::default()
        },
        ..SessionConfig::default()
    });
    let a = r.open("alice").await.unwrap();
    let s = a.session_id.as_str();
    let once = |id: &str| frame(MessageType::AgentProgress).with_message_id(id);
    let seq = r.publish_once(s, once("p-1")).await.unwrap().unwrap();
    assert_eq!(r.publish_once(s, once("p-1")).await.unwrap(), None);
    // Acknowledged: the buffer no longer holds it.
    r.ack(s, seq).await.unwrap();
    assert_eq!(
        r.publish_once(s, once("p-1")).await.unwrap(),
        None,
        "after its ack"
    );
    // Evicted by newer frames.
    r.publish_once(s, once("p-2")).await.unwrap().unwrap();
    for _ in 0..10 {
        r.publish(s, frame(MessageType::AgentThinking))
            .await
            .unwrap();
    }
    assert_eq!(
        r.publish_once(s, once("p-2")).await.unwrap(),
        None,
        "after eviction"
    );
    // Bounded: the oldest ids are forgotten.
    for i in 0..RECENT_MESSAGE_IDS {
        r.publish_once(s, once(&format!("q-{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        r.publish_once(s, once(&format!("q-{}", RECENT_MESSAGE_IDS - 1)))
            .await
            .unwrap(),
        None
    );
    assert!(
        r.publish_once(s, once("p-1")).await.unwrap().is_some(),
        "forgotten"
    );
    // Plain publishes do not use up the memory of ids.
    let b = r.open("bob").await.unwrap();
    r.publish_once(&b.session_id, once("b-1"))
        .await
        .unwrap()
        .unwrap();
    for i in 0..2 * RECENT_MESSAGE_IDS {
        r.publish(&b.session_id, once(&format!("agent-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        r.publish_once(&b.session_id, once("b-1")).await.unwrap(),
        None
    );
}

/// Opens a session for `user` and detaches it at once (a client that
/// connected and went away), the clock one second on.
async fn abandoned(r: &SessionRegistry, clock: &ManualClock, user: &str) -> Attached {
    let a = r.open(user).await.unwrap();
    r.detach(&a.session_id, a.attachment).await.unwrap();
    clock.advance(Duration::from_secs(1));
    a
}

/// A user holds at most `max_sessions_per_user`: a new session reclaims
/// their session detached longest ago (whose resume is then `expired`);
/// with every one attached, the new one is refused.
#[tokio::test]
async fn one_user_cannot_hold_more_than_its_share_of_sessions() {
    let (r, clock) = registry(SessionConfig {
        max_sessions_per_user: 3,
        ..Default::default()
    });
    let oldest = abandoned(&r, &clock, "mallory").await;
    let second = abandoned(&r, &clock, "mallory").await;
    let _third = abandoned(&r, &clock, "mallory").await;
    let _fourth = r.open("mallory").await.unwrap();
    assert_eq!(r.sessions_of_user("mallory").await.unwrap().len(), 3);
    assert_eq!(
        reason(&r, "mallory", &request(&oldest, 0)).await,
        Some(NotResumedReason::Expired),
        "reclaimed: expired, not unknown"
    );
    assert_eq!(
        reason(&r, "mallory", &request(&second, 0)).await,
        None,
        "kept"
    );
    // Now all three are attached (the resume attached `second`).
    let (r2, _) = registry(SessionConfig {
        max_sessions_per_user: 2,
        ..Default::default()
    });
    let _a = r2.open("eve").await.unwrap();
    let _b = r2.open("eve").await.unwrap();
    assert_eq!(
        r2.open("eve").await.unwrap_err(),
        SessionError::TooManySessionsForUser(2)
    );
    // Others are not affected.
    assert!(r2.open("bob").await.is_ok());
}

/// A full table reclaims the sessions detached longest ago: abandoned
/// sessions cannot lock a new user out; only a table of attached sessions
/// refuses.
#[tokio::test]
async fn a_full_table_reclaims_abandoned_sessions_before_refusing() {
    let (r, clock) = registry(SessionConfig {
        max_sessions: 10,
        ..Default::default()
    });
    let mut flood = Vec::new();
    for i in 0..10 {
        flood.push(abandoned(&r, &clock, &format!("flood-{i}")).await);
    }
    assert_eq!(r.session_count().await.unwrap(), 10);
    let honest = r.open("honest").await.expect("room made");
    assert_eq!(
        reason(&r, "flood-0", &request(&flood[0], 0)).await,
        Some(NotResumedReason::Expired)
    );
    assert_eq!(reason(&r, "flood-9", &request(&flood[9], 0)).await, None);
    // Every session attached: refused.
    let (full, _) = registry(SessionConfig {
        max_sessions: 2,
        ..Default::default()
    });
    let _x = full.open("x").await.unwrap();
    let _y = full.open("y").await.unwrap();
    assert_eq!(
        full.open("z").await.unwrap_err(),
        SessionError::TooManySessions(2)
    );
    drop(honest);
}

/// Replay buffers have a byte budget across sessions: past it the sessions
/// detached longest ago are reclaimed; attached ones keep their frames.
#[tokio::test]
async fn replay_buffers_share_a_byte_budget() {
    let (r, clock) = registry(SessionConfig {
        max_buffered_bytes: 20_000,
        ..Default::default()
    });
    let big = || {
        WebSocketMessage::new(
            MessageType::AgentResponseChunk,
            json!({"delta": "x".repeat(1_000)}),
        )
    };
    let live = r.open("live").await.unwrap();
    let mut gone = Vec::new();
    for i in 0..10 {
        let a = abandoned(&r, &clock, &format!("away-{i}")).await;
        for _ in 0..3 {
            // An older session may be reclaimed under this one's publish,
            // or this one (the budget takes the oldest detached first).
            match r.publish(&a.session_id, big()).await {
                Ok(_) | Err(SessionError::UnknownSession(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        gone.push(a);
    }
    for _ in 0..3 {
        r.publish(&live.session_id, big()).await.unwrap();
    }
    assert!(r.session_count().await.unwrap() < 11, "some reclaimed");
    assert_eq!(
        reason(&r, "away-0", &request(&gone[0], 0)).await,
        Some(NotResumedReason::Expired)
    );
    assert!(
        r.session(&live.session_id).await.unwrap().is_some(),
        "attached: kept"
    );
    assert!(
        r.session(&gone[9].session_id).await.unwrap().is_some(),
        "newest: kept"
    );
}

/// Frames published while clients drop and resume reach them after the
/// replay with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_replay_race_loses_nothing() {
    const FRAMES: u64 = 3_000;
    let r = Arc::new(SessionRegistry::new(SessionConfig {
        buffer: BufferLimits {
            max_frames: 10_000,
            ..Default::default()
        },
        ..Default::default()
    }));
    let first = r.open("alice").await.unwrap();
    let session_id = first.session_id.clone();
    let publisher = tokio::spawn({
        let (r, id) = (r.clone(), session_id.clone());
        async move {
            for i in 0..FRAMES {
                r.publish(&id, frame(MessageType::AgentThinking))
                    .await
                    .unwrap();
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut seen: Vec<u64> = Vec::new();
    let mut attached = first;
    let mut round = 0u64;
    while seen.last().copied().unwrap_or(0) < FRAMES {
        round += 1;
        // Read a few live frames, then drop the connection abruptly.
        for _ in 0..(round % 7) * 20 {
            match tokio::time::timeout(Duration::from_millis(50), attached.frames.recv()).await {
                Ok(Some(m)) => seen.push(m.seq().unwrap()),
                _ => break,
            }
        }
        let last = seen.last().copied().unwrap_or(0);
        let req = request(&attached, last);
        r.detach(&attached.session_id, attached.attachment)
            .await
            .unwrap();
        match r.resume("alice", &req).await.unwrap() {
            ResumeOutcome::Resumed {
                attached: next,
                replay,
            } => {
                seen.extend(replay.iter().map(|m| m.seq().unwrap()));
                attached = next;
            }
            ResumeOutcome::NotResumed { reason } => panic!("refused: {reason}"),
        }
    }
    publisher.await.unwrap();
    assert!(round > 3);
    assert_eq!(seen, (1..=FRAMES).collect::<Vec<_>>());
}

#[derive(Clone, Debug)]
enum Op {
    Publish(u8),
    Read(u8),
    Disconnect,
    Resume,
    Ack,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..6).prop_map(Op::Publish),
        3 => (1u8..6).prop_map(Op::Read),
        1 => Just(Op::Disconnect),
        2 => Just(Op::Resume),
        1 => Just(Op::Ack),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random interleavings of publish, read, disconnect, resume and ack
    /// with a small buffer: a resume succeeds exactly when the model says
    /// every frame after last_seq is still held (the buffer keeps the newest
    /// `cap` unacked frames), and what the client observes is always 1..n.
    #[test]
    fn replay_is_exact_against_the_model(cap in 1usize..8, ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (r, _) = registry(SessionConfig {
                buffer: BufferLimits { max_frames: cap, policy: OverflowPolicy::DropOldest, ..Default::default() },
                outbound_capacity: 1_000,
                ..Default::default()
            });
            let mut a = r.open("u").await.unwrap();
            let mut connected = true;
            let (mut published, mut acked) = (0u64, 0u64);
            let mut seen: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Publish(n) => for _ in 0..n {
                        r.publish(&a.session_id, frame(MessageType::AgentProgress)).await.unwrap();
                        published += 1;
                    },
                    Op::Read(n) => if connected {
                        for _ in 0..n {
                            match a.frames.try_recv() {
                                Ok(m) => seen.push(m.seq().unwrap()),
                                Err(_) => break,
                            }
                        }
                    },
                    Op::Disconnect => {
                        r.detach(&a.session_id, a.attachment).await.unwrap();
                        connected = false;
                    }
                    Op::Ack => {
                        let last = seen.last().copied().unwrap_or(0);
                        r.ack(&a.session_id, last).await.unwrap();
                        acked = acked.max(last);
                    }
                    Op::Resume => {
                        let last = seen.last().copied().unwrap_or(0);
                        let held_from = acked.max(published.saturating_sub(cap as u64));
                        let model_ok = last >= held_from;
                        match r.resume("u", &request(&a, last)).await.unwrap() {
                            ResumeOutcome::Resumed { attached, replay } => {
                                prop_assert!(model_ok, "resumed but frames after {} are gone", last);
                                seen.extend(replay.iter().map(|m| m.seq().unwrap()));
                                a = attached;
                                connected = true;
                            }
                            ResumeOutcome::NotResumed { reason } => {
                                prop_assert!(!model_ok, "refused ({}) though the model holds them", reason);
                                prop_assert_eq!(reason, NotResumedReason::Gap);
                                // Start over with a fresh session.
                                a = r.open("u").await.unwrap();
                                connected = true;
                                published = 0;
                                acked = 0;
                                seen.clear();
                            }
                        }
                    }
                }
                let expected: Vec<u64> = (1..=seen.len() as u64).collect();
                prop_assert_eq!(&seen, &expected);
            }
            Ok(())
        })?;
    }
}
