//! One WebSocket connection: session start or resume, the frame loop, and
//! the writer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;
use wsc_core::{
    CloseCode, ConnectionEstablished, ErrorCode, Frame, WebSocketMessage, WireFrame, serialize,
};
use wsc_perf_monitor::ConnectionInfo;
use wsc_rate_limiter::ConnectionPermit;
use wsc_reconnection::{SessionRegistry, SessionStart};

use crate::agui_ws::Dialect;
use crate::dispatch::{Conn, handle_text};
use crate::logging::log_safe;
use crate::shared::Slot;
use crate::state::AppState;

/// What the connection task queues for the writer task.
pub(crate) enum Out {
    /// Boxed, as the close below: the connection's queue allocates room
    /// for 32 of these up front, so every variant stays at a pointer (an
    /// idle connection's memory).
    Control(Box<WebSocketMessage>),
    Ping,
    Close(Box<(CloseCode, &'static str)>),
}

/// What the writer writes: a session frame (its shared text, never
/// serialized again) or what the connection task queued.
enum Write {
    /// A session frame; `live` (not replayed) ones have their delivery
    /// latency measured.
    Frame(WireFrame, bool),
    /// A control frame, ping or close.
    Queued(Out),
}

/// A write batch keeps at most this many items' room between bursts (a
/// burst's 64 are freed after it: an idle connection's memory).
const IDLE_BATCH_ROOM: usize = 4;

/// A frame's text as a WebSocket text message, sharing the frame's
/// allocation (no copy, no serialization).
fn text_message(frame: WireFrame) -> Message {
    // A frame's text is a `str`, so the check never fails; if it did, the
    // text would be copied rather than lost.
    let text = axum::extract::ws::Utf8Bytes::try_from(bytes::Bytes::from_owner(frame.clone()))
        .unwrap_or_else(|_| frame.as_str().into());
    Message::Text(text)
}

/// An admitted client, for [`run`].
pub(crate) struct Client {
    pub(crate) user: String,
    pub(crate) connection_id: String,
    /// The client's address (behind trusted proxies, the one they name).
    pub(crate) ip: std::net::IpAddr,
    /// Whether it asked to resume a session.
    pub(crate) resumed_asked: bool,
    /// Its session, started (or resumed) before the upgrade.
    pub(crate) session: SessionOpening,
    /// Its place in the user's count across gateways.
    pub(crate) slot: Slot,
    pub(crate) permit: ConnectionPermit,
    /// An application's handler (the axum adapter): it receives the
    /// client's requests. Without one (the gateway's `/ws`), requests
    /// start runs with the gateway's runner.
    pub(crate) on_open: Option<OnOpen>,
    /// The protocol it speaks.
    pub(crate) dialect: Dialect,
}

/// A session started (or resumed) for a client whose upgrade has not
/// completed yet: started before the upgrade, so a session the store
/// cannot give is refused with an HTTP status, and the first frame of
/// every upgraded connection is `connection_established`. If the upgrade
/// never completes (the client went away), dropping it detaches the
/// session, which stays resumable and expires as any other.
pub(crate) struct SessionOpening {
    registry: Arc<SessionRegistry>,
    start: Option<SessionStart>,
}

impl SessionOpening {
    pub(crate) fn new(registry: Arc<SessionRegistry>, start: SessionStart) -> Self {
        SessionOpening {
            registry,
            start: Some(start),
        }
    }

    /// The registry and the start, for the connection that now serves it.
    fn take(mut self) -> Option<(Arc<SessionRegistry>, SessionStart)> {
        let start = self.start.take()?;
        Some((self.registry.clone(), start))
    }
}

impl Drop for SessionOpening {
    fn drop(&mut self) {
        let Some(start) = self.start.take() else {
            return;
        };
        let registry = self.registry.clone();
        let (session_id, attachment) =
            (start.attached.session_id.clone(), start.attached.attachment);
        drop(start);
        // Outside any runtime (a test dropping it late) the session is
        // left attached until it is resumed, as after a crash.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = registry.detach(&session_id, attachment).await;
            });
        }
    }
}

