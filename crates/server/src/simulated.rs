//! [`SimulatedAgent`]: the gateway's built-in agent, for the demo and tests.

use async_trait::async_trait;
use serde_json::json;
use wsc_core::MessageType;

use crate::run::{AgentRequest, AgentRunner, EventSink};

/// Emits `agent_started`, `agent_thinking`, then `tool_executing` and
/// `tool_completed` for each tool, then `agent_completed`. A run started
/// over AG-UI gets AG-UI events instead: `RUN_STARTED`, its reasoning
/// (`REASONING_START`, one reasoning message, `REASONING_END`), for each tool
/// `TOOL_CALL_START`/`ARGS`/`END`/`RESULT`, the answer as
/// `TEXT_MESSAGE_START`/`CONTENT`/`END`, `RUN_FINISHED` (pausing
/// `forwardedProps.step_delay_ms` between them, as `step_delay_ms` does for
/// a start).
#[derive(Clone, Copy, Debug, Default)]
pub struct SimulatedAgent;

/// The AG-UI events of a simulated run.
fn ag_ui_run(request: &AgentRequest, input: &serde_json::Value) -> Vec<serde_json::Value> {
    let thread = input["threadId"].as_str().unwrap_or_default();
    let run = input["runId"].as_str().unwrap_or_default();
    let (reasoning, thought) = (format!("{run}-reasoning"), format!("{run}-thought"));
    let mut events = vec![
        json!({"type": "RUN_STARTED", "threadId": thread, "runId": run}),
        json!({"type": "REASONING_START", "messageId": reasoning}),
        json!({"type": "REASONING_MESSAGE_START", "messageId": thought, "role": "reasoning"}),
        json!({"type": "REASONING_MESSAGE_CONTENT", "messageId": thought, "delta": "planning the answer"}),
        json!({"type": "REASONING_MESSAGE_END", "messageId": thought}),
        json!({"type": "REASONING_END", "messageId": reasoning}),
    ];
    for (i, tool) in request.tools.iter().enumerate() {
        let call = format!("{run}-call-{i}");
        events.push(json!({"type": "TOOL_CALL_START", "toolCallId": call, "toolCallName": tool}));
        events.push(json!({"type": "TOOL_CALL_ARGS", "toolCallId": call, "delta": json!({"query": request.input}).to_string()}));
        events.push(json!({"type": "TOOL_CALL_END", "toolCallId": call}));
        events.push(json!({"type": "TOOL_CALL_RESULT", "messageId": format!("{call}-result"), "toolCallId": call, "content": format!("{tool} done")}));
    }
    let answer = format!("{run}-answer");
    events.push(json!({"type": "TEXT_MESSAGE_START", "messageId": answer, "role": "assistant"}));
    for word in ["You", " asked: ", request.input.as_str()] {
        if !word.is_empty() {
            events
                .push(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": answer, "delta": word}));
        }
    }
    events.push(json!({"type": "TEXT_MESSAGE_END", "messageId": answer}));
    events.push(json!({"type": "RUN_FINISHED", "threadId": thread, "runId": run}));
    events
}

#[async_trait]
impl AgentRunner for SimulatedAgent {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        if let Some(input) = &request.ag_ui {
            for event in ag_ui_run(&request, input) {
                if !matches!(sink.emit_ag_ui(&event.to_string()).await, Ok(true)) {
                    return;
                }
                if !request.step_delay.is_zero() {
                    tokio::time::sleep(request.step_delay).await;
                }
            }
            return;
        }
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

    fn speaks_ag_ui(&self) -> bool {
        true
    }
}
