//! [`SimulatedAgent`]: the gateway's built-in agent, for the demo and tests.

use async_trait::async_trait;
use serde_json::json;
use wsc_core::MessageType;

use crate::run::{AgentRequest, AgentRunner, EventSink};

/// Emits `agent_started`, `agent_thinking`, then `tool_executing` and
/// `tool_completed` for each tool, then `agent_completed`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimulatedAgent;

#[async_trait]
impl AgentRunner for SimulatedAgent {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let pause = || async {
            if !request.step_delay.is_zero() {
                tokio::time::sleep(request.step_delay).await;
            }
        };
        if !sink.emit(MessageType::AgentStarted, json!({})).await {
            return;
        }
        pause().await;
        sink.emit(
            MessageType::AgentThinking,
            json!({"thought": "planning the answer"}),
        )
        .await;
        for (i, tool) in request.tools.iter().enumerate() {
            pause().await;
            let call = format!("{}-call-{i}", request.run_id);
            sink.emit(
                MessageType::ToolExecuting,
                json!({"tool_name": tool, "tool_call_id": call}),
            )
            .await;
            pause().await;
            sink.emit(
                MessageType::ToolCompleted,
                json!({"tool_name": tool, "tool_call_id": call, "result": format!("{tool} done")}),
            )
            .await;
        }
        pause().await;
        sink.emit(MessageType::AgentCompleted, json!({"result": "done"}))
            .await;
    }
}
