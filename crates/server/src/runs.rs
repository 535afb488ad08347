//! `RunTable`: starts runs (capped per user, idempotent by message id),
//! keeps the runs in flight, per user, capped
//! (`AgentsConfig::max_runs_per_user`); how `stop_agent` and session expiry
//! reach one; and what the dashboard's runs panel shows (runs in flight,
//! the most recent failed or cancelled runs with their reason).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;
use wsc_core::{ClientFrame, ErrorCode, ErrorFrame, Frame, WebSocketMessage};
use wsc_event_monitor::AgentSession;

use dashmap::DashMap;
use serde::Serialize;
use wsc_core::Timestamp;
use wsc_event_monitor::EventValidationError;
use wsc_reconnection::SessionRegistry;

use crate::counters::{Counters, Ids};
use crate::logging::log_safe;
use crate::run::{
    AgentRequest, AgentRunner, CancelReason, EventSink, Progress, Run, RunIdentity, RunServices,
    RunSession, Terminal,
};

/// How many ended runs the table remembers (failed or cancelled ones).
const RECENT_ENDED: usize = 20;
/// How many runs in flight a snapshot lists (the oldest first).
const SHOWN_IN_FLIGHT: usize = 50;
/// The longest reason a snapshot shows, in characters.
const MAX_REASON_CHARS: usize = 200;

/// The runs in flight: who owns each, and how to stop it.
#[derive(Debug)]
pub(crate) struct RunTable {
    max_per_user: usize,
    services: Arc<RunServices>,
    runs: DashMap<String, Arc<Run>>,
    per_user: DashMap<String, usize>,
    ended: Mutex<VecDeque<EndedRun>>,
}

/// A run's place in its user's count; released when dropped (the run's
/// task ended, however it ended).
#[derive(Debug)]
pub(crate) struct RunSlot {
    table: Arc<RunTable>,
    user: String,
    run_id: String,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.table.runs.remove(&self.run_id);
        self.table.per_user.remove_if_mut(&self.user, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl RunSlot {
    /// Ends the run: a failed or cancelled one is remembered with its
    /// reason (`validation` is the event monitor's verdict on the run).
    pub(crate) fn finish(self, validation: Result<bool, EventValidationError>, now: Timestamp) {
        let Some(entry) = self.table.runs.get(&self.run_id) else {
            return;
        };
        let run = entry.value();
        let progress = run.progress();
        let ended =
            outcome(&progress, run.cancel_reason(), validation).map(|(outcome, reason)| EndedRun {
                run_id: self.run_id.clone(),
                user_id: run.id.user.clone(),
                agent_name: run.id.agent_name.clone(),
                outcome,
                reason: clip(&reason),
                events: progress.events,
                ended_at: now.as_unix_secs_f64(),
                duration_secs: now.duration_since(run.id.started_at).as_secs_f64(),
            });
        drop(entry);
        if let Some(ended) = ended {
            let mut recent = self.table.ended.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() == RECENT_ENDED {
                recent.pop_front();
            }
            recent.push_back(ended);
        }
    }
}

/// Whether a run that ended is worth showing: `("cancelled" | "failed",
/// reason)`, or `None` for a run that completed and validated.
fn outcome(
    progress: &Progress,
    cancelled: Option<CancelReason>,
    validation: Result<bool, EventValidationError>,
) -> Option<(&'static str, String)> {
    match &progress.terminal {
        Some(Terminal::Error { code, message }) if code == "cancelled" => Some((
            "cancelled",
            match cancelled {
                Some(reason) => reason.message().to_owned(),
                None => message.clone(),
            },
        )),
        Some(Terminal::Error { code, message }) => {
            let code = if code.is_empty() { "agent_error" } else { code };
            Some(("failed", format!("{code}: {message}")))
        }
        Some(Terminal::Completed) => match validation {
            Ok(_) | Err(EventValidationError::UnknownSession(_)) => None,
            Err(EventValidationError::OrderViolation { violations, .. }) => Some((
                "failed",
                format!(
                    "order violation: {}",
                    violations
                        .first()
                        .map_or_else(String::new, ToString::to_string)
                ),
            )),
            Err(e) => Some(("failed", e.to_string())),
        },
        None if cancelled.is_some() => Some((
            "cancelled",
            cancelled.map_or("", CancelReason::message).to_owned(),
        )),
        None => Some((
            "failed",
            "the agent ended without agent_completed or agent_error".to_owned(),
        )),
    }
}

/// `reason` cut to [`MAX_REASON_CHARS`] characters.
fn clip(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((at, _)) => format!("{}…", &reason[..at]),
        None => reason.to_owned(),
    }
}

/// A run in flight, as the dashboard shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct RunView {
    pub(crate) run_id: String,
    pub(crate) user_id: String,
    pub(crate) agent_name: String,
    /// Seconds since it started.
    pub(crate) age_secs: f64,
    /// Events emitted so far.
    pub(crate) events: u64,
    /// The last event's type (`None` before the first).
    pub(crate) last_event: Option<&'static str>,
    /// Seconds since the last event (since the start before the first).
    pub(crate) idle_secs: f64,
}

