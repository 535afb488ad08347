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

use crate::agui::{Opened, ReadError};
use crate::agui_shared::{RunSource, STORE_RETRY, SourceError};
use crate::broker::{CancelAsked, RunClaim};
use crate::state::AppState;

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
        let code = match self.0 {
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
            s if s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED => ErrorCode::Internal,
            _ => ErrorCode::InvalidMessage,
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

/// The user's run `run.run_id`: the one held here or, with gateways
/// sharing a store, by another gateway (a repeated request starts
/// nothing), or a new one started on this gateway's runner (claimed in the
/// store first, and copied there while it runs, so any gateway reads it).
///
/// # Errors
/// The refusal: the runner does not speak AG-UI (501), the user or the
/// gateway holds as many runs as it may (429), the store does not answer
/// and the gateway fails closed (503).
pub(crate) async fn open_run(
    state: &Arc<AppState>,
    user: &str,
    run: RunAgent,
) -> Result<RunSource, Refused> {
    if !state.runner.speaks_ag_ui() {
        return Err(Refused(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            "the gateway's agent does not speak AG-UI (run it with --agent-protocol ag-ui, or the simulated agent)".into(),
        ));
    }
    let RunAgent {
        run_id,
        thread_id,
        input,
        ..
    } = run;
    if let Some(log) = state.ag_ui_runs.get(user, &run_id) {
        return Ok(RunSource::local(state, log));
    }
    let max = state.config.agents.max_runs_per_user;
    if state.runs.in_flight(user) >= max {
        return Err(capped(max));
    }
    let internal_id = state.next_id("run");
    // Claimed in the store before anything is made here: of two requests
    // for one runId, on any gateways, one starts it, the other reads it.
    let mut shared = false;
    if state.shared.spans_gateways() {
        let broker = state.shared.broker();
        let ttl = state.config.agents.run_retention + 2 * state.config.agents.run_owner_lease;
        match broker.claim_run(user, &run_id, &internal_id, ttl).await {
            Ok(RunClaim::New) => shared = true,
            // A gateway runs (or ran) it: read it from the store.
            Ok(RunClaim::Held(_)) => return Ok(RunSource::remote(state, user, &run_id)),
            Err(e) if state.shared.fail_closed() => {
                state.shared.store_failed(&e);
                return Err(Refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    unavailable_message(&e),
                ));
            }
            Err(e) => {
                // Fail open: the run is read here only.
                state.shared.store_failed(&e);
                tracing::warn!(error = %e, "claiming an AG-UI run in the store failed: it is read on this gateway only");
            }
        }
    }
    // Gives the claim up when the run does not start here after all: a
    // retry may start it, here or elsewhere.
    let unclaim = async |state: &Arc<AppState>| {
        if shared {
            let _ = state
                .shared
                .broker()
                .release_run(user, &run_id, &internal_id)
                .await;
        }
    };
    let opened = state
        .ag_ui_runs
        .open(user, &run_id, &thread_id, &internal_id, state.clock.now());
    let log = match opened {
        Ok(Opened::New(log)) => log,
        // A request for it here got there first (without the store).
        Ok(Opened::Existing(log)) => {
            unclaim(state).await;
            return Ok(RunSource::local(state, log));
        }
        Err(e) => {
            unclaim(state).await;
            return Err(Refused(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                e.to_string(),
            ));
        }
    };
    let started = state
        .runs
        .start_ag_ui_run(user, input, log.clone(), state.runner.clone());
    if started.is_none() {
        state.ag_ui_runs.remove(user, &run_id);
        unclaim(state).await;
        return Err(capped(max));
    }
    if shared {
        crate::agui_shared::mirror(state, log.clone());
    }
    Ok(RunSource::local(state, log))
}

/// The refusal of a run over the user's runs in flight.
fn capped(max: usize) -> Refused {
    Refused(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("at most {max} runs in flight per user: wait for one to end, or stop one"),
    )
}

/// The message of the 404 (or `not_found` frame) for a run of the user's
/// that no gateway holds.
pub(crate) fn not_found_message(run_id: &str) -> String {
    format!(
        "no run {:?} of yours (or it ended longer ago than the run retention)",
        crate::logging::log_safe(run_id)
    )
}

/// The message of a refusal because the store does not answer.
pub(crate) fn unavailable_message(e: &wsc_core::StoreError) -> String {
    format!("the gateways' shared store does not answer ({e}): retry shortly")
}

/// The message of a refusal of events no longer held.
pub(crate) fn gone_message(after: u64, oldest: u64) -> String {
    format!(
        "events after {after} are no longer held (the oldest held is {oldest}): the run outgrew its byte budget"
    )
}

/// A connection's session, as the AG-UI requests need it.
pub(crate) struct Session<'a> {
    pub(crate) registry: &'a Arc<SessionRegistry>,
    pub(crate) user: &'a str,
    pub(crate) id: &'a str,
}

/// `run_agent {input}`: starts the run (or finds the user's run with that
/// `runId`, on any gateway) and streams its events into the session from
/// the first. Returns the refusal, if any.
pub(crate) async fn run_agent(
    state: &Arc<AppState>,
    session: &Session<'_>,
    run: RunAgent,
) -> Option<WebSocketMessage> {
    let message_id = run.message_id.clone();
    match open_run(state, session.user, run).await {
        Ok(source) => {
            follow(state, session, source, 0);
            None
        }
        Err(refused) => Some(refused.to_error_frame(message_id.as_ref())),
    }
}

