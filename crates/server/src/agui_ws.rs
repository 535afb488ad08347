//! AG-UI over the WebSocket (`/ws?protocol=ag-ui`): the dialect a
//! connection speaks ([`Dialect`]), what its `run_agent`, `join_run` and
//! `stop_agent` do, and the task that follows a run into a session — each
//! of the run's AG-UI events, verbatim, as one numbered frame
//! `{"run_id":R,"event":E,"seq":N}` of the session (buffered, replayed and
//! resumed as every frame is). The runs themselves are the ones `POST
//! /ag-ui` starts: one log per run, any number of readers (SSE and
//! sessions alike).

use std::sync::Arc;

use axum::http::StatusCode;
use wsc_core::{ErrorCode, ErrorFrame, Frame, JoinRun, RunAgent, WebSocketMessage, WireFrame};
use wsc_reconnection::{SessionError, SessionRegistry};

use crate::agui::{Opened, ReadError, RunLog};
use crate::state::AppState;

/// How long a follower waits before publishing again into a store that
/// did not answer.
const STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The protocol a WebSocket connection speaks (`/ws?protocol=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The wsc protocol (`protocol` absent or `wsc`): its own frames.
    #[default]
    Wsc,
    /// `protocol=ag-ui`: runs' events are AG-UI's own, one
    /// `{run_id, event, seq}` frame each.
    AgUi,
}

impl Dialect {
    /// The dialect a `protocol` query parameter asks for.
    ///
    /// # Errors
    /// The refusal's message, for a protocol the gateway does not speak.
    pub(crate) fn from_query(protocol: Option<&str>) -> Result<Dialect, String> {
        match protocol {
            None | Some("wsc") => Ok(Dialect::Wsc),
            Some("ag-ui") => Ok(Dialect::AgUi),
            Some(other) => Err(format!(
                "unsupported protocol {:?}: `wsc` (the default) or `ag-ui`",
                crate::logging::log_safe(other)
            )),
        }
    }
}

/// A refusal not yet turned into a response: its status, its code (the
/// JSON body's `error`) and its message.
pub(crate) struct Refused(
    pub(crate) StatusCode,
    pub(crate) &'static str,
    pub(crate) String,
);

impl Refused {
    /// The refusal as an `error` frame of the WebSocket protocol.
    fn to_error_frame(&self, message_id: Option<&String>) -> WebSocketMessage {
        let code = if self.0 == StatusCode::TOO_MANY_REQUESTS {
            ErrorCode::RateLimited
        } else {
            ErrorCode::InvalidMessage
        };
        refusal(code, self.2.clone(), message_id)
    }
}

fn refusal(code: ErrorCode, message: String, message_id: Option<&String>) -> WebSocketMessage {
    let mut frame = ErrorFrame::new(code, message);
    if let Some(id) = message_id {
        frame = frame.with_ref_message_id(id.clone());
    }
    frame.to_message()
}

/// The user's run `run.run_id`: the one held (a repeated request starts
/// nothing), or a new one started on the gateway's runner.
///
/// # Errors
/// The refusal: the runner does not speak AG-UI (501), or the user or the
/// gateway holds as many runs as it may (429).
pub(crate) fn open_run(
    state: &AppState,
    user: &str,
    run: RunAgent,
) -> Result<Arc<RunLog>, Refused> {
    if !state.runner.speaks_ag_ui() {
        return Err(Refused(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "the gateway's agent does not speak AG-UI (run it with --agent-protocol ag-ui, or the simulated agent)".into(),
        ));
    }
    let internal_id = state.next_id("run");
    let opened = state.ag_ui_runs.open(
        user,
        &run.run_id,
        &run.thread_id,
        &internal_id,
        state.clock.now(),
    );
    match opened {
        Ok(Opened::Existing(log)) => Ok(log),
        Ok(Opened::New(log)) => {
            let started =
                state
                    .runs
                    .start_ag_ui_run(user, run.input, log.clone(), state.runner.clone());
            if started.is_none() {
                state.ag_ui_runs.remove(user, &run.run_id);
                let max = state.config.agents.max_runs_per_user;
                return Err(Refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "at most {max} runs in flight per user: wait for one to end, or stop one"
                    ),
                ));
            }
            Ok(log)
        }
        Err(e) => Err(Refused(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            e.to_string(),
        )),
    }
}

/// Why a run of the user's is not found here: the message of the 404 (or
/// `not_found` frame). Gateways sharing a store do not share AG-UI runs
/// yet: a run is readable on the gateway that runs it, and the message
/// says so rather than leaving the client to guess.
pub(crate) fn not_found_message(state: &AppState, run_id: &str) -> String {
    let mut message = format!(
        "no run {:?} of yours (or it ended longer ago than the run retention)",
        crate::logging::log_safe(run_id)
    );
    if state.shared.spans_gateways() {
        message.push_str(
            "; AG-UI runs are read on the gateway that runs them: \
             send a user's AG-UI requests to one gateway (sticky routing)",
        );
    }
    message
}

/// A connection's session, as the AG-UI requests need it.
pub(crate) struct Session<'a> {
    pub(crate) registry: &'a Arc<SessionRegistry>,
    pub(crate) user: &'a str,
    pub(crate) id: &'a str,
}

/// `run_agent {input}`: starts the run (or finds the user's run with that
/// `runId`) and streams its events into the session from the first.
/// Returns the refusal, if any.
pub(crate) fn run_agent(
    state: &Arc<AppState>,
    session: &Session<'_>,
    run: RunAgent,
) -> Option<WebSocketMessage> {
    let message_id = run.message_id.clone();
    match open_run(state, session.user, run) {
        Ok(log) => {
            follow(state, session, log, 0);
            None
        }
        Err(refused) => Some(refused.to_error_frame(message_id.as_ref())),
    }
}

/// `join_run {run_id, after}`: streams the user's run into the session
/// from after event number `after`, then live. Returns the refusal, if
/// any: `not_found` for a run that is not the user's (or expired), `gone`
/// when the events after `after` are no longer held.
pub(crate) fn join_run(
    state: &Arc<AppState>,
    session: &Session<'_>,
    join: JoinRun,
) -> Option<WebSocketMessage> {
    let refuse = |code, message: String| Some(refusal(code, message, join.message_id.as_ref()));
    let Some(log) = state.ag_ui_runs.get(session.user, &join.run_id) else {
        return refuse(ErrorCode::NotFound, not_found_message(state, &join.run_id));
    };
    if let Err(ReadError::Gone { after, oldest }) = log.read_after(join.after) {
        return refuse(
            ErrorCode::Gone,
            format!(
                "events after {after} are no longer held (the oldest held is {oldest}): the run outgrew its byte budget"
            ),
        );
    }
    follow(state, session, log, join.after);
    None
}

/// `stop_agent {run_id}` of the AG-UI dialect (`run_id` the run's
/// `runId`): whether a run of the user's was in flight and is now
/// cancelled (every reader gets `RUN_FINISHED {outcome: cancelled}`).
pub(crate) fn stop(state: &AppState, user: &str, run_id: &str) -> bool {
    state
        .ag_ui_runs
        .get(user, run_id)
        .is_some_and(|log| log.ended_at().is_none() && state.runs.stop(user, &log.internal_id))
}

/// Follows `log` into the session from after event `after` (or after the
/// last event the session got of it before): each event becomes one frame
/// of the session, its message id `ag-ui:N:RUN`, until the run's end or
/// the session's. The session counts as the run's reader meanwhile (an
/// orphan is a run no one follows). A session already following the run
/// gets no second copy.
fn follow(state: &Arc<AppState>, session: &Session<'_>, log: Arc<RunLog>, after: u64) {
    let Some(joined) = state.ag_ui_runs.join(session.id, &log, after) else {
        return;
    };
    let reader = log.follow(state.clock.clone());
    let (state, registry, session_id) = (
        state.clone(),
        session.registry.clone(),
        session.id.to_owned(),
    );
    tokio::spawn(async move {
        let mut last = joined.from;
        let _reader = reader;
        let mut changes = log.changes();
        loop {
            let read = match log.read_after(last) {
                Ok(read) => read,
                Err(ReadError::Gone { oldest, .. }) => {
                    // Never a silent gap: the session is told, and the
                    // client can join again from what is held.
                    let mut error = ErrorFrame::new(
                        ErrorCode::Gone,
                        format!(
                            "run {}: events after {last} are no longer held (the oldest held is {oldest})",
                            log.run_id
                        ),
                    )
                    .to_message();
                    error.payload["run_id"] = log.run_id.as_str().into();
                    let frame = WireFrame::encode(&error.with_timestamp(state.clock.now()));
                    let id = format!("ag-ui:gone:{last}:{}", log.run_id);
                    let _ = registry
                        .publish_frame_once(&session_id, &frame, Some(&id))
                        .await;
                    return;
                }
            };
            for (number, event) in &read.events {
                let frame = WireFrame::ag_ui(&log.run_id, event, Some(state.clock.now()));
                let id = format!("ag-ui:{number}:{}", log.run_id);
                // Once per session: the join starts after what the session
                // got before (a repeated run_agent or join_run appends
                // nothing twice), so no look-up of the id is needed.
                match registry.publish_frame(&session_id, &frame, Some(&id)).await {
                    Ok(_) => {
                        last = *number;
                        joined.published(last);
                    }
                    Err(SessionError::UnknownSession(_)) => return,
                    Err(e) => {
                        // The store does not answer: the same event again
                        // shortly (the follower keeps its place).
                        tracing::warn!(session_id = %session_id, error = %e, "following an AG-UI run: publishing failed, retrying");
                        state.clock.sleep(STORE_RETRY).await;
                        break;
                    }
                }
            }
            let caught_up = read.events.last().is_none_or(|(n, _)| *n == last);
            if caught_up && read.ended {
                return;
            }
            if caught_up {
                let _ = changes.wait_for(|(n, ended)| *n > last || *ended).await;
            }
        }
    });
}
