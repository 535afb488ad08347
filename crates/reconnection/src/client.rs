//! [`ResilientClient`]: a WebSocket client that reconnects and resumes on
//! its own, delivering every frame once and in order.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{
    Ack, ConnectionEstablished, Frame, WebSocketMessage, parse_server_frame, serialize,
};

use crate::backoff::{Backoff, Jitter};
use crate::registry::ResumeRequest;

/// How a [`ResilientClient`] connects and retries.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The gateway's WebSocket URL, e.g. `ws://127.0.0.1:8765/ws`.
    pub url: String,
    /// Query parameters sent on every connection (e.g. `user_id` or `token`).
    pub query: Vec<(String, String)>,
    /// The first backoff ceiling (default 100 ms).
    pub initial_retry_delay: Duration,
    /// The largest backoff ceiling (default 5 s).
    pub max_retry_delay: Duration,
    /// Growth per failed try (default 2.0).
    pub backoff_multiplier: f64,
    /// Jitter (default full).
    pub jitter: Jitter,
    /// Consecutive failed connection tries before giving up (default 10).
    pub max_retries: u32,
    /// After a connection is lost, keep retrying at least this long
    /// whatever `max_retries` says (default 60 s), so an outage of the
    /// gateways' store — a Redis Cluster failover takes up to ~20 s at
    /// Redis's default `cluster-node-timeout`, answered `503` meanwhile —
    /// is waited out, not given up on. Not applied before the first
    /// connection (a wrong URL fails after `max_retries`).
    pub retry_for_at_least: Duration,
    /// Longest wait for a connection and its `connection_established` (default 10 s).
    pub connect_timeout: Duration,
    /// Acknowledge received frames every this many (default 64; 0: never).
    pub ack_every: u64,
    /// Other URLs of the same service (e.g. gateways sharing sessions in
    /// Redis), tried in turn after `url`: each (re)connection attempt goes
    /// to the next one, so a resume lands on another gateway (default none).
    /// A refusal's `Retry-After` holds for the URL that sent it: the next
    /// attempt goes to the next URL not asked to wait (after the backoff),
    /// so a client refused by a full gateway tries the others at once.
    pub alternate_urls: Vec<String>,
    /// The local address to connect from (default: the system's choice).
    /// The socket is bound before it connects, so the kernel reserves an
    /// ephemeral port of that address for it whatever the destination:
    /// fine for tens of connections per address, slow (each bind searches
    /// the bound ports) for tens of thousands — a load generator does
    /// better connecting to several destination addresses of one server.
    pub local_address: Option<std::net::IpAddr>,
}

impl ClientConfig {
    /// A configuration for `url` with default retries.
    pub fn new(url: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            query: Vec::new(),
            initial_retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(5),
            backoff_multiplier: 2.0,
            jitter: Jitter::Full,
            max_retries: 10,
            retry_for_at_least: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            ack_every: 64,
            alternate_urls: Vec::new(),
            local_address: None,
        }
    }

    /// Adds a query parameter.
    pub fn with_query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }
}

/// The outcome of one (re)connection, from `connection_established`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionOutcome {
    /// The session now attached.
    pub session_id: String,
    /// Its epoch.
    pub epoch: u64,
    /// Whether the previous session was resumed.
    pub resumed: bool,
    /// Frames the server replays before live ones.
    pub replayed: u64,
    /// Why a requested resume was refused.
    pub reason: Option<String>,
    /// Whether a resume was asked for.
    pub resume_requested: bool,
    /// The URL connected to (without the query).
    pub url: String,
}

/// What a [`ResilientClient`] yields.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// A (re)connection was established.
    Connected(ConnectionOutcome),
    /// A frame: numbered frames exactly once, in order; unnumbered frames
    /// (`pong`, `ack`, `error`) as they come.
    Frame(WebSocketMessage),
    /// The connection was lost; the client is reconnecting.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// An event frame of the AG-UI dialect (`/ws?protocol=ag-ui`):
    /// `{"run_id", "event", "seq"}`, exactly once and in order as numbered
    /// frames are.
    AgUi {
        /// The session's seq.
        seq: u64,
        /// The run's `runId`.
        run_id: String,
        /// The AG-UI event.
        event: serde_json::Value,
    },
    /// The client gave up after `max_retries` failed tries; the stream ends.
    GaveUp {
        /// The last failure.
        reason: String,
    },
}