/// `join_run {run_id, after}`: streams the user's run (held by any
/// gateway) into the session from after event number `after`, then live.
/// Returns the refusal, if any: `not_found` for a run that is not the
/// user's (or expired), `gone` when the events after `after` are no longer
/// held, `internal` when the shared store does not answer.
pub(crate) async fn join_run(
    state: &Arc<AppState>,
    session: &Session<'_>,
    join: JoinRun,
) -> Option<WebSocketMessage> {
    let refuse = |code, message: String| Some(refusal(code, message, join.message_id.as_ref()));
    let Some(mut source) = RunSource::find(state, session.user, &join.run_id) else {
        return refuse(ErrorCode::NotFound, not_found_message(&join.run_id));
    };
    match source.read_after(join.after).await {
        Err(SourceError::Gone(ReadError::Gone { after, oldest })) => {
            return refuse(ErrorCode::Gone, gone_message(after, oldest));
        }
        Err(SourceError::NotFound) => {
            return refuse(ErrorCode::NotFound, not_found_message(&join.run_id));
        }
        Err(SourceError::Unavailable(e)) => {
            return refuse(ErrorCode::Internal, unavailable_message(&e));
        }
        Ok(_) => {}
    }
    follow(state, session, source, join.after);
    None
}

/// Cancels the user's run `run_id` (its `runId`) wherever it runs: here
/// at once, on another gateway through the store. Every reader gets
/// `RUN_FINISHED {outcome: cancelled}`.
///
/// # Errors
/// The run is not the user's or has ended (`Ok(false)`), or the store
/// does not answer.
pub(crate) async fn stop(
    state: &AppState,
    user: &str,
    run_id: &str,
) -> Result<bool, wsc_core::StoreError> {
    if let Some(log) = state.ag_ui_runs.get(user, run_id) {
        return Ok(log.ended_at().is_none() && state.runs.stop(user, &log.internal_id));
    }
    if !state.shared.spans_gateways() {
        return Ok(false);
    }
    let asked = state.shared.broker().cancel_run(user, run_id).await?;
    Ok(asked == CancelAsked::Asked)
}

/// Follows the run into the session from after event `after` (or after
/// the last event the session got of it before): each event becomes one
/// frame of the session, its message id `ag-ui:N:RUN`, until the run's
/// end or the session's. The session counts as the run's reader meanwhile
/// (an orphan is a run no one follows). A session already following the
/// run gets no second copy. Whatever stops it early (events no longer
/// held, a store that stays unreachable) is told to the session as an
/// `error` frame naming the run, never a silent stop.
fn follow(state: &Arc<AppState>, session: &Session<'_>, mut source: RunSource, after: u64) {
    let Some(joined) = state.ag_ui_runs.join(
        session.id,
        session.user,
        source.run_id(),
        after,
        &state.clock,
    ) else {
        return;
    };
    let (state, registry, session_id) = (
        state.clone(),
        session.registry.clone(),
        session.id.to_owned(),
    );
    tokio::spawn(async move {
        let run_id = source.run_id().to_owned();
        let mut last = joined.from;
        loop {
            let read = match source.read_patiently(last).await {
                Ok(read) => read,
                Err(e) => {
                    // Never a silent gap: the session is told, and the
                    // client can join again.
                    let (code, message) = match e {
                        SourceError::Gone(ReadError::Gone { oldest, .. }) => (
                            ErrorCode::Gone,
                            format!(
                                "run {run_id}: events after {last} are no longer held (the oldest held is {oldest})"
                            ),
                        ),
                        SourceError::NotFound => (
                            ErrorCode::NotFound,
                            format!("run {run_id}: no longer held (expired)"),
                        ),
                        SourceError::Unavailable(e) => (
                            ErrorCode::Internal,
                            format!("run {run_id}: {}", unavailable_message(&e)),
                        ),
                    };
                    let mut error = ErrorFrame::new(code, message).to_message();
                    error.payload["run_id"] = run_id.as_str().into();
                    let frame = WireFrame::encode(&error.with_timestamp(state.clock.now()));
                    let id = format!("ag-ui:{}:{last}:{run_id}", code.as_str());
                    let _ = registry
                        .publish_frame_once(&session_id, &frame, Some(&id))
                        .await;
                    return;
                }
            };
            for (number, event) in &read.events {
                let frame = WireFrame::ag_ui(&run_id, event, Some(state.clock.now()));
                let id = format!("ag-ui:{number}:{run_id}");
                // Once per session: the join starts after what the session
                // got before (a repeated run_agent or join_run appends
                // nothing twice), so no look-up of the id is needed. (A
                // session that got events through another gateway's
                // follower, one that died, gets them again here only as
                // repeats: a shared store appends a message id once.)
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
            if caught_up && read.events.is_empty() {
                source.wait(last).await;
                // Let the run append what it has at hand: one read (and one
                // write to the socket) for several events.
                tokio::task::yield_now().await;
            }
        }
    });
}
