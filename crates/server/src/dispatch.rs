//! What the gateway does with a client's frame: parsed once
//! ([`ClientFrame`], bounds checked in `wsc-core`), rate limited, measured,
//! then one `match` on the request it makes. The socket (reading, writing,
//! heartbeats, the close) is the `connection` module's; runs are the `run`
//! module's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use wsc_core::{
    Ack, ClientFrame, ClientRequest, ErrorCode, ErrorFrame, Frame, MessageType, WebSocketMessage,
};
use wsc_reconnection::SessionRegistry;

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
}

impl Conn<'_> {
    fn origin(&self) -> Origin<'_> {
        Origin {
            registry: self.registry,
            user: self.user,
            session_id: self.session_id,
        }
    }
}

/// Handles one client text frame; returns its replies (often none).
pub(crate) async fn handle_text(
    state: &Arc<AppState>,
    conn: &Conn<'_>,
    text: &str,
) -> Vec<WebSocketMessage> {
    let frame = match ClientFrame::parse(text, state.config.limits.max_frame_bytes) {
        Ok(frame) => frame,
        Err(e) => {
            state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            state.perf.record_error(conn.connection_id);
            return vec![e.to_error_frame()];
        }
    };
    let msg = &frame.message;
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
        return vec![reply.to_message()];
    }
    state.perf.record_message_processed(conn.connection_id, msg);
    match &frame.request {
        ClientRequest::Ping => vec![WebSocketMessage::new(
            MessageType::Pong,
            frame.message.payload,
        )],
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
            if !state.runner.runs_on_user_messages() {
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