/// Counters of a client's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    /// Connections established.
    pub connections: u64,
    /// Resumes the server accepted.
    pub resumes: u64,
    /// Resumes the server refused (a fresh session was started).
    pub resumes_refused: u64,
    /// Numbered frames received twice and dropped.
    pub duplicates_dropped: u64,
    /// Times a numbered frame skipped ahead (the client reconnected to
    /// resume from its last seq).
    pub gaps_detected: u64,
    /// The last seq received in the current session.
    pub last_seq: u64,
}

enum Command {
    Send(String),
    Drop,
    Close,
}

/// A client that connects to a wsc gateway, tracks the last seq it
/// received, and on any loss reconnects with jittered backoff and resumes —
/// dropping duplicates by seq, so its [`Stream`] yields every numbered frame
/// exactly once, in order.
///
/// Must be created within a tokio runtime (it spawns its connection task).
#[derive(Debug)]
pub struct ResilientClient {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    stats: tokio::sync::watch::Receiver<ClientStats>,
}

impl ResilientClient {
    /// Starts connecting (in the background) with `config`.
    pub fn connect(config: ClientConfig) -> Self {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let (stats_tx, stats) = tokio::sync::watch::channel(ClientStats::default());
        tokio::spawn(drive(config, command_rx, event_tx, stats_tx));
        ResilientClient {
            commands,
            events,
            stats,
        }
    }

    /// Sends a frame (queued while reconnecting; a frame whose send fails is
    /// retried once on the next connection).
    pub fn send(&self, message: WebSocketMessage) -> bool {
        self.send_text(serialize(&message))
    }

    /// Sends a frame's text as it is (a frame of another dialect, e.g. the
    /// AG-UI dialect's `run_agent`), with the same guarantees as
    /// [`send`](Self::send).
    pub fn send_text(&self, text: impl Into<String>) -> bool {
        self.commands.send(Command::Send(text.into())).is_ok()
    }

    /// Drops the transport without a close handshake, as a network failure
    /// would; the client then reconnects and resumes.
    pub fn drop_connection(&self) {
        let _ = self.commands.send(Command::Drop);
    }

    /// Closes the connection and stops; the stream ends.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// The next event, or `None` once the client stopped.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The client's counters now.
    pub fn stats(&self) -> ClientStats {
        *self.stats.borrow()
    }
}

impl Stream for ResilientClient {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.events.poll_recv(cx)
    }
}

/// The base URL of connection attempt `attempt`: `url`, then each
/// alternate in turn.
fn base_url(config: &ClientConfig, attempt: u64) -> &str {
    let n = 1 + config.alternate_urls.len() as u64;
    match (attempt % n) as usize {
        0 => &config.url,
        i => &config.alternate_urls[i - 1],
    }
}

/// The URL of attempt `attempt`: the base URL, the configured query
/// parameters, and the resume triple as [`ResumeRequest::to_query`] writes
/// it (the same type the server reads it back with).
fn url_at(config: &ClientConfig, attempt: u64, resume: Option<&ResumeRequest>) -> String {
    let base = base_url(config, attempt);
    let mut query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(config.query.iter())
        .finish();
    if let Some(resume) = resume {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&resume.to_query());
    }
    if query.is_empty() {
        base.to_owned()
    } else {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{query}")
    }
}

fn outcome_of(
    msg: &WebSocketMessage,
    resume_requested: bool,
    url: &str,
) -> Option<(ConnectionOutcome, String)> {
    let hello = ConnectionEstablished::from_message(msg).ok()?;
    Some((
        ConnectionOutcome {
            session_id: hello.session_id,
            epoch: hello.epoch,
            resumed: hello.resumed,
            replayed: hello.replayed,
            reason: hello.reason,
            resume_requested,
            url: url.to_owned(),
        },
        hello.resume_token,
    ))
}

/// Opens a WebSocket to `url` (`ws://`), from `local` if given, with
/// `TCP_NODELAY` and a read buffer sized for a client's small frames.
async fn open(
    url: &str,
    local: Option<std::net::IpAddr>,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let request = url.into_client_request()?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(Error::Url(
            tokio_tungstenite::tungstenite::error::UrlError::UnsupportedUrlScheme,
        ));
    }
    let host = uri
        .host()
        .ok_or(Error::Url(
            tokio_tungstenite::tungstenite::error::UrlError::NoHostName,
        ))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let mut last = None;
    for addr in tokio::net::lookup_host((host.as_str(), port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = local {
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER);
                return tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await;
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    })))
}

