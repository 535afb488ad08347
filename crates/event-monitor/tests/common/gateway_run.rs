//! A run as the gateway records it, for the memory measurements (included
//! by `tests/memory.rs` here and by the workspace's scale bench).

use serde_json::json;
use wsc_core::{MessageType, Timestamp, WebSocketMessage};

/// The events of one demo run as the gateway records them: `agent_started`,
/// `agent_thinking`, two tool calls, `agent_completed`; the payloads carry
/// `run_id` and `agent_name`, every message an id, a thread and a
/// timestamp.
pub(crate) fn gateway_run(run_id: &str) -> Vec<WebSocketMessage> {
    let mut steps = vec![
        (MessageType::AgentStarted, json!({})),
        (
            MessageType::AgentThinking,
            json!({"thought": "planning the answer"}),
        ),
    ];
    for (i, tool) in ["search", "calculator"].iter().enumerate() {
        let call = format!("{run_id}-call-{i}");
        steps.push((
            MessageType::ToolExecuting,
            json!({"tool_name": tool, "tool_call_id": call}),
        ));
        steps.push((
            MessageType::ToolCompleted,
            json!({"tool_name": tool, "tool_call_id": call, "result": format!("{tool} done")}),
        ));
    }
    steps.push((MessageType::AgentCompleted, json!({"result": "done"})));
    steps
        .into_iter()
        .enumerate()
        .map(|(n, (t, mut payload))| {
            payload["run_id"] = json!(run_id);
            payload["agent_name"] = json!("demo");
            let mut m = WebSocketMessage::new(t, payload)
                .with_message_id(format!("{run_id}-{n}"))
                .with_timestamp(Timestamp::from_unix_micros(1));
            m.thread_id = Some("thread-1".to_owned());
            m
        })
        .collect()
}