/// A run that ended failed or cancelled.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct EndedRun {
    pub(crate) run_id: String,
    pub(crate) user_id: String,
    pub(crate) agent_name: String,
    /// `"failed"` or `"cancelled"`.
    pub(crate) outcome: &'static str,
    /// Why, in words (`code: message` for an `agent_error`).
    pub(crate) reason: String,
    /// Events it emitted.
    pub(crate) events: u64,
    /// When it ended (Unix seconds).
    pub(crate) ended_at: f64,
    /// How long it ran.
    pub(crate) duration_secs: f64,
}

/// The runs panel's data (`/api/stats` `runs`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct RunsSnapshot {
    /// Runs in flight in all.
    pub(crate) in_flight: usize,
    /// The oldest of them (at most 50), oldest first.
    pub(crate) oldest: Vec<RunView>,
    /// The most recent failed or cancelled runs (at most 20), newest first.
    pub(crate) recent_ended: Vec<EndedRun>,
}

impl RunTable {
    pub(crate) fn new(max_per_user: usize, services: Arc<RunServices>) -> Self {
        RunTable {
            max_per_user,
            services,
            runs: DashMap::new(),
            per_user: DashMap::new(),
            ended: Mutex::new(VecDeque::with_capacity(RECENT_ENDED)),
        }
    }

    /// Registers a run if its user has fewer than the cap in flight;
    /// `None` at the cap.
    pub(crate) fn register(self: &Arc<Self>, run: Arc<Run>) -> Option<RunSlot> {
        {
            let mut n = self.per_user.entry(run.id.user.clone()).or_insert(0);
            if *n >= self.max_per_user {
                return None;
            }
            *n += 1;
        }
        let slot = RunSlot {
            table: self.clone(),
            user: run.id.user.clone(),
            run_id: run.id.run_id.clone(),
        };
        self.runs.insert(run.id.run_id.clone(), run);
        Some(slot)
    }

    /// The gateway's ids (of runs started without a message id, and of
    /// connections).
    pub(crate) fn ids(&self) -> &Ids {
        &self.services.ids
    }

    /// Cancels `user`'s run `run_id`; false if no such run of theirs is in
    /// flight.
    pub(crate) fn stop(&self, user: &str, run_id: &str) -> bool {
        match self.runs.get(run_id) {
            Some(run) if run.id.user == user => {
                run.cancel(CancelReason::Stopped);
                true
            }
            _ => false,
        }
    }