/// A client's read buffer: its frames are small; a larger one grows.
const READ_BUFFER: usize = 8 * 1024;

/// The longest `Retry-After` a client honours, in seconds.
const MAX_RETRY_AFTER_SECS: u64 = 60;

async fn drive(
    config: ClientConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    stats_tx: tokio::sync::watch::Sender<ClientStats>,
) {
    let mut stats = ClientStats::default();
    let mut session: Option<(String, String)> = None;
    let mut pending: Option<String> = None;
    let mut backoff = Backoff::new(
        config.initial_retry_delay,
        config.backoff_multiplier,
        config.max_retry_delay,
        config.jitter,
    );
    let mut failures: u32 = 0;
    let mut attempt: u64 = 0;
    // When each URL may be tried again: a refusal's `Retry-After` is that
    // gateway's word, not the others' (a full gateway says nothing of the
    // next one).
    let urls = 1 + config.alternate_urls.len() as u64;
    let mut not_before: Vec<Option<tokio::time::Instant>> = vec![None; urls as usize];
    // When the connection was lost (`None` before the first one).
    let mut lost_at: Option<tokio::time::Instant> = None;
    loop {
        let resume = session.as_ref().map(|(s, t)| ResumeRequest {
            session_id: s.clone(),
            resume_token: t.clone(),
            last_seq: stats.last_seq,
        });
        // The next URL in turn not asked to wait; if every one was, the
        // one free soonest, once it is.
        let now = tokio::time::Instant::now();
        let free_at = |k: u64| not_before[(k % urls) as usize];
        let next = (attempt..attempt + urls)
            .find(|&k| free_at(k).is_none_or(|at| at <= now))
            .or_else(|| (attempt..attempt + urls).min_by_key(|&k| free_at(k)))
            .unwrap_or(attempt);
        if let Some(at) = free_at(next) {
            tokio::time::sleep_until(at).await;
        }
        attempt = next;
        let url = url_at(&config, attempt, resume.as_ref());
        let mut retry_after = None;
        let base = base_url(&config, attempt).to_owned();
        let tried = (attempt % urls) as usize;
        attempt += 1;
        let connected = tokio::time::timeout(config.connect_timeout, async {
            let (mut ws, _) = open(url.as_str(), config.local_address)
                .await
                .map_err(|e| {
                    // A refusal's `Retry-After` (seconds) is the least wait.
                    if let tokio_tungstenite::tungstenite::Error::Http(response) = &e {
                        retry_after = response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|secs| Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
                    }
                    e.to_string()
                })?;
            // The first frame is always connection_established.
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let msg = parse_server_frame(&text).map_err(|e| e.to_string())?;
                        return outcome_of(&msg, resume.is_some(), &base)
                            .map(|o| (ws, o))
                            .ok_or_else(|| {
                                "the first frame was not connection_established".to_owned()
                            });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("closed before connection_established".to_owned()),
                }
            }
        })
        .await
        .unwrap_or_else(|_| Err("connect timed out".to_owned()));

        let (mut ws, (outcome, token)) = match connected {
            Ok(c) => c,
            Err(reason) => {
                failures += 1;
                let patient = lost_at.is_some_and(|at| at.elapsed() < config.retry_for_at_least);
                if failures > config.max_retries && !patient {
                    let _ = events.send(ClientEvent::GaveUp { reason });
                    return;
                }
                let delay = backoff.delay(failures.min(64) - 1, &mut rand::rng());
                if let Some(wait) = retry_after.take() {
                    not_before[tried] = Some(tokio::time::Instant::now() + wait);
                }
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        failures = 0;
        stats.connections += 1;
        if outcome.resume_requested {
            if outcome.resumed {
                stats.resumes += 1;
            } else {
                stats.resumes_refused += 1;
            }
        }
        if !outcome.resumed {
            // A fresh session numbers from 1 again.
            stats.last_seq = 0;
        }
        session = Some((outcome.session_id.clone(), token));
        let _ = stats_tx.send(stats);
        if events.send(ClientEvent::Connected(outcome)).is_err() {
            return; // nobody listens
        }
        if let Some(text) = pending.take()
            && ws.send(Message::text(text.clone())).await.is_err()
        {
            pending = Some(text);
        }
        let mut since_ack = 0u64;
        let reason = loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        // A wsc frame, or the AG-UI dialect's event frame.
                        let (seq, event) = match parse_server_frame(&text) {
                            Ok(msg) => (msg.seq, ClientEvent::Frame(msg)),
                            Err(_) => match ag_ui_frame(&text) {
                                Some(event) => event,
                                None => continue,
                            },
                        };
                        match seq {
                            Some(seq) if seq <= stats.last_seq => {
                                stats.duplicates_dropped += 1;
                                let _ = stats_tx.send(stats);
                                continue;
                            }
                            Some(seq) if seq > stats.last_seq + 1 => {
                                stats.gaps_detected += 1;
                                let _ = stats_tx.send(stats);
                                break format!("gap: expected seq {}, got {seq}", stats.last_seq + 1);
                            }
                            Some(seq) => {
                                stats.last_seq = seq;
                                since_ack += 1;
                                let _ = stats_tx.send(stats);
                            }
                            None => {}
                        }
                        if events.send(event).is_err() {
                            return;
                        }
                        if config.ack_every > 0 && since_ack >= config.ack_every {
                            since_ack = 0;
                            let ack = Ack::seq(stats.last_seq).to_message();
                            let _ = ws.send(Message::text(serialize(&ack))).await;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break frame.map_or_else(|| "closed".to_owned(), |f| format!("closed: {} {}", u16::from(f.code), f.reason));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "connection ended".to_owned(),
                },
                command = commands.recv() => match command {
                    Some(Command::Send(text)) => {
                        if let Err(e) = ws.send(Message::text(text.clone())).await {
                            pending = Some(text);
                            break e.to_string();
                        }
                    }
                    Some(Command::Drop) => break "dropped by the client".to_owned(),
                    Some(Command::Close) | None => {
                        let _ = ws.close(None).await;
                        return;
                    }
                },
            }
        };
        // Dropping `ws` without a close handshake is an abrupt loss.
        drop(ws);
        lost_at = Some(tokio::time::Instant::now());
        if events.send(ClientEvent::Disconnected { reason }).is_err() {
            return;
        }
    }
}

