//! The facade used the way a legacy caller would: build messages, round-trip
//! them through the codec, drive time with a ManualClock.

use std::time::Duration;

use serde_json::json;
use websocket_core::time::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
use websocket_core::types::{
    MessageType, WebSocketMessage, parse_client_frame, parse_server_frame, serialize,
};
use wsc_tests::test_clock;

#[test]
fn legacy_type_names_and_wire_values() {
    assert_eq!(MessageType::AgentStarted.as_str(), "agent_started");
    assert_eq!(MessageType::AgentStarted.legacy_name(), "AGENT_STARTED");
    assert_eq!(MessageType::AgentStarted.to_string(), "agent_started");
    assert_eq!(
        MessageType::CRITICAL_AGENT_EVENTS.map(|t| t.as_str()),
        [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed"
        ]
    );
    assert_eq!("user".parse::<MessageType>(), Ok(MessageType::UserMessage));
}

#[test]
fn a_run_round_trips_through_the_codec() {
    let clock = test_clock();
    let mut frames = Vec::new();
    for (seq, t) in MessageType::CRITICAL_AGENT_EVENTS.iter().enumerate() {
        clock.advance(Duration::from_millis(15));
        let msg = WebSocketMessage::new(*t, json!({"run_id": "run-1", "agent_name": "triage"}))
            .with_thread_id("thread-9")
            .with_message_id(format!("m-{seq}"))
            .with_timestamp(clock.now())
            .with_seq(seq as u64 + 1);
        frames.push((serialize(&msg), msg));
    }
    for (text, msg) in &frames {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["type"], msg.message_type.as_str());
        assert!(
            value["timestamp"].is_f64(),
            "timestamp is Unix seconds: {text}"
        );
        assert_eq!(parse_server_frame(text).as_ref(), Ok(msg));
        // Agent events are server-only: a client may not send them.
        assert_eq!(parse_client_frame(text).unwrap_err().code(), "not_allowed");
    }
    let first = frames[0].1.timestamp.unwrap();
    let last = frames[4].1.timestamp.unwrap();
    assert_eq!(last.duration_since(first), Duration::from_millis(60));
}

#[test]
fn client_frames_from_a_legacy_caller() {
    let msg = parse_client_frame(
        r#"{"type": "execute_agent", "payload": {"agent_name": "triage"}, "timestamp": 1735689600.25}"#,
    )
    .unwrap();
    assert_eq!(msg.message_type, MessageType::StartAgent);
    assert_eq!(msg.payload_str("agent_name"), Some("triage"));
    assert_eq!(
        msg.timestamp,
        Some(Timestamp::from_unix_micros(1_735_689_600_250_000))
    );
    let err = parse_client_frame(r#"{"type": "chat", "payload": "hello"}"#).unwrap_err();
    assert_eq!(err.code(), "invalid_message");
    assert!(err.to_string().contains("payload"), "{err}");
}

#[tokio::test]
async fn manual_clock_shared_across_tasks() {
    let clock = ManualClock::default();
    let shared: SharedClock = clock.shared();
    let start = clock.now();
    let task = tokio::spawn({
        let shared = shared.clone();
        async move {
            shared.sleep(Duration::from_secs(5)).await;
            shared.now()
        }
    });
    let seen = task.await.unwrap();
    assert_eq!(seen, start + Duration::from_secs(5));
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(5)]);
    clock.advance(Duration::from_millis(1));
    assert_eq!(shared.now(), start + Duration::from_millis(5001));
}

#[test]
fn system_clock_never_runs_backwards() {
    let clock: SharedClock = SystemClock::shared();
    let mut prev = clock.now();
    for _ in 0..1000 {
        let now = clock.now();
        assert!(now >= prev);
        prev = now;
    }
}
