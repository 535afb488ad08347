//! A frame is serialized once: for any publish sequence, the text handed
//! to the live connection, the text the buffer keeps and the text a resume
//! replays are the same bytes — the same allocation, not equal copies —
//! and they are exactly what serializing the numbered message gives.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use wsc_core::{ManualClock, MessageType, WebSocketMessage, WireFrame, serialize};
use wsc_reconnection::{
    BufferLimits, MemorySessionStore, ResumeOutcome, ResumeRequest, SessionConfig, SessionRegistry,
    SessionStore,
};

fn arb_message() -> impl Strategy<Value = WebSocketMessage> {
    (
        prop::sample::select(vec![
            MessageType::AgentStarted,
            MessageType::AgentThinking,
            MessageType::ToolExecuting,
            MessageType::ToolCompleted,
            MessageType::AgentCompleted,
            MessageType::AgentProgress,
            MessageType::AgentError,
            MessageType::SystemMessage,
        ]),
        prop::collection::btree_map(
            "[a-z_]{1,6}|seq|type",
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                ".{0,16}".prop_map(Value::from),
                Just(json!({"seq": 1, "nested": ["}", "\"seq\":2"]})),
            ],
            0..5,
        ),
        prop::option::of("[a-z0-9-]{1,12}"),
        prop::option::of(0i64..(1 << 50)),
    )
        .prop_map(|(t, payload, id, ts)| {
            let mut m = WebSocketMessage::new(t, Value::Object(payload.into_iter().collect()));
            m.message_id = id;
            m.timestamp = ts.map(wsc_core::Timestamp::from_unix_micros);
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn written_buffered_and_replayed_are_the_same_bytes(
        messages in prop::collection::vec(arb_message(), 1..40),
        read_first in 0usize..40,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let config = SessionConfig {
                buffer: BufferLimits { max_frames: 100, max_bytes: 1 << 24, ..Default::default() },
                ..Default::default()
            };
            let store = Arc::new(MemorySessionStore::new(config.buffer, 10));
            let registry = SessionRegistry::with_store(
                config,
                ManualClock::default().shared(),
                store.clone(),
            );
            let mut first = registry.open("ann").await.unwrap();
            for m in &messages {
                registry.publish(&first.session_id, m.clone()).await.unwrap();
            }
            // What the connection writes: the live frames' text.
            let mut written = Vec::new();
            while let Ok(frame) = first.frames.try_recv() {
                written.push(frame);
            }
            prop_assert_eq!(written.len(), messages.len());
            let buffered = store.buffered_for_user("ann").await.unwrap();
            // A client that read some, lost its connection and resumed.
            let read = read_first.min(messages.len());
            registry.detach(&first.session_id, first.attachment).await.unwrap();
            let request = ResumeRequest {
                session_id: first.session_id.clone(),
                resume_token: first.resume_token.clone(),
                last_seq: read as u64,
            };
            let ResumeOutcome::Resumed { replay, .. } = registry.resume("ann", &request).await.unwrap() else {
                return Err(TestCaseError::fail("not resumed"));
            };
            prop_assert_eq!(replay.len(), messages.len() - read);
            for (i, m) in messages.iter().enumerate() {
                let seq = i as u64 + 1;
                let wire = serialize(&m.clone().with_seq(seq));
                prop_assert_eq!(written[i].as_str(), wire.as_str());
                prop_assert_eq!(written[i].seq(), Some(seq));
                prop_assert_eq!(buffered[i].as_str(), wire.as_str());
                // One allocation shared, not equal copies.
                prop_assert!(std::ptr::eq(written[i].as_str(), buffered[i].as_str()));
                if i >= read {
                    let replayed: &WireFrame = &replay[i - read];
                    prop_assert!(std::ptr::eq(written[i].as_str(), replayed.as_str()));
                }
            }
            Ok(())
        })?;
    }
}