/// An AG-UI dialect event frame, `{"run_id", "event", "seq"}`, with its seq.
fn ag_ui_frame(text: &str) -> Option<(Option<u64>, ClientEvent)> {
    let serde_json::Value::Object(mut map) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let seq = map.get("seq")?.as_u64()?;
    let run_id = map.get("run_id")?.as_str()?.to_owned();
    let event = map.remove("event").filter(serde_json::Value::is_object)?;
    Some((Some(seq), ClientEvent::AgUi { seq, run_id, event }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_rotate_through_the_alternate_urls() {
        let mut c = ClientConfig::new("ws://a/ws").with_query("user_id", "u");
        assert_eq!(url_at(&c, 5, None), "ws://a/ws?user_id=u");
        c.alternate_urls = vec!["ws://b/ws".into(), "ws://c/ws".into()];
        let bases: Vec<&str> = (0..5).map(|i| base_url(&c, i)).collect();
        assert_eq!(
            bases,
            [
                "ws://a/ws",
                "ws://b/ws",
                "ws://c/ws",
                "ws://a/ws",
                "ws://b/ws"
            ]
        );
        assert_eq!(url_at(&c, 1, None), "ws://b/ws?user_id=u");
    }

    #[test]
    fn urls_carry_the_resume_triple_encoded() {
        let c = ClientConfig::new("ws://h:1/ws").with_query("user_id", "a b&c");
        assert_eq!(url_at(&c, 0, None), "ws://h:1/ws?user_id=a+b%26c");
        let resume = ResumeRequest {
            session_id: "s 1".into(),
            resume_token: "1.ab".into(),
            last_seq: 7,
        };
        let url = url_at(&c, 0, Some(&resume));
        assert_eq!(
            url,
            "ws://h:1/ws?user_id=a+b%26c&session_id=s+1&resume_token=1.ab&last_seq=7"
        );
        // What the server reads back, with the same type.
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        assert_eq!(ResumeRequest::from_query(query), Ok(Some(resume)));
    }
}
