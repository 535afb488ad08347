//! A run, in one place: [`Run`] holds its identity (user, session, ids),
//! its progress, its cancellation and its one terminal frame; a runner
//! ([`AgentRunner`]: the simulated agent, an HTTP upstream, yours) gets an
//! [`AgentRequest`] and emits through an [`EventSink`], which refuses
//! anything after the run's end and publishes each event serialized once.
//! The run table (`runs`) starts runs, keeps those in flight for
//! `stop_agent`, session expiry and the dashboard, and ends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wsc_core::{MessageType, SharedClock, Timestamp, WebSocketMessage, WireFrame};
use wsc_event_monitor::EventMonitor;
use wsc_reconnection::SessionRegistry;
use wsc_upstream::{AgUiMapper, MappedFrame, UpstreamError, UpstreamMapper};

use crate::agui::RunLog;
use crate::counters::{Counters, Ids};
use crate::shared::{Published, Shared};

/// What every run of a gateway uses: the event monitor, the clock, what
/// crosses gateways (where events are published, or wait while the store
/// does not answer), the counters and the gateway's ids.
#[derive(Debug)]
pub(crate) struct RunServices {
    pub(crate) ids: Ids,
    pub(crate) monitor: Arc<EventMonitor>,
    pub(crate) clock: SharedClock,
    pub(crate) shared: Arc<Shared>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) limits: RunLimits,
}

/// What one run may emit (its terminal frame not counted).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunLimits {
    pub(crate) max_events: u64,
    pub(crate) max_bytes: u64,
}

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
    /// For a run a client started over AG-UI (`POST /ag-ui`): its
    /// `RunAgentInput` as sent (an AG-UI backend gets it unchanged, and the
    /// run's events go to AG-UI readers as the agent's own); `None` for a
    /// run started over the WebSocket protocol.
    pub ag_ui: Option<Value>,
}

/// Why [`EventSink::forward`] refused a frame (nothing was published).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The frame carries a `seq`: the session numbers its frames itself.
    #[error("a forwarded frame must be unnumbered (no `seq`): the session numbers frames")]
    Numbered,
    /// The text is not a frame the server sends.
    #[error("a forwarded frame must be a server frame: {0}")]
    NotAFrame(wsc_core::FrameError),
    /// The type is not an agent event (a connection, control or client
    /// type).
    #[error("`{0}` is not an agent event: a run forwards only agent events")]
    NotAnAgentEvent(MessageType),
}

/// Why a run was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// Its user sent `stop_agent`.
    Stopped,
    /// Its session expired (detached past its TTL): no one can receive
    /// the rest.
    SessionExpired,
    /// An AG-UI run no one read for the orphan timeout.
    Orphaned,
    /// Its session's store did not answer for as many events as the
    /// gateway holds for a session: the rest could not be kept.
    StoreUnavailable,
}

