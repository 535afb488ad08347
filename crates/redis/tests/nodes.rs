//! Two session registries ("nodes") sharing one Redis: a client attached on
//! one node gets, exactly once and in order, the frames both nodes publish,
//! across drops and resumes that alternate between the nodes — also when
//! its node's store calls fail for a while (a Redis Cluster shard in
//! failover), simulated here with a Redis ACL user whose rights are taken
//! away and given back.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_reconnection::{
    BufferLimits, ResumeOutcome, ResumeRequest, SessionConfig, SessionRegistry, TokenSecret,
};
use wsc_redis::{RedisSessionConfig, RedisSessionStore, connect, spawn_announcement_listener};

struct Node {
    registry: Arc<SessionRegistry>,
    _listener: Option<wsc_redis::AnnouncementListener>,
}

async fn node(url: &str, prefix: &str) -> Node {
    node_with(url, Some(url), prefix).await
}

/// A node whose store talks to Redis through `store_url` and whose
/// announcement listener (if any) through `listen_url`.
async fn node_with(store_url: &str, listen_url: Option<&str>, prefix: &str) -> Node {
    let limits = BufferLimits {
        max_frames: 100_000,
        max_bytes: 64 << 20,
        ..Default::default()
    };
    let store = RedisSessionStore::new(
        connect(store_url).await.unwrap(),
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
    let listener =
        listen_url.map(|url| spawn_announcement_listener(url, channel, registry.clone()).unwrap());
    Node {
        registry,
        _listener: listener,
    }
}

/// A Redis ACL user on the shared server whose rights a test can take away
/// (its store calls then fail with `NOPERM`) and give back.
struct AclUser {
    admin: redis::aio::MultiplexedConnection,
    name: String,
    url: String,
}

impl AclUser {
    async fn create(url: &str) -> AclUser {
        let admin = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let name = support::unique_prefix("acl").replace(':', "-");
        let mut user = AclUser {
            admin,
            url: url.replacen("redis://", &format!("redis://{name}:secret@"), 1),
            name,
        };
        user.set(&["on", ">secret", "~*", "&*", "+@all"]).await;
        user
    }

    async fn set(&mut self, rules: &[&str]) {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(&self.name).arg(rules);
        let () = cmd.query_async(&mut self.admin).await.unwrap();
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let mut admin = self.admin.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            let _: Result<(), _> = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(name)
                .query_async(&mut admin)
                .await;
        });
    }
}

fn frame(n: u64) -> WebSocketMessage {
    WebSocketMessage::new(MessageType::AgentThinking, json!({"n": n}))
}