/// What the connection calls once the session exists.
pub(crate) type OnOpen = Box<dyn FnOnce(Opened) + Send>;

/// A connection's session, handed to an application's handler (the axum
/// adapter wraps it as its `AgentStream`).
pub(crate) struct Opened {
    pub(crate) state: Arc<AppState>,
    pub(crate) registry: Arc<SessionRegistry>,
    pub(crate) user: String,
    pub(crate) session_id: String,
    pub(crate) resumed: bool,
    /// The client's requests (`start_agent`, `user_message`, `chat`).
    pub(crate) requests: mpsc::Receiver<WebSocketMessage>,
    /// The connection's writer, while it lives (weak: a handler that keeps
    /// it does not keep a closed connection's writer open).
    pub(crate) out: mpsc::WeakSender<Out>,
}

/// Serves one connection inside its `connection` span (`connection_id`,
/// `user_id`, and `session_id` once known); each run it starts gets a
/// `run` span (`run_id`) inside it.
///
/// Two steps: the opening (session, hello, replay, the writer task) runs
/// boxed, so its state is freed once it is done; what stays for the
/// connection's life is only the serving loop's (an idle connection's
/// memory).
pub(crate) fn run(
    state: Arc<AppState>,
    socket: WebSocket,
    client: Client,
) -> impl std::future::Future<Output = ()> + Send {
    let span = tracing::info_span!(
        "connection",
        connection_id = %client.connection_id,
        user_id = %log_safe(&client.user),
        session_id = tracing::field::Empty
    );
    let opening = Box::pin(open(state, socket, client));
    async move {
        let serving = opening.await;
        if let Some(serving) = serving {
            serving.serve().await;
        }
    }
    .instrument(span)
}

