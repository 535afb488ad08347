//! Two session registries ("nodes") sharing one Redis: a client attached on
//! one node gets, exactly once and in order, the frames both nodes publish,
//! across drops and resumes that alternate between the nodes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_reconnection::{
    BufferLimits, ResumeOutcome, ResumeRequest, SessionConfig, SessionRegistry, TokenSecret,
};
use wsc_redis::{RedisSessionConfig, RedisSessionStore, connect, spawn_announcement_listener};

struct Node {
    registry: Arc<SessionRegistry>,
    _listener: wsc_redis::AnnouncementListener,
}

async fn node(url: &str, prefix: &str) -> Node {
    let limits = BufferLimits {
        max_frames: 100_000,
        max_bytes: 64 << 20,
        ..Default::default()
    };
    let store = RedisSessionStore::new(
        connect(url).await.unwrap(),
        RedisSessionConfig {
            prefix: prefix.to_owned(),
            limits,
            ..Default::default()
        },
    );
    let channel = store.channel();
    let registry = Arc::new(SessionRegistry::with_store(
        SessionConfig {
            buffer: limits,
            outbound_capacity: 100_000,
            // Nodes sharing sessions share the token secret.
            secret: TokenSecret::from_bytes([7; 32]),
            ..Default::default()
        },
        wsc_core::SystemClock::shared(),
        Arc::new(store),
    ));
    let listener = spawn_announcement_listener(url, channel, registry.clone()).unwrap();
    Node {
        registry,
        _listener: listener,
    }
}

fn frame(n: u64) -> WebSocketMessage {
    WebSocketMessage::new(MessageType::AgentThinking, json!({"n": n}))
}

/// Reads frames from `rx` until `want` seqs after `last` arrived (or the
/// channel ends), checking each is exactly the next.
async fn read(rx: &mut mpsc::Receiver<Arc<WebSocketMessage>>, last: &mut u64, want: u64) {
    let target = *last + want;
    while *last < target {
        let f = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("frames arrive")
            .expect("still attached");
        assert_eq!(f.seq, Some(*last + 1), "no gap, no duplicate");
        *last += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_published_on_either_node_reach_the_attached_one_exactly_once() {
    let url = support::shared_url();
    let prefix = support::unique_prefix("nodes");
    let a = node(&url, &prefix).await;
    let b = node(&url, &prefix).await;
    // Let both listeners subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut attached = b.registry.open("ann").await.unwrap();
    let session = attached.session_id.clone();
    let mut last = 0u64;
    let mut published = 0u64;
    let nodes = [&a, &b];
    for round in 0..6u64 {
        // Both nodes publish concurrently while the client is attached.
        let mut tasks = Vec::new();
        for n in nodes {
            let registry = n.registry.clone();
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    registry.publish(&session, frame(i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        published += 200;
        // Read part of them, then drop the connection (no detach: as if the
        // socket died), and resume on the other node.
        read(&mut attached.frames, &mut last, 150 + round).await;
        let target = nodes[(round % 2) as usize];
        let request = ResumeRequest {
            session_id: session.clone(),
            resume_token: attached.resume_token.clone(),
            last_seq: last,
        };
        let resumed = target.registry.resume("ann", &request).await.unwrap();
        let ResumeOutcome::Resumed {
            attached: again,
            replay,
        } = resumed
        else {
            panic!("resume refused: {resumed:?}");
        };
        for f in replay {
            assert_eq!(f.seq, Some(last + 1), "the replay continues exactly");
            last += 1;
        }
        attached = again;
    }
    // A last burst from the node the client is not on (after round 5 it
    // is on node B), delivered only through the announcements.
    let other = nodes[0];
    for i in 0..50 {
        other.registry.publish(&session, frame(i)).await.unwrap();
    }
    published += 50;
    let missing = published - last;
    read(&mut attached.frames, &mut last, missing).await;
    assert_eq!(last, published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_detach_on_the_old_node_does_not_detach_the_new_one() {
    let url = support::shared_url();
    let prefix = support::unique_prefix("owner");
    let a = node(&url, &prefix).await;
    let b = node(&url, &prefix).await;
    let first = a.registry.open("bo").await.unwrap();
    let request = ResumeRequest {
        session_id: first.session_id.clone(),
        resume_token: first.resume_token.clone(),
        last_seq: 0,
    };
    let ResumeOutcome::Resumed { .. } = b.registry.resume("bo", &request).await.unwrap() else {
        panic!("resume refused");
    };
    // Node A notices its old socket closed only now.
    a.registry
        .detach(&first.session_id, first.attachment)
        .await
        .unwrap();
    let record = b
        .registry
        .session(&first.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.detached_at, None, "still attached on node B");
}