    /// Whether a frame published by a backend (`POST /api/publish`) may
    /// carry `run_id`: not if it names a run this gateway's agents run or
    /// remember (any user's) — only a run's agent emits its events, so a
    /// publish can neither end nor break a run it did not start. A run id
    /// of the backend's own (runs it drives through the publish API) is
    /// free.
    ///
    /// # Errors
    /// Why the run id is refused.
    pub(crate) fn check_published(&self, run_id: &str) -> Result<(), String> {
        if self.runs.contains_key(run_id) || self.services.monitor.tracker(run_id).is_some() {
            return Err(format!(
                "run {run_id} is run by the gateway's agent: only its agent emits its events (publish under a run_id of your own)"
            ));
        }
        Ok(())
    }

    /// The sessions that have runs in flight, each with the registry that
    /// holds it.
    pub(crate) fn sessions(&self) -> Vec<(String, Arc<SessionRegistry>)> {
        let mut sessions: HashMap<String, Arc<SessionRegistry>> = HashMap::new();
        for run in &self.runs {
            if let Some(session) = &run.id.session {
                sessions
                    .entry(session.id.clone())
                    .or_insert_with(|| session.registry.clone());
            }
        }
        sessions.into_iter().collect()
    }

    /// Cancels the run `run_id` (its table id) because no one reads it;
    /// false if it is not in flight.
    pub(crate) fn cancel_orphan(&self, run_id: &str) -> bool {
        match self.runs.get(run_id) {
            Some(run) => {
                run.cancel(CancelReason::Orphaned);
                true
            }
            None => false,
        }
    }

    /// Cancels every run of a session that expired; how many.
    pub(crate) fn cancel_session(&self, session_id: &str) -> usize {
        let mut n = 0;
        for run in &self.runs {
            if run.id.session.as_ref().is_some_and(|s| s.id == session_id) {
                run.cancel(CancelReason::SessionExpired);
                n += 1;
            }
        }
        n
    }

    /// Runs in flight for `user`.
    pub(crate) fn in_flight(&self, user: &str) -> usize {
        self.per_user.get(user).map_or(0, |n| *n)
    }

    /// Runs in flight in all.
    pub(crate) fn total(&self) -> usize {
        self.runs.len()
    }

    /// What the runs panel shows, at `now`.
    pub(crate) fn snapshot(&self, now: Timestamp) -> RunsSnapshot {
        let mut oldest: Vec<RunView> = self
            .runs
            .iter()
            .map(|entry| {
                let run = entry.value();
                let progress = run.progress();
                let last_at = progress.last.map_or(run.id.started_at, |(_, at)| at);
                RunView {
                    run_id: entry.key().clone(),
                    user_id: run.id.user.clone(),
                    agent_name: run.id.agent_name.clone(),
                    age_secs: now.duration_since(run.id.started_at).as_secs_f64(),
                    events: progress.events,
                    last_event: progress.last.map(|(t, _)| t.as_str()),
                    idle_secs: now.duration_since(last_at).as_secs_f64(),
                }
            })
            .collect();
        let in_flight = oldest.len();
        oldest.sort_by(|a, b| {
            b.age_secs
                .total_cmp(&a.age_secs)
                .then_with(|| a.run_id.cmp(&b.run_id))
        });
        oldest.truncate(SHOWN_IN_FLIGHT);
        let recent_ended = self
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        RunsSnapshot {
            in_flight,
            oldest,
            recent_ended,
        }
    }
}

/// The session whose run is marked as this gateway's in the shared store
/// (a WebSocket session's run, with other gateways to tell if this one
/// dies); `None` for any other run.
fn marked_session(run: &Run, services: &RunServices) -> Option<String> {
    (run.log.is_none() && services.shared.spans_gateways())
        .then(|| run.id.session.as_ref().map(|s| s.id.clone()))
        .flatten()
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
    /// A refusal of `msg`: an `error` frame with `code` and `text` that
    /// names the message (`ref_message_id`) when it has an id.
    fn refused(code: ErrorCode, text: String, msg: &WebSocketMessage) -> Self {
        let mut refusal = ErrorFrame::new(code, text);
        if let Some(id) = &msg.message_id {
            refusal = refusal.with_ref_message_id(id.clone());
        }
        StartOutcome::Refused(refusal.to_message())
    }

    /// The reply for the client: only a refusal has one.
    pub(crate) fn refusal(self) -> Option<WebSocketMessage> {
        match self {
            StartOutcome::Refused(reply) => Some(reply),
            StartOutcome::Started(_) | StartOutcome::Repeated => None,
        }
    }
}