impl CancelReason {
    /// The `message` of the run's `agent_error {code: "cancelled"}`.
    pub(crate) fn message(self) -> &'static str {
        match self {
            CancelReason::Stopped => "the run was stopped by its user",
            CancelReason::SessionExpired => "the run's session expired before the run ended",
            CancelReason::Orphaned => "no one read the run for the orphan-run timeout",
            CancelReason::StoreUnavailable => {
                "the session store did not answer for as many events as the gateway holds for a session: the run was ended"
            }
        }
    }

    /// The `code` of the run's `agent_error`: `cancelled`, or
    /// `store_unavailable` when the gateway could not keep its events.
    pub(crate) fn code(self) -> &'static str {
        match self {
            CancelReason::StoreUnavailable => "store_unavailable",
            _ => "cancelled",
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

/// One run, in one place: who it belongs to and where its events go
/// (its identity), and what it has done — its events so far, its one
/// terminal frame, its cancellation. Shared by its [`EventSink`]s, the
/// run table (`stop_agent`, session expiry, the dashboard) and its task.
#[derive(Debug)]
pub(crate) struct Run {
    /// Who it belongs to and where its events go.
    pub(crate) id: RunIdentity,
    cancelled: tokio::sync::watch::Sender<Option<CancelReason>>,
    ended: AtomicBool,
    progress: std::sync::Mutex<Progress>,
    /// The number in the next event's message id (`{run_id}-{n}`).
    next_message: AtomicU64,
    /// Events and bytes emitted, against [`RunLimits`].
    spent_events: AtomicU64,
    spent_bytes: AtomicU64,
    /// Its AG-UI events, for AG-UI readers (runs started over AG-UI).
    pub(crate) log: Option<Arc<RunLog>>,
    /// AG-UI's rules and the mapping to legacy frames, for a runner that
    /// speaks AG-UI (made on its first event; boxed, so a run that never
    /// speaks AG-UI pays a pointer).
    ag_ui: std::sync::Mutex<Option<Box<AgUiMapper>>>,
}

/// Who a run belongs to and where its events go.
#[derive(Clone, Debug)]
pub(crate) struct RunIdentity {
    pub(crate) run_id: String,
    pub(crate) user: String,
    pub(crate) agent_name: String,
    /// The WebSocket session its legacy frames go to (none for a run
    /// started over HTTP, `POST /ag-ui`).
    pub(crate) session: Option<RunSession>,
    pub(crate) thread_id: Option<String>,
    pub(crate) started_at: Timestamp,
}

/// The session a run's frames go to.
#[derive(Clone, Debug)]
pub(crate) struct RunSession {
    pub(crate) id: String,
    /// The registry that holds it (this node's memory for a session
    /// started while the shared store was unreachable).
    pub(crate) registry: Arc<SessionRegistry>,
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

impl Run {
    pub(crate) fn new(id: RunIdentity) -> Self {
        Run {
            id,
            cancelled: tokio::sync::watch::Sender::new(None),
            ended: AtomicBool::new(false),
            progress: std::sync::Mutex::new(Progress::default()),
            next_message: AtomicU64::new(1),
            spent_events: AtomicU64::new(0),
            spent_bytes: AtomicU64::new(0),
            log: None,
            ag_ui: std::sync::Mutex::new(None),
        }
    }

    /// This run, its AG-UI events kept in `log` for AG-UI readers.
    pub(crate) fn with_log(mut self, log: Arc<RunLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Checks one AG-UI event against AG-UI's rules and maps it to legacy
    /// frames.
    fn map_ag_ui(&self, event: &str) -> Result<Vec<MappedFrame>, UpstreamError> {
        let mut mapper = self.ag_ui.lock().unwrap_or_else(|p| p.into_inner());
        mapper
            .get_or_insert_with(|| {
                // A run without a session has no reader of legacy frames:
                // they are only counted.
                Box::new(if self.id.session.is_none() {
                    AgUiMapper::counting()
                } else {
                    AgUiMapper::new()
                })
            })
            .push_event(event)
    }

    /// The AG-UI events that close what the run holds open.
    fn closing_events(&self) -> Vec<String> {
        let mapper = self.ag_ui.lock().unwrap_or_else(|p| p.into_inner());
        mapper
            .as_ref()
            .map(|m| m.closing_events())
            .unwrap_or_default()
    }

    /// The message id of the run's next event: `{run_id}-{n}`, n from 1
    /// (the same on every gateway, so a shared store appends a repeat
    /// once).
    pub(crate) fn next_message_id(&self) -> String {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id.run_id)
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

    /// Whether `event` may be emitted now, claiming the run's one
    /// terminal frame if it is one: false once the run is cancelled or
    /// ended (nothing is emitted after the terminal frame), or for a second
    /// terminal frame.
    pub(crate) fn admit(&self, event: MessageType) -> bool {
        if self.is_cancelled() || self.ended.load(Ordering::Acquire) {
            return false;
        }
        !event.is_terminal() || self.claim_end()
    }

    /// Counts one event of `bytes` against `limits`: `Err` with the
    /// reason once the run is over either.
    fn charge(&self, bytes: usize, limits: RunLimits) -> Result<(), String> {
        let bytes = bytes as u64;
        let events = self.spent_events.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.spent_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if events > limits.max_events {
            return Err(format!(
                "the run emitted more than {} events (the gateway's --max-run-events)",
                limits.max_events
            ));
        }
        if total > limits.max_bytes {
            return Err(format!(
                "the run emitted more than {} bytes (the gateway's --max-run-bytes)",
                limits.max_bytes
            ));
        }
        Ok(())
    }

    /// Claims the run's one terminal frame; false if it was claimed.
    pub(crate) fn claim_end(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }
}

/// Where an agent sends its events: each one is recorded by the event
/// monitor and published to the run's session (numbered, buffered,
/// delivered).
#[derive(Clone)]
pub struct EventSink {
    pub(crate) run: Arc<Run>,
    pub(crate) services: Arc<RunServices>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("run_id", &self.run.id.run_id)
            .field("session_id", &self.run.id.session.as_ref().map(|s| &s.id))
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
    /// A run over the gateway's caps (`--max-run-events`,
    /// `--max-run-bytes`) ends with `agent_error {code: "run_too_large"}`
    /// instead of the event (false).
    pub async fn emit(&self, event: MessageType, payload: Value) -> bool {
        if !self.run.admit(event) {
            return false;
        }
        self.publish(event, payload, true).await
    }

    /// Emits one AG-UI event (its JSON text, as the agent sent it): checked
    /// against AG-UI's rules, kept as it is for the run's AG-UI readers,
    /// and mapped to legacy frames for its WebSocket session. Returns
    /// `Ok(false)` where [`emit`](Self::emit) would return false.
    ///
    /// # Errors
    /// The event breaks an AG-UI rule or cannot be mapped; nothing of it
    /// was emitted, and the runner should end the run (an `agent_error`
    /// with the error's `code()`).
    pub async fn emit_ag_ui(&self, event: &str) -> Result<bool, UpstreamError> {
        if self.run.is_cancelled() || self.run.ended.load(Ordering::Acquire) {
            return Ok(false);
        }
        if let Err(reason) = self.run.charge(event.len(), self.services.limits) {
            return Ok(self.end_too_large(reason).await);
        }
        let frames = self.run.map_ag_ui(event)?;
        if let Some(log) = &self.run.log {
            let terminal = frames.iter().any(|f| f.message_type.is_terminal());
            log.push(Arc::from(event), terminal, self.services.clock.now());
        }
        // Charged above, as the agent sent it. A run without a session has
        // no reader of legacy frames: its text deltas and progress frames
        // are only counted (the run's progress, the event monitor), not
        // built; its lifecycle frames are published as any run's.
        let session_less = self.run.id.session.is_none();
        for f in frames {
            if !self.run.admit(f.message_type) {
                return Ok(false);
            }
            let t = f.message_type;
            if session_less && !t.is_critical() && !t.is_terminal() {
                self.count(t);
                continue;
            }
            if !self.publish(t, Value::Object(f.payload), false).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Holds back the wake-ups of the run's AG-UI readers until the guard
    /// is dropped (`None` for a run without AG-UI readers): a runner emits
    /// what it read from its agent at once as one batch, which each reader
    /// then reads (and writes to its client) at once.
    pub(crate) fn batch(&self) -> Option<crate::agui::Batch> {
        self.run.log.as_ref().map(crate::agui::RunLog::batch)
    }

    /// Records an event no one reads as a frame: in the run's progress and
    /// the event monitor (its type and time; a non-lifecycle event's
    /// payload plays no part in either).
    fn count(&self, event: MessageType) {
        let now = self.services.clock.now();
        self.run.record(event, &Value::Null, now);
        let message =
            WebSocketMessage::new(event, Value::Object(Default::default())).with_timestamp(now);
        let _ = self
            .services
            .monitor
            .record_event(&self.run.id.run_id, message);
    }

    /// Ends a run over its caps with `agent_error {code:
    /// "run_too_large"}` (unless it has its terminal frame); false, for
    /// the emit that found it over.
    async fn end_too_large(&self, reason: String) -> bool {
        if self.run.claim_end() {
            tracing::info!(%reason, "run too large: ended");
            // Boxed: publish may end here itself.
            Box::pin(self.publish(
                MessageType::AgentError,
                json!({"code": "run_too_large", "message": reason}),
                false,
            ))
            .await;
        }
        false
    }

    /// The run's AG-UI log gets its terminal event from the legacy one,
    /// when its agent did not send one: `RUN_ERROR {message, code}` for an
    /// error, else whatever is still open closed and `RUN_FINISHED`
    /// (`outcome {type: "cancelled"}` for a cancelled run).
    fn end_log(&self, event: MessageType, body: &Value, now: Timestamp) {
        let Some(log) = &self.run.log else { return };
        if log.ended_at().is_some() {
            return;
        }
        let code = body["code"].as_str().unwrap_or_default();
        if event == MessageType::AgentError && code != "cancelled" {
            let error = json!({
                "type": "RUN_ERROR",
                "message": body["message"].as_str().unwrap_or("the run failed"),
                "code": code,
            });
            log.push(Arc::from(error.to_string()), true, now);
            return;
        }
        for closing in self.run.closing_events() {
            log.push(Arc::from(closing), false, now);
        }
        let mut finished = json!({
            "type": "RUN_FINISHED",
            "threadId": log.thread_id,
            "runId": log.run_id,
        });
        if code == "cancelled" {
            finished["outcome"] = json!({"type": "cancelled"});
        }
        log.push(Arc::from(finished.to_string()), true, now);
    }

    /// Whether the run has its terminal frame (nothing more is emitted).
    pub fn has_ended(&self) -> bool {
        self.run.ended.load(Ordering::Acquire)
    }

    /// Whether the run was cancelled (`stop_agent`): emitting is refused
    /// from then on.
    pub fn is_cancelled(&self) -> bool {
        self.run.is_cancelled()
    }

    /// Ends a cancelled run with `agent_error {code: "cancelled"}` (or
    /// `store_unavailable`, see [`CancelReason::code`]), unless it already
    /// has its terminal frame.
    pub(crate) async fn end_cancelled(&self) {
        let reason = self.run.cancel_reason().unwrap_or(CancelReason::Stopped);
        if self.run.claim_end() {
            self.publish(
                MessageType::AgentError,
                json!({"code": reason.code(), "message": reason.message()}),
                false,
            )
            .await;
        }
    }

    /// Records, numbers and delivers one event the run admitted; `charge`:
    /// counted against the run's caps (its serialized size) first.
    async fn publish(&self, event: MessageType, payload: Value, charge: bool) -> bool {
        let (run, services) = (&self.run, &self.services);
        let mut body = json!({"run_id": run.id.run_id, "agent_name": run.id.agent_name});
        if let (Some(map), Value::Object(extra)) = (body.as_object_mut(), payload) {
            map.extend(extra);
        }
        let now = services.clock.now();
        let message_id = run.next_message_id();
        let mut msg = WebSocketMessage::new(event, body)
            .with_message_id(message_id.clone())
            .with_timestamp(now);
        msg.thread_id = run.id.thread_id.clone();
        // Serialized once: the outbox, the session's buffer, the store and
        // every reader share this text. A run without a session (started
        // over AG-UI) has no reader of legacy frames: nothing to serialize.
        let frame = run.id.session.is_some().then(|| WireFrame::encode(&msg));
        if charge
            && !event.is_terminal()
            && let Err(reason) =
                run.charge(frame.as_ref().map_or(0, WireFrame::len), services.limits)
        {
            return self.end_too_large(reason).await;
        }
        let body = &msg.payload;
        run.record(event, body, now);
        if event.is_terminal() {
            self.end_log(event, body, now);
        }
        if event == MessageType::AgentError && body["code"] == "upstream_protocol" {
            // The backend broke an AG-UI rule: counted per rule.
            if let Some(rule) = body["rule"].as_str() {
                services.counters.agui_violation(rule);
            }
        }
        // The monitor sees the event before the client does (and keeps the
        // message: no copy).
        let _ = services.monitor.record_event(&run.id.run_id, msg);
        match frame {
            Some(frame) => self.deliver(frame, message_id).await,
            None => true,
        }
    }

    /// Publishes a frame that is already in its wire form — made by a
    /// runner that relays complete frames — without re-encoding it: its
    /// bytes are what the session buffers and what every reader and every
    /// replay sends. The run's rules apply as for [`emit`](Self::emit)
    /// (nothing after the run's one terminal frame); the event monitor
    /// checks the decoded message. Its `message_id`, if any, is its key in
    /// the session (a repeat is appended once). The text is the runner's:
    /// it should carry this run's `run_id`, as `emit`'s frames do.
    ///
    /// Returns `Ok(false)` when `emit` would return false.
    ///
    /// # Errors
    /// [`ForwardError`], and nothing is published: the frame is numbered
    /// (the session numbers frames), its text is not a server frame, or
    /// its type is not an agent event.
    pub async fn forward(&self, frame: WireFrame) -> Result<bool, ForwardError> {
        let message = frame.decode().map_err(ForwardError::NotAFrame)?;
        if frame.seq().is_some() || message.seq.is_some() {
            return Err(ForwardError::Numbered);
        }
        let event = message.message_type.canonical();
        if !event.is_agent_event() {
            return Err(ForwardError::NotAnAgentEvent(event));
        }
        if !event.is_terminal()
            && let Err(reason) = self.run.charge(frame.len(), self.services.limits)
        {
            return Ok(self.end_too_large(reason).await);
        }
        if !self.run.admit(event) {
            return Ok(false);
        }
        let (run, services) = (&self.run, &self.services);
        run.record(event, &message.payload, services.clock.now());
        let message_id = match &message.message_id {
            Some(id) => id.clone(),
            None => run.next_message_id(),
        };
        let _ = services.monitor.record_event(&run.id.run_id, message);
        Ok(self.deliver(frame, message_id).await)
    }

    /// Publishes the run's `frame` into its session (or queues it while
    /// the store does not answer): false if the session is gone, which ends
    /// the run.
    async fn deliver(&self, frame: WireFrame, message_id: String) -> bool {
        let run = &self.run;
        let Some(session) = &run.id.session else {
            // A run without a session: its readers read its AG-UI log.
            return true;
        };
        match self
            .services
            .shared
            .publish(&session.registry, &session.id, frame, message_id)
            .await
        {
            Published::Appended | Published::Queued => true,
            Published::Overflow => {
                // Not queued: the run ends here (its terminal frame is
                // always queued), so its client is told, not left short.
                run.cancel(CancelReason::StoreUnavailable);
                false
            }
            Published::SessionGone => {
                // No one can receive the rest: the run ends here.
                run.cancel(CancelReason::SessionExpired);
                false
            }
        }
    }
}

/// Runs an agent for a request, emitting its lifecycle events. A real agent
/// plugs in here; the gateway ships [`SimulatedAgent`](crate::SimulatedAgent).
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

    /// Whether runs started over AG-UI (`POST /ag-ui`) can run here: the
    /// runner emits AG-UI events ([`EventSink::emit_ag_ui`]) when its
    /// request carries [`AgentRequest::ag_ui`]. Default false (`POST
    /// /ag-ui` then answers 501).
    fn speaks_ag_ui(&self) -> bool {
        false
    }
}
