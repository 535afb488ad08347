//! The [`AgentRunner`] trait and the built-in [`SimulatedAgent`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wsc_core::{MessageType, SharedClock, WebSocketMessage, WireFrame};
use wsc_event_monitor::EventMonitor;
use wsc_reconnection::{SessionError, SessionRegistry};

use crate::counters::Counters;

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
/// monitor and published to the session (numbered, buffered, delivered).
#[derive(Clone, Debug)]
pub struct EventSink {
    pub(crate) session_id: String,
    pub(crate) run_id: String,
    pub(crate) agent_name: String,
    pub(crate) thread_id: Option<String>,
    pub(crate) monitor: Arc<EventMonitor>,
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) clock: SharedClock,
    pub(crate) next_message: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) outbox: Arc<crate::outbox::Outbox>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) control: Arc<RunControl>,
}

/// Why a run was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// Its user sent `stop_agent`.
    Stopped,
    /// Its session expired (detached past its TTL): no one can receive
    /// the rest.
    SessionExpired,
}

impl CancelReason {
    /// The `message` of the run's `agent_error {code: "cancelled"}`.
    pub(crate) fn message(self) -> &'static str {
        match self {
            CancelReason::Stopped => "the run was stopped by its user",
            CancelReason::SessionExpired => "the run's session expired before the run ended",
        }
    }
}

/// How a run ended, as its terminal frame said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Terminal {
    /// `agent_completed`.
    Completed,
    /// `agent_error {code, message}` (`code` `"cancelled"` for a cancelled
    /// run).
    Error { code: String, message: String },
}

/// A run's cancellation, its one terminal frame and its last event, shared
/// by every clone of its [`EventSink`] and by the gateway.
#[derive(Debug)]
pub(crate) struct RunControl {
    cancelled: tokio::sync::watch::Sender<Option<CancelReason>>,
    ended: std::sync::atomic::AtomicBool,
    progress: std::sync::Mutex<Progress>,
}

/// What a run has emitted so far (for the dashboard's runs panel).
#[derive(Clone, Debug, Default)]
pub(crate) struct Progress {
    /// Events emitted.
    pub(crate) events: u64,
    /// The last one, and when.
    pub(crate) last: Option<(MessageType, wsc_core::Timestamp)>,
    /// The terminal frame, once emitted.
    pub(crate) terminal: Option<Terminal>,
}

impl RunControl {
    pub(crate) fn new() -> Self {
        RunControl {
            cancelled: tokio::sync::watch::Sender::new(None),
            ended: std::sync::atomic::AtomicBool::new(false),
            progress: std::sync::Mutex::new(Progress::default()),
        }
    }

    /// Asks the run to stop; the first reason given is the one it ends
    /// with.
    pub(crate) fn cancel(&self, reason: CancelReason) {
        self.cancelled.send_if_modified(|r| {
            let first = r.is_none();
            if first {
                *r = Some(reason);
            }
            first
        });
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.borrow().is_some()
    }

    /// Why the run was cancelled, if it was.
    pub(crate) fn cancel_reason(&self) -> Option<CancelReason> {
        *self.cancelled.borrow()
    }

    /// Completes once the run is cancelled.
    pub(crate) async fn cancelled(&self) {
        let mut rx = self.cancelled.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// What the run has emitted so far.
    pub(crate) fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn record(&self, event: MessageType, payload: &Value, at: wsc_core::Timestamp) {
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        progress.events += 1;
        progress.last = Some((event, at));
        let text = |field: &str| {
            payload
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match event.canonical() {
            MessageType::AgentCompleted => progress.terminal = Some(Terminal::Completed),
            MessageType::AgentError => {
                progress.terminal = Some(Terminal::Error {
                    code: text("code"),
                    message: text("message"),
                });
            }
            _ => {}
        }
    }

    /// Claims the run's one terminal frame; false if it was claimed.
    fn claim_end(&self) -> bool {
        !self.ended.swap(true, std::sync::atomic::Ordering::AcqRel)
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
        if self.control.is_cancelled() {
            return false;
        }
        let terminal = matches!(
            event.canonical(),
            MessageType::AgentCompleted | MessageType::AgentError
        );
        if self
            .control
            .ended
            .load(std::sync::atomic::Ordering::Acquire)
            || (terminal && !self.control.claim_end())
        {
            return false;
        }
        self.publish(event, payload).await
    }

    /// Whether the run was cancelled (`stop_agent`): emitting is refused
    /// from then on.
    pub fn is_cancelled(&self) -> bool {
        self.control.is_cancelled()
    }

    /// Ends a cancelled run with `agent_error {code: "cancelled"}`, unless it
    /// already has its terminal frame.
    pub(crate) async fn end_cancelled(&self) {
        let reason = self
            .control
            .cancel_reason()
            .unwrap_or(CancelReason::Stopped);
        if self.control.claim_end() {
            self.publish(
                MessageType::AgentError,
                json!({"code": "cancelled", "message": reason.message()}),
            )
            .await;
        }
    }

    async fn publish(&self, event: MessageType, payload: Value) -> bool {
        let mut body = json!({"run_id": self.run_id, "agent_name": self.agent_name});
        if let (Some(map), Value::Object(extra)) = (body.as_object_mut(), payload) {
            map.extend(extra);
        }
        let n = self
            .next_message
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = self.clock.now();
        self.control.record(event, &body, now);
        let message_id = format!("{}-{n}", self.run_id);
        let mut msg = WebSocketMessage::new(event, body)
            .with_message_id(message_id.clone())
            .with_timestamp(now);
        msg.thread_id = self.thread_id.clone();
        // Serialized once: the outbox, the session's buffer, the store and
        // every reader share this text.
        let frame = WireFrame::encode(&msg);
        // The monitor sees the event before the client does (and keeps the
        // message: no copy).
        let _ = self.monitor.record_event(&self.run_id, msg);
        if self.outbox.holds(&self.session_id) {
            // Earlier events wait: this one queues behind them.
            self.outbox.push(&self.session_id, frame, message_id);
            return true;
        }
        match self
            .sessions
            .publish_frame(&self.session_id, &frame, Some(&message_id))
            .await
        {
            Ok(_) => true,
            Err(SessionError::UnknownSession(_)) => {
                // No one can receive the rest: the run ends here.
                self.control.cancel(CancelReason::SessionExpired);
                false
            }
            Err(e) => {
                tracing::warn!(session_id = %self.session_id, error = %e, "publishing failed: event queued until the store is back");
                if self.counters.store_failed() {
                    tracing::warn!("session store unreachable until it answers again");
                }
                self.outbox.push(&self.session_id, frame, message_id);
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
