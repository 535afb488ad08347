//! The [`AgentRunner`] trait and the built-in [`SimulatedAgent`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wsc_core::{MessageType, WebSocketMessage, WireFrame};
use wsc_reconnection::SessionError;

use crate::run::{CancelReason, Run};
use crate::state::AppState;

/// What a client asked an agent to do (`start_agent`).
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRequest {
    /// The run's id (unique per gateway).
    pub run_id: String,
    /// What the user asked (`start_agent {input}`; empty if none).
    pub input: String,
    /// The user.
    pub user_id: String,
    /// The agent's name (default `"assistant"`).
    pub agent_name: String,
    /// The conversation thread.
    pub thread_id: Option<String>,
    /// Tools to call (default `["search"]`).
    pub tools: Vec<String>,
    /// Delay between events (default 0).
    pub step_delay: Duration,
}

/// Where an agent sends its events: each one is recorded by the event
/// monitor and published to the run's session (numbered, buffered,
/// delivered).
#[derive(Clone)]
pub struct EventSink {
    pub(crate) run: Arc<Run>,
    pub(crate) state: Arc<AppState>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("run_id", &self.run.run_id)
            .field("session_id", &self.run.session_id)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// Emits one event; `payload` is merged with `run_id` and `agent_name`.
    /// Returns false if the session is gone, or the run was cancelled or
    /// already ended (a run has one terminal frame: `agent_completed` or
    /// `agent_error`; nothing is emitted after it): a runner should stop
    /// then. While the session store is unreachable, events wait in order in
    /// the gateway's outbox and are published when it is back (this returns
    /// true).
    pub async fn emit(&self, event: MessageType, payload: Value) -> bool {
        if !self.run.admit(event) {
            return false;
        }
        self.publish(event, payload).await
    }

    /// Whether the run was cancelled (`stop_agent`): emitting is refused
    /// from then on.
    pub fn is_cancelled(&self) -> bool {
        self.run.is_cancelled()
    }

    /// Ends a cancelled run with `agent_error {code: "cancelled"}`, unless it
    /// already has its terminal frame.
    pub(crate) async fn end_cancelled(&self) {
        let reason = self.run.cancel_reason().unwrap_or(CancelReason::Stopped);
        if self.run.claim_end() {
            self.publish(
                MessageType::AgentError,
                json!({"code": "cancelled", "message": reason.message()}),
            )
            .await;
        }
    }

    async fn publish(&self, event: MessageType, payload: Value) -> bool {
        let (run, state) = (&self.run, &self.state);
        let mut body = json!({"run_id": run.run_id, "agent_name": run.agent_name});
        if let (Some(map), Value::Object(extra)) = (body.as_object_mut(), payload) {
            map.extend(extra);
        }
        let now = state.clock.now();
        run.record(event, &body, now);
        let message_id = run.next_message_id();
        let mut msg = WebSocketMessage::new(event, body)
            .with_message_id(message_id.clone())
            .with_timestamp(now);
        msg.thread_id = run.thread_id.clone();
        // Serialized once: the outbox, the session's buffer, the store and
        // every reader share this text.
        let frame = WireFrame::encode(&msg);
        // The monitor sees the event before the client does (and keeps the
        // message: no copy).
        let _ = state.monitor.record_event(&run.run_id, msg);
        let session = run.session_id.as_str();
        if state.outbox.holds(session) {
            // Earlier events wait: this one queues behind them.
            state.outbox.push(session, frame, message_id);
            return true;
        }
        match run
            .registry
            .publish_frame(session, &frame, Some(&message_id))
            .await
        {
            Ok(_) => true,
            Err(SessionError::UnknownSession(_)) => {
                // No one can receive the rest: the run ends here.
                run.cancel(CancelReason::SessionExpired);
                false
            }
            Err(e) => {
                tracing::warn!(session_id = %session, error = %e, "publishing failed: event queued until the store is back");
                if state.counters.store_failed() {
                    tracing::warn!("session store unreachable until it answers again");
                }
                state.outbox.push(session, frame, message_id);
                true
            }
        }
    }
}

/// Runs an agent for a request, emitting its lifecycle events. A real agent
/// plugs in here; the gateway ships [`SimulatedAgent`].
#[async_trait]
pub trait AgentRunner: Send + Sync {
    /// Runs to completion (or failure), emitting events through `sink`.
    async fn run(&self, request: AgentRequest, sink: EventSink);

    /// Whether a client's `user_message`/`chat` starts a run too (its
    /// `content` the input), as with a real agent behind the gateway.
    /// Default false: only `start_agent` starts runs.
    fn runs_on_user_messages(&self) -> bool {
        false
    }
}

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
