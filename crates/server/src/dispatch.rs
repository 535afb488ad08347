//! What the gateway does with a client's frame: parsed once
//! ([`ClientFrame`], bounds checked in `wsc-core`), rate limited, measured,
//! then one `match` on the request it makes. The socket (reading, writing,
//! heartbeats, the close) is the `connection` module's; runs are the `run`
//! module's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use wsc_core::{
    Ack, AgUiClientFrame, ClientFrame, ClientRequest, ErrorCode, ErrorFrame, Frame, MessageType,
    WebSocketMessage,
};
use wsc_reconnection::SessionRegistry;

use crate::agui_ws::{Dialect, Session};
use crate::runs::Origin;
use crate::state::AppState;

/// What [`handle_text`] needs of its connection.
pub(crate) struct Conn<'a> {
    pub(crate) registry: &'a Arc<SessionRegistry>,
    pub(crate) user: &'a str,
    pub(crate) ip: std::net::IpAddr,
    pub(crate) session_id: &'a str,
    pub(crate) connection_id: &'a str,
    /// An application's handler's queue (the axum adapter).
    pub(crate) requests: Option<&'a mpsc::Sender<WebSocketMessage>>,
    /// The protocol the connection speaks.
    pub(crate) dialect: Dialect,
    /// Its control frames' own budget.
    pub(crate) control: &'a ControlBudget,
}

/// `stop_agent` and `ack` frames a connection may send per second. They
/// only lower the load (a run stops, a buffer shrinks), so the user's and
/// the IP's message windows never refuse them — a user over its message
/// limit can still cancel its runs — and this small budget of their own
/// bounds a client that floods them.
pub(crate) const CONTROL_FRAMES_PER_SECOND: u32 = 20;

/// A connection's budget of control frames: a one-second window.
#[derive(Debug, Default)]
pub(crate) struct ControlBudget {
    window: std::sync::Mutex<(i64, u32)>,
}

impl ControlBudget {
    /// Takes one control frame at `now`: `Err(ms)` until the window
    /// admits again when it is spent.
    fn take(&self, now: wsc_core::Timestamp) -> Result<(), u64> {
        let second = now.as_unix_micros().div_euclid(1_000_000);
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 >= CONTROL_FRAMES_PER_SECOND {
            let into = now.as_unix_micros().rem_euclid(1_000_000);
            return Err(u64::try_from((1_000_000 - into) / 1_000)
                .unwrap_or(1)
                .max(1));
        }
        window.1 += 1;
        Ok(())
    }
}

impl Conn<'_> {
    fn origin(&self) -> Origin<'_> {
        Origin {
            registry: self.registry,
            user: self.user,
            session_id: self.session_id,
        }
    }

    fn session(&self) -> Session<'_> {
        Session {
            registry: self.registry,
            user: self.user,
            id: self.session_id,
        }
    }
}

/// Handles one client text frame; returns its replies (often none).
pub(crate) async fn handle_text(
    state: &Arc<AppState>,
    conn: &Conn<'_>,
    text: &str,
) -> Vec<WebSocketMessage> {
    let max = state.config.limits.max_frame_bytes;
    let parsed = match conn.dialect {
        Dialect::Wsc => ClientFrame::parse(text, max).map(AgUiClientFrame::Wsc),
        Dialect::AgUi => AgUiClientFrame::parse(text, max),
    };
    let frame = match parsed {
        Ok(AgUiClientFrame::Wsc(frame)) => frame,
        Ok(request) => return handle_ag_ui(state, conn, request).await,
        Err(e) => {
            state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            state.perf.record_error(conn.connection_id);
            return vec![e.to_error_frame()];
        }
    };
    let control = matches!(
        frame.request,
        ClientRequest::StopAgent(_) | ClientRequest::AckSeq(_)
    );
    let refused = if control {
        admit_control(state, conn, &frame.message)
    } else {
        admit(state, conn, &frame.message).await
    };
    if let Some(refused) = refused {
        return vec![refused];
    }
    handle_frame(state, conn, frame).await
}

/// Counts a control frame (`stop_agent`, `ack`) in its connection's own
/// budget, outside the message windows (the refusal when it is spent).
fn admit_control(
    state: &AppState,
    conn: &Conn<'_>,
    msg: &WebSocketMessage,
) -> Option<WebSocketMessage> {
    if let Err(retry_ms) = conn.control.take(state.clock.now()) {
        state.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut reply = ErrorFrame::new(
            ErrorCode::RateLimited,
            format!("at most {CONTROL_FRAMES_PER_SECOND} stop_agent and ack frames a second per connection"),
        )
        .with_retry_after_ms(retry_ms);
        if let Some(id) = &msg.message_id {
            reply = reply.with_ref_message_id(id.clone());
        }
        return Some(reply.to_message());
    }
    state.perf.record_message_processed(conn.connection_id, msg);
    None
}

