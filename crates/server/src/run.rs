//! A run, in one place: [`Run`] holds its identity (user, session, ids),
//! its progress, its cancellation and its one terminal frame; [`start`]
//! starts one for a client's request (the simulated agent, an HTTP
//! upstream or an application's runner alike) — capped per user,
//! idempotent by message id within its session, tracked by the event
//! monitor — and spawns its task, which ends it however it ends. The run
//! table (`runs`) keeps the runs in flight for `stop_agent`, session expiry
//! and the dashboard; the [`EventSink`] publishes its events.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;
use wsc_core::{
    ClientFrame, ErrorCode, ErrorFrame, Frame, MessageType, Timestamp, WebSocketMessage,
};
use wsc_event_monitor::AgentSession;
use wsc_reconnection::SessionRegistry;

use crate::agent::{AgentRequest, EventSink};
use crate::counters::Counters;
use crate::logging::log_safe;
use crate::state::AppState;

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

/// One run, in one place: who it belongs to and where its events go
/// (its identity), and what it has done — its events so far, its one
/// terminal frame, its cancellation. Shared by its [`EventSink`]s, the
/// run table (`stop_agent`, session expiry, the dashboard) and its task.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) run_id: String,
    pub(crate) user: String,
    pub(crate) agent_name: String,
    pub(crate) session_id: String,
    pub(crate) thread_id: Option<String>,
    /// The registry that holds the session (this node's memory for a
    /// session started while the shared store was unreachable).
    pub(crate) registry: Arc<SessionRegistry>,
    pub(crate) started_at: Timestamp,
    cancelled: tokio::sync::watch::Sender<Option<CancelReason>>,
    ended: AtomicBool,
    progress: std::sync::Mutex<Progress>,
    /// The number in the next event's message id (`{run_id}-{n}`).
    next_message: AtomicU64,
}

/// Who a run belongs to and where its events go.
#[derive(Clone, Debug)]
pub(crate) struct RunIdentity {
    pub(crate) run_id: String,
    pub(crate) user: String,
    pub(crate) agent_name: String,
    pub(crate) session_id: String,
    pub(crate) thread_id: Option<String>,
    pub(crate) registry: Arc<SessionRegistry>,
    pub(crate) started_at: Timestamp,
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
    pub(crate) fn new(identity: RunIdentity) -> Self {
        let RunIdentity {
            run_id,
            user,
            agent_name,
            session_id,
            thread_id,
            registry,
            started_at,
        } = identity;
        Run {
            run_id,
            user,
            agent_name,
            session_id,
            thread_id,
            registry,
            started_at,
            cancelled: tokio::sync::watch::Sender::new(None),
            ended: AtomicBool::new(false),
            progress: std::sync::Mutex::new(Progress::default()),
            next_message: AtomicU64::new(1),
        }
    }

    /// The message id of the run's next event: `{run_id}-{n}`, n from 1
    /// (the same on every gateway, so a shared store appends a repeat
    /// once).
    pub(crate) fn next_message_id(&self) -> String {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.run_id)
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

    /// Claims the run's one terminal frame; false if it was claimed.
    pub(crate) fn claim_end(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }
}

/// `run-` and 24 hex digits of SHA-256 over the session and the start's
/// message id: the same on every gateway, unguessable across sessions.
fn idempotent_run_id(session_id: &str, message_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(session_id.as_bytes());
    hash.update([0]);
    hash.update(message_id.as_bytes());
    format!("run-{}", hex::encode(&hash.finalize()[..12]))
}

/// What became of a start.
pub(crate) enum StartOutcome {
    /// The run started with this id.
    Started(String),
    /// The session started this one before (same message id).
    Repeated,
    /// Refused; the reply tells the client why.
    Refused(WebSocketMessage),
}

impl StartOutcome {
    /// The reply for the client: only a refusal has one.
    pub(crate) fn refusal(self) -> Option<WebSocketMessage> {
        match self {
            StartOutcome::Refused(reply) => Some(reply),
            StartOutcome::Started(_) | StartOutcome::Repeated => None,
        }
    }
}

/// The session a run is started for.
pub(crate) struct Origin<'a> {
    pub(crate) registry: &'a Arc<SessionRegistry>,
    pub(crate) user: &'a str,
    pub(crate) session_id: &'a str,
}

