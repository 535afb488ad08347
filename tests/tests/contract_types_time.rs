//! The legacy `types` and `time` modules, checked signature by
//! signature through the facade paths: if a name, path or signature drifts,
//! this file stops compiling.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use websocket_core::time::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
use websocket_core::types::{MessageType, WebSocketMessage};

#[test]
fn types_section_compiles_as_written() {
    let _: [MessageType; 5] = MessageType::CRITICAL_AGENT_EVENTS;
    let _: fn(&MessageType) -> &'static str = MessageType::as_str;
    let _: fn(&MessageType) -> &'static str = MessageType::legacy_name;
    let _ = <MessageType as FromStr>::from_str("user");
    let new: fn(MessageType, serde_json::Value) -> WebSocketMessage = WebSocketMessage::new;
    let msg = new(MessageType::Chat, serde_json::json!({}))
        .with_user_id("u")
        .with_thread_id(String::from("t"))
        .with_message_id("m")
        .with_timestamp(Timestamp::from_unix_micros(0))
        .with_seq(1);
    let WebSocketMessage {
        message_type,
        payload,
        timestamp,
        message_id,
        user_id,
        thread_id,
        seq,
    } = msg;
    let _: (MessageType, serde_json::Value, Option<Timestamp>) = (message_type, payload, timestamp);
    let _: (Option<String>, Option<String>, Option<String>, Option<u64>) =
        (message_id, user_id, thread_id, seq);
    // Every legacy member exists.
    let _ = [
        MessageType::Connect,
        MessageType::Disconnect,
        MessageType::ConnectionEstablished,
        MessageType::Heartbeat,
        MessageType::HeartbeatAck,
        MessageType::Ping,
        MessageType::Pong,
        MessageType::UserMessage,
        MessageType::Chat,
        MessageType::SystemMessage,
        MessageType::ErrorMessage,
        MessageType::UserTyping,
        MessageType::AgentTyping,
        MessageType::TypingStarted,
        MessageType::TypingStopped,
        MessageType::StartAgent,
        MessageType::AgentStarted,
        MessageType::AgentStart,
        MessageType::AgentComplete,
        MessageType::AgentCompleted,
        MessageType::ToolExecute,
        MessageType::ToolExecuting,
        MessageType::ToolComplete,
        MessageType::ToolCompleted,
        MessageType::AgentRequest,
        MessageType::AgentTask,
        MessageType::AgentTaskAck,
        MessageType::AgentResponse,
        MessageType::AgentResponseChunk,
        MessageType::AgentResponseComplete,
        MessageType::AgentStatusRequest,
        MessageType::AgentStatusUpdate,
        MessageType::AgentProgress,
        MessageType::AgentThinking,
        MessageType::AgentError,
        MessageType::ThreadUpdate,
        MessageType::ThreadMessage,
        MessageType::Broadcast,
        MessageType::BroadcastTest,
        MessageType::DirectMessage,
        MessageType::RoomMessage,
        MessageType::JsonrpcRequest,
        MessageType::JsonrpcResponse,
        MessageType::JsonrpcNotification,
        MessageType::ResilienceTest,
        MessageType::RecoveryTest,
        MessageType::QualityMetrics,
        MessageType::Batch,
        MessageType::Connection,
        MessageType::Typing,
        MessageType::Error,
        MessageType::Ack,
    ];
}

fn assert_traits<T: Copy + Ord + std::fmt::Debug + serde::Serialize>() {}

#[test]
fn time_section_compiles_as_written() {
    assert_traits::<Timestamp>();
    let _: fn(i64) -> Timestamp = Timestamp::from_unix_micros;
    let _: fn(&Timestamp) -> i64 = Timestamp::as_unix_micros;
    let _: fn(&Timestamp, Timestamp) -> Duration = Timestamp::duration_since;
    let t = Timestamp::from_unix_micros(10);
    let _: Timestamp = t + Duration::from_micros(1);
    let _: Timestamp = t - Duration::from_micros(1);

    let _: fn(&dyn Clock) -> Timestamp = |c| c.now();
    type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
    let _: fn(&dyn Clock, Duration) -> SleepFuture = |c, d| c.sleep(d);
    let _: SharedClock = Arc::new(SystemClock);
    let _: SystemClock = Default::default();

    let _: fn(Timestamp) -> ManualClock = ManualClock::new;
    let _: fn(&ManualClock, Duration) = ManualClock::advance;
    let _: fn(&ManualClock) -> SharedClock = ManualClock::shared;
    let _: fn(&ManualClock) -> Vec<Duration> = ManualClock::sleeps;
    let clock = ManualClock::default();
    let _: ManualClock = clock.clone();
    fn shareable<T: Send + Sync + std::fmt::Debug + 'static>() {}
    shareable::<ManualClock>();
    shareable::<SystemClock>();
}