/// Reads frames from `rx` until `want` seqs after `last` arrived (or the
/// channel ends), checking each is exactly the next.
async fn read(rx: &mut wsc_reconnection::LiveFrames, last: &mut u64, want: u64) {
    let target = *last + want;
    while *last < target {
        let f = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("frames arrive")
            .expect("still attached");
        assert_eq!(f.seq(), Some(*last + 1), "no gap, no duplicate");
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
            assert_eq!(f.seq(), Some(last + 1), "the replay continues exactly");
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

/// A frame announced while the attached node could not read the store
/// (the announcement is gone, and it was the last one) still arrives once
/// the store answers again: the listener keeps catching up until it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_announced_while_the_store_failed_arrive_when_it_is_back() {
    let url = support::shared_url();
    let prefix = support::unique_prefix("behind");
    let mut user = AclUser::create(&url).await;
    let a = node(&url, &prefix).await;
    let b = node_with(&user.url, Some(&url), &prefix).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut attached = b.registry.open("be").await.unwrap();
    let session = attached.session_id.clone();
    let mut last = 0;
    for i in 0..3 {
        a.registry.publish(&session, frame(i)).await.unwrap();
    }
    read(&mut attached.frames, &mut last, 3).await;

    // Node B's store calls fail; A publishes the run's last two frames.
    user.set(&["-@all"]).await;
    for i in 3..5 {
        a.registry.publish(&session, frame(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        attached.frames.try_recv().is_err(),
        "nothing can arrive while B cannot read"
    );
    user.set(&["+@all"]).await;
    read(&mut attached.frames, &mut last, 2).await;
    assert_eq!(last, 5);
}

/// Catching up every session does not stop at the first one whose store
/// call fails: the others get their frames (on a Redis Cluster one shard
/// can be down while the others answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_goes_past_a_session_whose_store_call_fails() {
    let url = support::shared_url();
    let prefix = support::unique_prefix("past");
    let mut user = AclUser::create(&url).await;
    let a = node(&url, &prefix).await;
    // No listener on B: only `catch_up_all` brings it what A publishes.
    let b = node_with(&user.url, None, &prefix).await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(b.registry.open("cu").await.unwrap());
    }
    for s in &sessions {
        a.registry.publish(&s.session_id, frame(0)).await.unwrap();
    }
    // B may read only the keys of every other session.
    let readable: Vec<String> = sessions
        .iter()
        .step_by(2)
        .map(|s| format!("~*{}*", s.session_id))
        .collect();
    let mut rules = vec!["resetkeys"];
    rules.extend(readable.iter().map(String::as_str));
    user.set(&rules).await;
    let caught_up = b.registry.catch_up_all().await;
    assert!(caught_up.is_err(), "half the sessions could not be read");
    for (i, s) in sessions.iter_mut().enumerate() {
        let got = s.frames.try_recv();
        if i % 2 == 0 {
            let frame = got.expect("a readable session was caught up");
            assert_eq!(frame.seq(), Some(1));
        } else {
            assert!(got.is_err(), "an unreadable session got nothing");
        }
    }
    // Its rights back, the rest catch up on the next call.
    user.set(&["~*"]).await;
    b.registry.catch_up_all().await.unwrap();
    for s in sessions.iter_mut().skip(1).step_by(2) {
        assert_eq!(s.frames.try_recv().unwrap().seq(), Some(1));
    }
}

/// Through Redis too, a frame is its one serialization: what the node
/// holding the client hands its connection (frames it published, and
/// frames another node published, read back from Redis) and what a resume
/// on either node replays are the bytes serializing the numbered message
/// gives — nothing is parsed and written again on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_replayed_text_is_the_published_serialization() {
    for url in support::urls() {
        let prefix = support::unique_prefix("bytes");
        let (a, b) = (node(&url, &prefix).await, node(&url, &prefix).await);
        let mut attached = b.registry.open("ann").await.unwrap();
        let messages: Vec<WebSocketMessage> = (0..12u64)
            .map(|n| {
                let t = if n % 3 == 0 {
                    MessageType::ToolCompleted
                } else {
                    MessageType::AgentProgress
                };
                WebSocketMessage::new(
                    t,
                    json!({"n": n, "text": "a \"quoted\" } and \u{e9}", "seq": "not the seq"}),
                )
                .with_message_id(format!("m-{n}"))
                .with_timestamp(wsc_core::Timestamp::from_unix_micros(1_700_000_000_000_000))
            })
            .collect();
        for (n, m) in messages.iter().enumerate() {
            // Half published where the client is, half on the other node.
            let publisher = if n % 2 == 0 { &a } else { &b };
            publisher
                .registry
                .publish(&attached.session_id, m.clone())
                .await
                .unwrap();
        }
        let mut written = Vec::new();
        while written.len() < messages.len() {
            let f = tokio::time::timeout(Duration::from_secs(10), attached.frames.recv())
                .await
                .expect("frames arrive")
                .expect("still attached");
            written.push(f);
        }
        b.registry
            .detach(&attached.session_id, attached.attachment)
            .await
            .unwrap();
        let request = ResumeRequest {
            session_id: attached.session_id.clone(),
            resume_token: attached.resume_token.clone(),
            last_seq: 0,
        };
        let ResumeOutcome::Resumed { replay, .. } =
            a.registry.resume("ann", &request).await.unwrap()
        else {
            panic!("not resumed");
        };
        for (i, m) in messages.iter().enumerate() {
            let wire = wsc_core::serialize(&m.clone().with_seq(i as u64 + 1));
            assert_eq!(written[i].as_str(), wire, "delivered {i}");
            assert_eq!(replay[i].as_str(), wire, "replayed {i}");
        }
    }
}