/// The pace a start refused over the runs-in-flight cap is told to retry
/// at (`retry_after_ms`): a run rarely ends sooner.
const CAPPED_RETRY_MS: u64 = 1_000;

/// The session a run is started for.
pub(crate) struct Origin<'a> {
    pub(crate) registry: &'a Arc<SessionRegistry>,
    pub(crate) user: &'a str,
    pub(crate) session_id: &'a str,
}

impl RunTable {
    /// Starts the run `frame` asks for (a `start_agent`, or a
    /// `user_message`/`chat` whose content is the input) with `runner`:
    /// counted against its user's runs in flight, idempotent by its message
    /// id within the session, tracked by the event monitor, its task spawned.
    pub(crate) async fn start_run(
        self: &Arc<Self>,
        origin: Origin<'_>,
        frame: &ClientFrame,
        runner: Arc<dyn AgentRunner>,
    ) -> StartOutcome {
        let services = &self.services;
        let Origin {
            registry,
            user,
            session_id,
        } = origin;
        let msg = &frame.message;
        let Some(start) = frame.start() else {
            return StartOutcome::refused(
                ErrorCode::InvalidMessage,
                format!("a `{}` frame starts no run", msg.message_type),
                msg,
            );
        };
        // A `message_id` is the start's idempotency key within the session: a
        // client that lost its connection right after sending a start cannot
        // know whether it arrived, so it sends it again with the same id. The
        // run id is derived from it, so the repeat is recognised here, and on
        // another gateway (on Redis) its events carry the same message ids,
        // which the shared store appends once.
        let run_id = match &msg.message_id {
            Some(id) => idempotent_run_id(session_id, id),
            None => self.ids().next("run"),
        };
        // The session remembers its start keys (bounded, for its life; with
        // Redis on every gateway): a repeat is recognised however long ago the
        // first ran, whatever else the monitor has evicted since.
        let key = format!("start:{run_id}");
        let repeated = || {
            services
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
                    services.shared.session_store_failed(&e);
                    services.monitor.is_tracking(&run_id)
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
            session: Some(RunSession {
                id: session_id.to_owned(),
                registry: registry.clone(),
            }),
            thread_id: thread_id.clone(),
            started_at: services.clock.now(),
        }));
        let Some(slot) = self.register(run.clone()) else {
            Counters::bump(&services.counters.rate_limited);
            let max = self.max_per_user;
            let mut refusal = ErrorFrame::new(
                ErrorCode::RateLimited,
                format!("at most {max} runs in flight per user: wait for one to end, or stop one"),
            )
            .with_limit(wsc_core::LIMIT_RUNS_IN_FLIGHT)
            .with_retry_after_ms(CAPPED_RETRY_MS);
            if let Some(id) = &msg.message_id {
                refusal = refusal.with_ref_message_id(id.clone());
            }
            return StartOutcome::Refused(refusal.to_message());
        };
        // Marked as this gateway's before its start key is claimed: a
        // gateway that dies once the key is claimed leaves its mark, so the
        // run is told (`gateway_lost`), never silently gone.
        let marked = marked_session(&run, services).is_some();
        if marked
            && let Err(e) = services
                .shared
                .broker()
                .run_started(session_id, &run_id)
                .await
        {
            tracing::warn!(error = %e, "run not marked in the shared store");
        }
        if msg.message_id.is_some() {
            match registry.claim_key(session_id, &key).await {
                Ok(true) => {}
                // Claimed in between (on another gateway): a repeat.
                Ok(false) => {
                    repeated();
                    if marked {
                        let _ = services
                            .shared
                            .broker()
                            .run_ended(session_id, &run_id)
                            .await;
                    }
                    return StartOutcome::Repeated;
                }
                // Fail-open: the run starts; the store learns nothing of the
                // key, so only this node's monitor recognises a repeat.
                Err(e) => {
                    tracing::warn!(error = %e, "start key not stored: the store is unreachable");
                    services.shared.session_store_failed(&e);
                }
            }
        }
        let tools = start.tools.unwrap_or_else(|| vec!["search".to_owned()]);
        let step_delay = Duration::from_millis(start.step_delay_ms.unwrap_or(0));
        let request = AgentRequest {
            run_id,
            input: start.input.unwrap_or_default(),
            user_id: user.to_owned(),
            agent_name,
            thread_id,
            tools,
            step_delay,
            ag_ui: None,
        };
        StartOutcome::Started(self.launch(run, slot, request, runner))
    }

    /// Starts `user`'s AG-UI run (`POST /ag-ui`): `input` is the client's
    /// `RunAgentInput`, `log` where its AG-UI events go; no WebSocket
    /// session. `None` if the user has as many runs in flight as it may.
    pub(crate) fn start_ag_ui_run(
        self: &Arc<Self>,
        user: &str,
        input: serde_json::Value,
        log: Arc<crate::agui::RunLog>,
        runner: Arc<dyn AgentRunner>,
    ) -> Option<String> {
        let services = &self.services;
        let run_id = log.internal_id.clone();
        let agent_name = input["forwardedProps"]["agent_name"]
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= 64)
            .unwrap_or("assistant")
            .to_owned();
        let thread_id = Some(log.thread_id.clone());
        let run = Arc::new(
            Run::new(RunIdentity {
                run_id: run_id.clone(),
                user: user.to_owned(),
                agent_name: agent_name.clone(),
                session: None,
                thread_id: thread_id.clone(),
                started_at: services.clock.now(),
            })
            .with_log(log),
        );
        let slot = self.register(run.clone())?;
        // The last user message is the input (as a start's `input`).
        let text = input["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        let request = AgentRequest {
            run_id,
            input: text,
            user_id: user.to_owned(),
            agent_name,
            thread_id,
            // The simulated agent's tools and pause between events (demos,
            // tests): `forwardedProps.tools` and `.step_delay_ms`, bounded
            // as a start's.
            tools: input["forwardedProps"]["tools"]
                .as_array()
                .map(|tools| {
                    tools
                        .iter()
                        .filter_map(serde_json::Value::as_str)
                        .filter(|t| !t.is_empty() && t.len() <= 64)
                        .take(wsc_core::MAX_TOOLS)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_else(|| vec!["search".to_owned()]),
            step_delay: Duration::from_millis(
                input["forwardedProps"]["step_delay_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .min(wsc_core::MAX_STEP_DELAY_MS),
            ),
            ag_ui: Some(input),
        };
        Some(self.launch(run, slot, request, runner))
    }

    /// Runs `request` on `runner` in a task of its own until it ends or is
    /// cancelled; returns the run's id.
    fn launch(
        self: &Arc<Self>,
        run: Arc<Run>,
        slot: RunSlot,
        request: AgentRequest,
        runner: Arc<dyn AgentRunner>,
    ) -> String {
        let services = &self.services;
        // The event monitor tracks it from before its first event.
        let id = &run.id;
        let mut session = AgentSession::new(&id.user)
            .with_run_id(id.run_id.clone())
            .with_agent_name(id.agent_name.clone());
        session.thread_id = id.thread_id.clone();
        services.monitor.start_session_tracking(&id.run_id, session);
        services.counters.runs.fetch_add(1, Ordering::Relaxed);
        let sink = EventSink {
            run: run.clone(),
            services: services.clone(),
        };
        let (monitor, clock) = (services.monitor.clone(), services.clock.clone());
        let started = request.run_id.clone();
        // A run of a WebSocket session was marked as this gateway's in the
        // shared store (`start_run`): unmarked when it ends here.
        let marked = marked_session(&run, services);
        let broker = services.shared.broker().clone();
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
                if let Some(session) = &marked {
                    let _ = broker.run_ended(session, &run_id).await;
                }
            }
            .instrument(span),
        );
        started
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wsc_core::MessageType;
    use wsc_reconnection::SessionConfig;

    use super::*;

    fn table_of(max_per_user: usize) -> RunTable {
        let clock = wsc_core::ManualClock::default().shared();
        let counters = Arc::new(Counters::default());
        let sessions = Arc::new(SessionRegistry::with_clock(
            SessionConfig::default(),
            clock.clone(),
        ));
        let shared = Arc::new(crate::shared::Shared::new(
            Arc::new(crate::broker::MemoryBroker),
            Default::default(),
            sessions.clone(),
            sessions,
            String::new(),
            counters.clone(),
        ));
        let services = Arc::new(RunServices {
            ids: Ids::new("node".into()),
            monitor: Arc::new(wsc_event_monitor::EventMonitor::with_clock(
                Default::default(),
                clock.clone(),
            )),
            clock,
            shared,
            counters,
            limits: crate::run::RunLimits {
                max_events: 1_000,
                max_bytes: 1 << 20,
            },
        });
        RunTable::new(max_per_user, services)
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_micros(secs * 1_000_000)
    }

    fn new_run(user: &str, run_id: &str, session_id: &str, started: i64) -> Arc<Run> {
        Arc::new(Run::new(crate::run::RunIdentity {
            user: user.into(),
            run_id: run_id.into(),
            agent_name: "assistant".into(),
            session: Some(RunSession {
                id: session_id.into(),
                registry: Arc::new(SessionRegistry::new(SessionConfig::default())),
            }),
            thread_id: None,
            started_at: at(started),
        }))
    }

    /// A run started over AG-UI has no session: its text deltas are not
    /// built into frames, yet every mapped event counts — in the run's
    /// progress and in the event monitor.
    #[tokio::test]
    async fn a_session_less_ag_ui_run_counts_every_event() {
        let table = Arc::new(table_of(4));
        let run = Arc::new(Run::new(crate::run::RunIdentity {
            user: "ana".into(),
            run_id: "r".into(),
            agent_name: "assistant".into(),
            session: None,
            thread_id: None,
            started_at: at(0),
        }));
        let _slot = table.register(run.clone()).expect("registered");
        let monitor = &table.services.monitor;
        monitor.start_session_tracking("r", wsc_event_monitor::AgentSession::new("ana"));
        let sink = EventSink {
            run: run.clone(),
            services: table.services.clone(),
        };
        let mut events = vec![
            json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"}),
            json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
        ];
        for n in 0..3 {
            events.push(
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": format!("w{n}")}),
            );
        }
        events.push(json!({"type": "STATE_SNAPSHOT", "snapshot": {}}));
        events.push(json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}));
        events.push(json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}));
        for e in &events {
            assert!(
                sink.emit_ag_ui(&e.to_string())
                    .await
                    .expect("a valid event")
            );
        }
        // agent_started, agent_thinking, three chunks, one progress frame,
        // agent_completed.
        assert_eq!(run.progress().events, 7);
        let tracker = monitor.tracker("r").expect("tracked");
        assert_eq!(tracker.total_events, 7);
        let last = run.progress().last.map(|(t, _)| t);
        assert_eq!(last, Some(MessageType::AgentCompleted));
    }

    fn start(table: &Arc<RunTable>, user: &str, run_id: &str) -> Option<RunSlot> {
        table.register(new_run(user, run_id, "s", 0))
    }

    #[test]
    fn the_cap_counts_runs_until_their_slots_drop() {
        let table = Arc::new(table_of(2));
        let a = start(&table, "u", "r1").unwrap();
        let b = start(&table, "u", "r2").unwrap();
        assert!(start(&table, "u", "r3").is_none());
        assert!(start(&table, "v", "r4").is_some(), "per user");
        assert_eq!(table.in_flight("u"), 2);
        drop(a);
        assert_eq!(table.in_flight("u"), 1);
        let _c = start(&table, "u", "r3").unwrap();
        drop(b);
        assert_eq!((table.in_flight("u"), table.total()), (1, 1));
    }

    #[test]
    fn only_the_owner_stops_a_run() {
        let table = Arc::new(table_of(4));
        let run = new_run("u", "r1", "s", 0);
        let _slot = table.register(run.clone()).unwrap();
        assert!(!table.stop("mallory", "r1"));
        assert!(!run.is_cancelled());
        assert!(!table.stop("u", "nope"));
        assert!(table.stop("u", "r1"));
        assert_eq!(run.cancel_reason(), Some(CancelReason::Stopped));
    }

    #[test]
    fn an_expired_session_cancels_its_runs_only() {
        let table = Arc::new(table_of(4));
        let (a, b, c) = (
            new_run("u", "r1", "s1", 0),
            new_run("u", "r2", "s1", 0),
            new_run("u", "r3", "s2", 0),
        );
        let _s1 = table.register(a.clone()).unwrap();
        let _s2 = table.register(b.clone()).unwrap();
        let _s3 = table.register(c.clone()).unwrap();
        let mut sessions: Vec<String> = table.sessions().into_iter().map(|(s, _)| s).collect();
        sessions.sort();
        assert_eq!(sessions, ["s1", "s2"]);
        assert_eq!(table.cancel_session("s1"), 2);
        assert_eq!(a.cancel_reason(), Some(CancelReason::SessionExpired));
        assert_eq!(b.cancel_reason(), Some(CancelReason::SessionExpired));
        assert!(!c.is_cancelled());
        // The first reason stands.
        table.stop("u", "r1");
        assert_eq!(a.cancel_reason(), Some(CancelReason::SessionExpired));
    }

    #[test]
    fn the_snapshot_lists_the_oldest_runs_with_their_last_event() {
        let table = Arc::new(table_of(100));
        let mut slots = Vec::new();
        let mut runs = Vec::new();
        for i in 0..60i64 {
            let run = new_run(&format!("u{i}"), &format!("r{i:02}"), "s", i);
            slots.push(table.register(run.clone()).unwrap());
            runs.push(run);
        }
        runs[3].record(MessageType::ToolExecuting, &json!({}), at(70));
        let snapshot = table.snapshot(at(100));
        assert_eq!(snapshot.in_flight, 60);
        assert_eq!(snapshot.oldest.len(), SHOWN_IN_FLIGHT);
        assert_eq!(snapshot.oldest[0].run_id, "r00", "oldest first");
        assert_eq!(snapshot.oldest[0].age_secs, 100.0);
        assert_eq!(snapshot.oldest[0].last_event, None);
        assert_eq!(snapshot.oldest[0].idle_secs, 100.0);
        let r3 = &snapshot.oldest[3];
        assert_eq!(
            (
                r3.run_id.as_str(),
                r3.user_id.as_str(),
                r3.last_event,
                r3.idle_secs,
                r3.events
            ),
            ("r03", "u3", Some("tool_executing"), 30.0, 1)
        );
        assert!(snapshot.oldest.iter().all(|r| r.run_id.as_str() < "r50"));
        drop(slots);
        assert_eq!(table.snapshot(at(100)).in_flight, 0);
    }

    /// Ends a run that saw `events`, with the monitor's verdict.
    fn ended(
        table: &Arc<RunTable>,
        run_id: &str,
        events: &[(MessageType, serde_json::Value)],
        cancel: Option<CancelReason>,
        validation: Result<bool, EventValidationError>,
    ) {
        let run = new_run("u", run_id, "s", 1);
        let slot = table.register(run.clone()).unwrap();
        for (t, payload) in events {
            run.record(*t, payload, at(2));
        }
        if let Some(reason) = cancel {
            run.cancel(reason);
        }
        slot.finish(validation, at(4));
    }

    #[test]
    fn failed_and_cancelled_runs_are_remembered_with_their_reason() {
        let table = Arc::new(table_of(100));
        let started = (MessageType::AgentStarted, json!({}));
        ended(
            &table,
            "ok",
            &[started.clone(), (MessageType::AgentCompleted, json!({}))],
            None,
            Ok(true),
        );
        ended(
            &table,
            "upstream",
            &[
                started.clone(),
                (
                    MessageType::AgentError,
                    json!({"code": "upstream_timeout", "message": "no event for 30 s"}),
                ),
            ],
            None,
            Err(EventValidationError::RunFailed {
                session_id: "upstream".into(),
                reason: "no event for 30 s".into(),
            }),
        );
        ended(
            &table,
            "stopped",
            &[
                started.clone(),
                (
                    MessageType::AgentError,
                    json!({"code": "cancelled", "message": "the run was stopped by its user"}),
                ),
            ],
            Some(CancelReason::Stopped),
            Err(EventValidationError::Cancelled {
                session_id: "stopped".into(),
            }),
        );
        ended(
            &table,
            "silent",
            std::slice::from_ref(&started),
            None,
            Ok(false),
        );
        ended(
            &table,
            "expired",
            &[started],
            Some(CancelReason::SessionExpired),
            Ok(false),
        );
        let recent = table.snapshot(at(5)).recent_ended;
        let seen: Vec<(&str, &str, &str)> = recent
            .iter()
            .map(|r| (r.run_id.as_str(), r.outcome, r.reason.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "expired",
                    "cancelled",
                    CancelReason::SessionExpired.message()
                ),
                (
                    "silent",
                    "failed",
                    "the agent ended without agent_completed or agent_error"
                ),
                ("stopped", "cancelled", "the run was stopped by its user"),
                ("upstream", "failed", "upstream_timeout: no event for 30 s"),
            ],
            "newest first; the run that completed is not listed"
        );
        assert_eq!((recent[3].events, recent[3].duration_secs), (2, 3.0));
    }

    #[test]
    fn the_recent_list_is_bounded_and_reasons_are_clipped() {
        let table = Arc::new(table_of(100));
        let long = "x".repeat(10_000);
        for i in 0..(RECENT_ENDED + 5) {
            ended(
                &table,
                &format!("r{i}"),
                &[(
                    MessageType::AgentError,
                    json!({"code": "upstream_error", "message": long}),
                )],
                None,
                Ok(false),
            );
        }
        let recent = table.snapshot(at(5)).recent_ended;
        assert_eq!(recent.len(), RECENT_ENDED);
        assert_eq!(recent[0].run_id, format!("r{}", RECENT_ENDED + 4));
        assert!(recent[0].reason.chars().count() <= MAX_REASON_CHARS + 1);
        assert!(recent[0].reason.ends_with('…'));
    }

    #[test]
    fn an_order_violation_fails_a_run_that_completed() {
        use wsc_event_monitor::{OrderViolation, ViolationKind};
        let violation = OrderViolation {
            kind: ViolationKind::EventAfterEnd,
            event_type: MessageType::AgentThinking,
            index: 3,
            at: at(2),
        };
        let got = outcome(
            &Progress {
                events: 3,
                last: None,
                terminal: Some(Terminal::Completed),
            },
            None,
            Err(EventValidationError::OrderViolation {
                session_id: "r".into(),
                violations: vec![violation.clone()],
                count: 1,
            }),
        );
        assert_eq!(
            got,
            Some(("failed", format!("order violation: {violation}")))
        );
    }

    #[test]
    fn reasons_are_clipped_on_character_boundaries() {
        let s = "é".repeat(MAX_REASON_CHARS + 3);
        let clipped = clip(&s);
        assert_eq!(clipped.chars().count(), MAX_REASON_CHARS + 1);
        assert_eq!(clip("short"), "short");
    }
}