/// Counts a client's frame in its rate limits (the refusal when over one)
/// and in its connection's measurements.
async fn admit(
    state: &AppState,
    conn: &Conn<'_>,
    msg: &WebSocketMessage,
) -> Option<WebSocketMessage> {
    if let Err(e) = state
        .limiter
        .record_message_from(conn.user, conn.ip, msg)
        .await
    {
        state.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut reply = ErrorFrame::new(ErrorCode::RateLimited, e.to_string());
        if let Some(retry) = e.retry_after {
            reply = reply.with_retry_after_ms(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        }
        if let Some(id) = &msg.message_id {
            reply = reply.with_ref_message_id(id.clone());
        }
        return Some(reply.to_message());
    }
    state.perf.record_message_processed(conn.connection_id, msg);
    None
}

/// The AG-UI dialect's own requests: `run_agent` (counted as the
/// `start_agent` it stands for) and `join_run`.
async fn handle_ag_ui(
    state: &Arc<AppState>,
    conn: &Conn<'_>,
    request: AgUiClientFrame,
) -> Vec<WebSocketMessage> {
    let message_id = match &request {
        AgUiClientFrame::RunAgent(run) => run.message_id.clone(),
        AgUiClientFrame::JoinRun(join) => join.message_id.clone(),
        AgUiClientFrame::Wsc(frame) => frame.message.message_id.clone(),
        _ => None,
    };
    let mut counted = WebSocketMessage::new(MessageType::StartAgent, serde_json::json!({}));
    counted.message_id = message_id;
    if let Some(refused) = admit(state, conn, &counted).await {
        return vec![refused];
    }
    let session = conn.session();
    let reply = match request {
        AgUiClientFrame::RunAgent(run) => crate::agui_ws::run_agent(state, &session, run).await,
        AgUiClientFrame::JoinRun(join) => crate::agui_ws::join_run(state, &session, join).await,
        _ => None,
    };
    reply.into_iter().collect()
}

/// A frame of the wsc protocol (in either dialect), admitted.
async fn handle_frame(
    state: &Arc<AppState>,
    conn: &Conn<'_>,
    frame: ClientFrame,
) -> Vec<WebSocketMessage> {
    let msg = &frame.message;
    let ag_ui = conn.dialect == Dialect::AgUi;
    match &frame.request {
        ClientRequest::Ping => vec![WebSocketMessage::new(
            MessageType::Pong,
            frame.message.payload,
        )],
        ClientRequest::StartAgent(_) if ag_ui => vec![
            ErrorFrame::new(
                ErrorCode::InvalidMessage,
                "in the AG-UI dialect a run starts with run_agent {input: RunAgentInput}",
            )
            .to_message(),
        ],
        ClientRequest::StopAgent(stop) if ag_ui => {
            match crate::agui_ws::stop(state, conn.user, &stop.run_id).await {
                Ok(true) => Vec::new(),
                Ok(false) => vec![
                    ErrorFrame::new(
                        ErrorCode::NotFound,
                        format!(
                            "no run {:?} of yours is in flight",
                            crate::logging::log_safe(&stop.run_id)
                        ),
                    )
                    .to_message(),
                ],
                Err(e) => vec![
                    ErrorFrame::new(ErrorCode::Internal, crate::agui_ws::unavailable_message(&e))
                        .to_message(),
                ],
            }
        }
        ClientRequest::StartAgent(_) => match conn.requests {
            Some(requests) => {
                // A handler that is gone takes no more requests.
                let _ = requests.send(frame.message).await;
                Vec::new()
            }
            None => state
                .runs
                .start_run(conn.origin(), &frame, state.runner.clone())
                .await
                .refusal()
                .into_iter()
                .collect(),
        },
        ClientRequest::StopAgent(stop) => {
            if state.runs.stop(conn.user, &stop.run_id) {
                Vec::new()
            } else {
                vec![
                    ErrorFrame::new(
                        ErrorCode::InvalidMessage,
                        format!("no run {:?} of yours is in flight", stop.run_id),
                    )
                    .to_message(),
                ]
            }
        }
        ClientRequest::Chat { .. } => {
            let ack = msg
                .message_id
                .clone()
                .map(|id| Ack::message(id).to_message());
            if let Some(requests) = conn.requests {
                let _ = requests.send(frame.message).await;
                return ack.into_iter().collect();
            }
            if ag_ui || !state.runner.runs_on_user_messages() {
                return ack.into_iter().collect();
            }
            // An upstream agent answers chat: the content is the run's
            // input (the message id, if any, keys the run as a start's).
            let refused = state
                .runs
                .start_run(conn.origin(), &frame, state.runner.clone())
                .await
                .refusal();
            ack.into_iter().chain(refused).collect()
        }
        ClientRequest::AckSeq(seq) => {
            let _ = conn.registry.ack(conn.session_id, *seq).await;
            Vec::new()
        }
        _ => Vec::new(),
    }
}