/// What a connection holds while it is served.
struct Serving {
    state: Arc<AppState>,
    registry: Arc<SessionRegistry>,
    user: String,
    ip: std::net::IpAddr,
    session_id: String,
    connection_id: String,
    requests: Option<mpsc::Sender<WebSocketMessage>>,
    out_tx: mpsc::Sender<Out>,
    writer: tokio::task::JoinHandle<Option<(CloseCode, &'static str)>>,
    stream: futures_util::stream::SplitStream<WebSocket>,
    attachment: u64,
    dialect: Dialect,
    _permit: ConnectionPermit,
    _shared_slot: Slot,
}

/// Opens the session, sends the hello and the replay (through the writer
/// task it starts); `None` when no session could be had (the client was
/// told and the socket closed).
async fn open(state: Arc<AppState>, socket: WebSocket, client: Client) -> Option<Box<Serving>> {
    let Client {
        user,
        connection_id,
        ip,
        resumed_asked,
        session,
        slot: shared_slot,
        permit,
        on_open,
        dialect,
    } = client;
    let (registry, start) = session.take()?;
    state.counters.connections.fetch_add(1, Ordering::Relaxed);
    if resumed_asked {
        let counter = if start.resumed {
            &state.counters.resumes
        } else {
            &state.counters.resumes_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let attached = start.attached;
    let session_id = attached.session_id.clone();
    tracing::Span::current().record("session_id", tracing::field::display(&session_id));
    // Never log tokens: only ids (in the span) and outcomes.
    tracing::info!(
        resumed = start.resumed,
        replayed = start.replay.len(),
        reason = start.reason.map(|r| r.as_str()),
        "connection established"
    );
    let info = ConnectionInfo::new(user.clone()).with_ip_address(ip.to_string());
    state.perf.start_connection_tracking(&connection_id, info);
    state.perf.record_connection_established(&connection_id);

    let (sink, stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Out>(64);
    // An application's handler gets the requests; the gateway's runner
    // otherwise.
    let requests = on_open.map(|on_open| {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        on_open(Opened {
            state: state.clone(),
            registry: registry.clone(),
            user: user.clone(),
            session_id: session_id.clone(),
            resumed: start.resumed,
            requests: rx,
            out: out_tx.downgrade(),
        });
        tx
    });

    let hello = ConnectionEstablished {
        session_id: attached.session_id.clone(),
        connection_id: connection_id.clone(),
        resume_token: attached.resume_token.clone(),
        epoch: attached.epoch,
        resumed: start.resumed,
        replayed: start.replay.len() as u64,
        heartbeat_interval_ms: u64::try_from(state.config.http.heartbeat_interval.as_millis())
            .unwrap_or(u64::MAX),
        reason: start.reason.map(|r| r.as_str().to_owned()),
    };
    let hello = hello
        .to_message()
        .with_user_id(user.clone())
        .with_timestamp(state.clock.now());
    // The writer sends the hello and the replay first, then live frames
    // straight from the session (no hop through this task) and what this
    // task queues (pongs, errors, pings, the close).
    let first: Vec<Write> = std::iter::once(Write::Queued(Out::Control(Box::new(hello))))
        .chain(start.replay.into_iter().map(|f| Write::Frame(f, false)))
        .collect();
    let (live, attachment) = (attached.frames, attached.attachment);
    let writer = tokio::spawn(
        write_loop(
            state.clone(),
            Writer {
                sink,
                rx: out_rx,
                live,
            },
            first,
        )
        .instrument(tracing::Span::current()),
    );
    Some(Box::new(Serving {
        state,
        registry,
        user,
        ip,
        session_id,
        connection_id,
        requests,
        out_tx,
        writer,
        stream,
        attachment,
        dialect,
        _permit: permit,
        _shared_slot: shared_slot,
    }))
}

impl Serving {
    /// The connection's life: heartbeats, the client's frames, the writer,
    /// a shutdown; then the close and the detach. Boxed until here, so the
    /// caller holds a pointer, not a second copy.
    async fn serve(self: Box<Self>) {
        let Serving {
            state,
            registry,
            user,
            ip,
            session_id,
            connection_id,
            requests,
            out_tx,
            mut writer,
            mut stream,
            attachment,
            dialect,
            _permit,
            _shared_slot,
        } = *self;
        let mut writer_ended = false;
        let mut open = true;
        let control = crate::dispatch::ControlBudget::default();

        let mut shutdown = state.shutdown.clone();
        let mut close = None;
        // A shutdown that began before this connection started counts too.
        // (Waited for inside the select, not as a future of its own kept
        // beside it: an idle connection's memory.)
        if *shutdown.borrow_and_update() {
            close = Some((CloseCode::GOING_AWAY, "server shutting down"));
            open = false;
        }
        // Server heartbeat: a WebSocket ping every interval; a peer silent for
        // two intervals (no frame, no pong) is dead and dropped (resumable).
        let interval = state
            .config
            .http
            .heartbeat_interval
            .max(Duration::from_millis(10));
        // On the gateway's clock, so tests run heartbeats on paused time.
        let clock = state.clock.clone();
        let mut beat = clock.sleep(interval);
        let mut last_seen = clock.now();
        while open {
            tokio::select! {
                () = &mut beat => {
                    beat = clock.sleep(interval);
                    if clock.now().duration_since(last_seen) > interval * 2 {
                        tracing::debug!("peer silent for two heartbeats: dropping");
                        break;
                    }
                    open = out_tx.send(Out::Ping).await.is_ok();
                },
                ended = &mut writer => {
                    // It ended on its own: the registry detached us (a resume
                    // took the session, or we were too slow; it sent the
                    // close), or the socket failed.
                    writer_ended = true;
                    close = ended.ok().flatten();
                    break;
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        last_seen = clock.now();
                        if text.len() > state.config.limits.max_frame_bytes {
                            close = Some((CloseCode::MESSAGE_TOO_BIG, "frame over the size limit"));
                            break;
                        }
                        let conn = Conn { registry: &registry, user: &user, ip, session_id: &session_id, connection_id: &connection_id, requests: requests.as_ref(), dialect, control: &control };
                        // Boxed: its state lives only while a frame is
                        // handled, not for the connection's life.
                        let replies: Vec<Out> = Box::pin(handle_text(&state, &conn, text.as_str()))
                            .await
                            .into_iter()
                            .map(|reply| Out::Control(Box::new(reply)))
                            .collect();
                        for reply in replies {
                            open = open && out_tx.send(reply).await.is_ok();
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_seen = clock.now();
                        state.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                        state.perf.record_error(&connection_id);
                        let reply = ErrorCode::InvalidMessage.frame("binary frames are not accepted: send UTF-8 JSON text");
                        open = out_tx.send(Out::Control(Box::new(reply))).await.is_ok();
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    // A frame that breaks RFC 6455 is answered with its close
                    // code, not an empty close.
                    Some(Err(e)) => {
                        close = transport_close(e);
                        break;
                    }
                    // Pings are answered by the transport; any frame shows life.
                    Some(Ok(_)) => last_seen = clock.now(),
                },
                changed = shutdown.changed() => {
                    // A dropped sender (the gateway is gone) stops it too.
                    if changed.is_err() || *shutdown.borrow_and_update() {
                        close = Some((CloseCode::GOING_AWAY, "server shutting down"));
                        break;
                    }
                }
            }
        }
        tracing::info!(
            close = close.map(|(c, r)| format!("{} {r}", c.0)),
            "connection ended"
        );
        if let (Some((code, reason)), false) = (close, writer_ended) {
            let _ = out_tx.send(Out::Close(Box::new((code, reason)))).await;
        }
        drop(out_tx);
        if !writer_ended {
            let _ = writer.await;
        }
        let _ = Box::pin(registry.detach(&session_id, attachment)).await;
        state.perf.record_connection_closed(&connection_id);
        state.perf.stop_connection_tracking(&connection_id);
    }
}

/// The close code for a transport error (RFC 6455 §7.4.1): 1002 for a
/// protocol violation (an unmasked frame, reserved bits, an unknown opcode,
/// a continuation out of place, a control frame over 125 bytes), 1007 for
/// text that is not UTF-8, 1009 for a frame over the transport's size
/// limit; none for a connection that simply failed.
fn transport_close(e: axum::Error) -> Option<(CloseCode, &'static str)> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let e = e.into_inner().downcast::<WsError>().ok()?;
    match *e {
        WsError::Protocol(_) => Some((CloseCode::PROTOCOL_ERROR, "protocol error")),
        WsError::Utf8(_) => Some((CloseCode::INVALID_PAYLOAD, "text is not UTF-8")),
        WsError::Capacity(_) => Some((CloseCode::MESSAGE_TOO_BIG, "frame over the size limit")),
        _ => None,
    }
}

/// At most this many queued frames are written before one flush.
const WRITE_BATCH: usize = 64;

/// Live frames stop joining a batch once it holds this many bytes of them.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// What the writer task owns.
struct Writer {
    sink: futures_util::stream::SplitSink<WebSocket, Message>,
    /// What the connection task queues.
    rx: mpsc::Receiver<Out>,
    /// The session's live frames (bounded in frames and bytes).
    live: wsc_reconnection::LiveFrames,
}

/// Sends `first` (the hello and the replay), then live frames and what the
/// connection queues, in order; a write slower than `write_timeout` ends
/// it. Frames already queued when the writer wakes go out together: fed
/// to the socket one by one, flushed once (one write for a burst, not one
/// per frame). When the registry detaches the session (a resume took it
/// elsewhere, or the client fell too far behind) it closes with why.
async fn write_loop(
    state: Arc<AppState>,
    mut w: Writer,
    first: Vec<Write>,
) -> Option<(CloseCode, &'static str)> {
    let timeout = state.config.http.write_timeout;
    let mut batch = first;
    let mut live_open = true;
    loop {
        if batch.is_empty() {
            let next = tokio::select! {
                biased;
                out = w.rx.recv() => out.map(Write::Queued),
                frame = w.live.recv(), if live_open => match frame {
                    Some(frame) => Some(Write::Frame(frame, true)),
                    None => {
                        live_open = false;
                        Some(Write::Queued(detached_close(&state, &w)))
                    }
                },
            };
            match next {
                Some(out) => batch.push(out),
                // The connection ended without a close (its socket failed).
                None => break,
            }
            // Let whoever woke the writer queue what it has at hand: one
            // write to the socket for several frames.
            tokio::task::yield_now().await;
        }
        // Live frames taken out of the session's queue free its room, so
        // the batch is bounded in bytes too: what a slow client pins is
        // the queue's bytes plus one batch.
        let mut live_bytes = 0;
        while batch.len() < WRITE_BATCH {
            if let Ok(out) = w.rx.try_recv() {
                batch.push(Write::Queued(out));
            } else if live_open
                && live_bytes < WRITE_BATCH_BYTES
                && let Ok(frame) = w.live.try_recv()
            {
                live_bytes += frame.len();
                batch.push(Write::Frame(frame, true));
            } else {
                break;
            }
        }
        let mut closing = None;
        let sink = &mut w.sink;
        // Boxed: the write's state lives only while it writes, not in
        // this task for the connection's life.
        let written = tokio::time::timeout(
            timeout,
            Box::pin(async {
                for out in batch.drain(..) {
                    let message = match out {
                        Write::Frame(frame, live) => {
                            state.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
                            if live && let Some(published) = frame.timestamp() {
                                let latency = state.clock.now().duration_since(published);
                                // The dashboard's delivery latency, from the
                                // frame's publish (when the session buffered
                                // it). (The perf monitor measures client
                                // frames; outbound frames are not "messages
                                // processed".)
                                state.telemetry.record_latency(latency);
                            }
                            text_message(frame)
                        }
                        Write::Queued(Out::Control(frame)) => {
                            Message::Text(serialize(&frame).into())
                        }
                        Write::Queued(Out::Ping) => Message::Ping(Default::default()),
                        Write::Queued(Out::Close(close)) => {
                            let (code, reason) = *close;
                            closing = Some((code, reason));
                            Message::Close(Some(CloseFrame {
                                code: code.0,
                                reason: reason.into(),
                            }))
                        }
                    };
                    sink.feed(message).await?;
                    if closing.is_some() {
                        break;
                    }
                }
                sink.flush().await
            }),
        )
        .await;
        batch.clear();
        batch.shrink_to(IDLE_BATCH_ROOM);
        match written {
            Ok(Ok(())) if closing.is_none() => {}
            Ok(_) => return closing,
            Err(_) if closing.is_some() => return closing,
            Err(_) => {
                state.counters.slow_clients.fetch_add(1, Ordering::Relaxed);
                tracing::info!("write timed out: slow client dropped, session resumable");
                return None;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.sink.close()).await;
    None
}

/// The close for a connection the registry detached, from why it did
/// (known where it happened, never guessed from a store that may not
/// answer): 1008 "client too slow" (its queue stayed full; counted; the
/// session stays resumable), else 1013 — a client reconnects after it —
/// "session moved" (another connection resumed it) or "resume: frames
/// were lost" (its resume is told `gap`).
fn detached_close(state: &AppState, w: &Writer) -> Out {
    use wsc_reconnection::Detached;
    let close = match w.live.detached() {
        Some(Detached::TooSlow) => {
            state.counters.slow_clients.fetch_add(1, Ordering::Relaxed);
            tracing::info!("client too slow: dropped, session resumable");
            (CloseCode::POLICY_VIOLATION, "client too slow")
        }
        Some(Detached::TakenOver) => {
            state
                .counters
                .sessions_moved
                .fetch_add(1, Ordering::Relaxed);
            (CloseCode::TRY_AGAIN_LATER, "session moved")
        }
        _ => (CloseCode::TRY_AGAIN_LATER, "resume: frames were lost"),
    };
    Out::Close(Box::new(close))
}

/// How many parsed requests wait for an application's handler before the
/// connection stops reading (back-pressure on that client alone).
const REQUEST_QUEUE: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// The outbound queue allocates 32 slots with the channel: an item is
    /// two words, whatever it carries (an idle connection's memory).
    #[test]
    fn a_queued_item_is_two_words() {
        assert!(
            std::mem::size_of::<Out>() <= 16,
            "{}",
            std::mem::size_of::<Out>()
        );
    }
}