/// Starts the run `frame` asks for (a `start_agent`, or a
/// `user_message`/`chat` whose content is the input) with `runner`:
/// counted against its user's runs in flight, idempotent by its message
/// id within the session, tracked by the event monitor, its task spawned.
pub(crate) async fn start(
    state: &Arc<AppState>,
    origin: Origin<'_>,
    frame: &ClientFrame,
    runner: Arc<dyn crate::agent::AgentRunner>,
) -> StartOutcome {
    let Origin {
        registry,
        user,
        session_id,
    } = origin;
    let msg = &frame.message;
    let Some(start) = frame.start() else {
        let mut refusal = ErrorFrame::new(
            ErrorCode::InvalidMessage,
            format!("a `{}` frame starts no run", msg.message_type),
        );
        if let Some(id) = &msg.message_id {
            refusal = refusal.with_ref_message_id(id.clone());
        }
        return StartOutcome::Refused(refusal.to_message());
    };
    // A `message_id` is the start's idempotency key within the session: a
    // client that lost its connection right after sending a start cannot
    // know whether it arrived, so it sends it again with the same id. The
    // run id is derived from it, so the repeat is recognised here, and on
    // another gateway (on Redis) its events carry the same message ids,
    // which the shared store appends once.
    let run_id = match &msg.message_id {
        Some(id) => idempotent_run_id(session_id, id),
        None => state.next_id("run"),
    };
    // The session remembers its start keys (bounded, for its life; with
    // Redis on every gateway): a repeat is recognised however long ago the
    // first ran, whatever else the monitor has evicted since.
    let key = format!("start:{run_id}");
    let repeated = || {
        state
            .counters
            .repeated_starts
            .fetch_add(1, Ordering::Relaxed);
    };
    if msg.message_id.is_some() {
        let seen = match registry.holds_key(session_id, &key).await {
            Ok(seen) => seen,
            // The store is down (fail-open): the event monitor's record of
            // the run stands in until it is back.
            Err(e) => {
                tracing::warn!(error = %e, "start keys unavailable: checking this node's runs");
                state.shared_store_failed();
                state.monitor.is_tracking(&run_id)
            }
        };
        if seen {
            repeated();
            return StartOutcome::Repeated;
        }
    }
    let agent_name = start.agent_name.unwrap_or_else(|| "assistant".to_owned());
    let thread_id = start.thread_id.or_else(|| msg.thread_id.clone());
    let run = Arc::new(Run::new(RunIdentity {
        run_id: run_id.clone(),
        user: user.to_owned(),
        agent_name: agent_name.clone(),
        session_id: session_id.to_owned(),
        thread_id: thread_id.clone(),
        registry: registry.clone(),
        started_at: state.clock.now(),
    }));
    let Some(slot) = state.runs.start(run.clone()) else {
        Counters::bump(&state.counters.rate_limited);
        let max = state.config.agents.max_runs_per_user;
        let mut refusal = ErrorFrame::new(
            ErrorCode::RateLimited,
            format!("at most {max} runs in flight per user: wait for one to end, or stop one"),
        );
        if let Some(id) = &msg.message_id {
            refusal = refusal.with_ref_message_id(id.clone());
        }
        return StartOutcome::Refused(refusal.to_message());
    };
    if msg.message_id.is_some() {
        match registry.claim_key(session_id, &key).await {
            Ok(true) => {}
            // Claimed in between (on another gateway): a repeat.
            Ok(false) => {
                repeated();
                return StartOutcome::Repeated;
            }
            // Fail-open: the run starts; the store learns nothing of the
            // key, so only this node's monitor recognises a repeat.
            Err(e) => {
                tracing::warn!(error = %e, "start key not stored: the store is unreachable");
                state.shared_store_failed();
            }
        }
    }
    let tools = start.tools.unwrap_or_else(|| vec!["search".to_owned()]);
    let step_delay = Duration::from_millis(start.step_delay_ms.unwrap_or(0));
    let mut session = AgentSession::new(user)
        .with_run_id(run_id.clone())
        .with_agent_name(agent_name.clone());
    session.thread_id = thread_id.clone();
    state.monitor.start_session_tracking(&run_id, session);
    state.counters.runs.fetch_add(1, Ordering::Relaxed);
    let sink = EventSink {
        run: run.clone(),
        state: state.clone(),
    };
    let request = AgentRequest {
        run_id,
        input: start.input.unwrap_or_default(),
        user_id: user.to_owned(),
        agent_name,
        thread_id,
        tools,
        step_delay,
    };
    let (monitor, clock) = (state.monitor.clone(), state.clock.clone());
    let started = request.run_id.clone();
    let span = tracing::info_span!("run", run_id = %request.run_id, agent = %log_safe(&request.agent_name));
    tokio::spawn(
        async move {
            tracing::debug!("run started");
            let run_id = request.run_id.clone();
            // A stop drops the runner where it waits (an upstream request
            // is closed, so the backend sees it), then ends the run.
            tokio::select! {
                () = runner.run(request, sink.clone()) => {}
                () = run.cancelled() => {}
            }
            if run.is_cancelled() {
                sink.end_cancelled().await;
                tracing::debug!("run cancelled");
            } else {
                tracing::debug!("run ended");
            }
            // Releases the user's count; a failed or cancelled run is
            // remembered for the dashboard.
            slot.finish(monitor.validate_session_completion(&run_id), clock.now());
        }
        .instrument(span),
    );
    StartOutcome::Started(started)
}
