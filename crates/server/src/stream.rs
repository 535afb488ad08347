//! The axum adapter: resumable, validated agent streams in an
//! application's own WebSocket handler. The gateway's `/ws` is one user of
//! it: both admit a client the same way ([`admit`]) and serve it with the
//! same connection path (`connection::run`).

use std::net::IpAddr;
use std::sync::Arc;

/// The WebSocket read buffer of a connection (bytes): see [`admit`].
const READ_BUFFER: usize = 512;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wsc_core::WebSocketMessage;
use wsc_reconnection::{ResumeRequest, SessionError};

use crate::connection::{OnOpen, Opened, Out};
use crate::run::AgentRunner;
use crate::runs::StartOutcome;
use crate::shared::Refusal;
use crate::state::AppState;

/// Resumable, validated agent streams for your own axum WebSocket handler
/// (from [`Gateway::streams`](crate::Gateway::streams)).
///
/// [`upgrade`](Self::upgrade) admits a client as the gateway's `/ws` does
/// (per-IP handshake budget, per-user connection cap, across gateways on
/// Redis), starts or resumes its session, sends `connection_established`
/// and the replay, then serves the socket: heartbeats, `ping`, `ack`,
/// `stop_agent`, rate limits, the slow-client rule, the drain on shutdown.
/// Your code gets an [`AgentStream`]: the client's requests
/// (`start_agent`, `user_message`, `chat`) and
/// [`start_run`](AgentStream::start_run), whose runs' events are numbered,
/// buffered for resume, recorded by the event monitor and delivered.
///
/// ```no_run
/// use std::net::SocketAddr;
/// use std::sync::Arc;
/// use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
/// use axum::response::Response;
/// use wsc_server::{AgentStreams, Gateway, GatewayConfig, ResumeQuery, SimulatedAgent};
///
/// async fn agent(
///     State(streams): State<AgentStreams>,
///     ConnectInfo(peer): ConnectInfo<SocketAddr>,
///     ResumeQuery(resume): ResumeQuery,
///     ws: WebSocketUpgrade,
/// ) -> Response {
///     let user = "alice"; // from your own authentication
///     streams.upgrade(ws, user, peer.ip(), resume, |mut stream| {
///         tokio::spawn(async move {
///             while let Some(request) = stream.next_request().await {
///                 stream.start_run(&request, Arc::new(SimulatedAgent)).await;
///             }
///         });
///     }).await
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let gateway = Gateway::new(GatewayConfig::default());
/// let app = axum::Router::new()
///     .route("/agent", axum::routing::get(agent))
///     .with_state(gateway.streams());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
/// # }
/// ```
#[derive(Clone)]
pub struct AgentStreams {
    pub(crate) state: Arc<AppState>,
}

impl std::fmt::Debug for AgentStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStreams").finish_non_exhaustive()
    }
}

impl AgentStreams {
    /// Admits `user` (already authenticated by your handler) from client
    /// address `peer` and upgrades; `on_open` receives the stream once the
    /// session is started or resumed (again on every reconnection: runs
    /// outlive connections, a resumed client gets what it missed).
    ///
    /// Refusals are answered before the upgrade with the gateway's JSON
    /// body `{error, message}`: 503 `shutting_down`, 429 `rate_limited`
    /// (with `Retry-After`), 400 `invalid_query` for a user id that is not
    /// 1 to [`MAX_USER_ID_BYTES`](crate::MAX_USER_ID_BYTES) printable bytes,
    /// 503 `unavailable` while a required Redis is unreachable.
    pub async fn upgrade<F>(
        &self,
        ws: WebSocketUpgrade,
        user: &str,
        peer: IpAddr,
        resume: Option<ResumeRequest>,
        on_open: F,
    ) -> Response
    where
        F: FnOnce(AgentStream) + Send + 'static,
    {
        let state = &self.state;
        if let Some(refused) = gate(state, peer) {
            return refused;
        }
        if let Err(e) = crate::config::check_user_id(user) {
            state.limiter.record_handshake_failure(peer);
            return refuse(
                state,
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("user id {e}"),
                None,
            );
        }
        admit(
            state.clone(),
            ws,
            user.to_owned(),
            peer,
            resume,
            Some(Box::new(move |opened| on_open(AgentStream(opened)))),
            crate::agui_ws::Dialect::Wsc,
        )
        .await
    }
}

/// One client's connection to its session, for the handler that
/// upgraded it: the requests it sends and the runs started for it.
/// Dropping it ends nothing (the connection and its runs go on; requests
/// that arrive then are dropped).
pub struct AgentStream(Opened);

impl std::fmt::Debug for AgentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStream")
            .field("user", &self.0.user)
            .field("session_id", &self.0.session_id)
            .field("resumed", &self.0.resumed)
            .finish_non_exhaustive()
    }
}

/// What [`AgentStream::start_run`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunStart {
    /// The run started with this id.
    Started {
        /// The run's id (derived from the request's `message_id` when it
        /// has one, so a repeat is recognised).
        run_id: String,
    },
    /// The request repeats one this session already started (same
    /// `message_id`): nothing ran again.
    Repeated,
    /// Refused (the user's runs-in-flight cap, an oversized `thread_id`);
    /// the client was sent an `error` frame saying why.
    Refused,
}

impl AgentStream {
    /// The session's id (the same across the client's reconnections).
    pub fn session_id(&self) -> &str {
        &self.0.session_id
    }

    /// The user this stream was admitted for.
    pub fn user_id(&self) -> &str {
        &self.0.user
    }

    /// Whether this connection resumed an existing session.
    pub fn resumed(&self) -> bool {
        self.0.resumed
    }

    /// The client's next request: a `start_agent`, `user_message` or
    /// `chat` frame, parsed and within the rate limits (a `user_message`
    /// or `chat` with a `message_id` was acknowledged already). `None`
    /// once the connection has ended.
    pub async fn next_request(&mut self) -> Option<WebSocketMessage> {
        self.0.requests.recv().await
    }

    /// Starts a run for `request` with `runner`, exactly as the gateway
    /// does for `start_agent`: counted against the user's runs in flight,
    /// idempotent by `message_id` within the session, its events recorded
    /// by the event monitor, numbered, buffered and delivered, cancelled by
    /// `stop_agent` or the session's expiry. A `user_message`/`chat`
    /// request starts a run whose input is its `content`.
    pub async fn start_run(
        &self,
        request: &WebSocketMessage,
        runner: Arc<dyn AgentRunner>,
    ) -> RunStart {
        let o = &self.0;
        let outcome = match wsc_core::ClientFrame::from_message(request.clone()) {
            Ok(frame) => {
                let origin = crate::runs::Origin {
                    registry: &o.registry,
                    user: &o.user,
                    session_id: &o.session_id,
                };
                o.state.runs.start_run(origin, &frame, runner).await
            }
            Err(e) => StartOutcome::Refused(e.to_error_frame()),
        };
        match outcome {
            StartOutcome::Started(run_id) => RunStart::Started { run_id },
            StartOutcome::Repeated => RunStart::Repeated,
            StartOutcome::Refused(reply) => {
                if let Some(out) = o.out.upgrade() {
                    let _ = out.send(Out::Control(Box::new(reply))).await;
                }
                RunStart::Refused
            }
        }
    }
}

/// The resume parameters of a WebSocket upgrade (`session_id`,
/// `resume_token`, `last_seq`), as an axum extractor: `None` for a new
/// session. A malformed resume is refused with 400 `invalid_query` (never
/// read as "from seq 0", which would deliver frames twice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeQuery(pub Option<ResumeRequest>);

impl<S: Send + Sync> FromRequestParts<S> for ResumeQuery {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        ResumeRequest::from_query(parts.uri.query().unwrap_or(""))
            .map(ResumeQuery)
            .map_err(|e| {
                let body = wsc_core::HandshakeRefusal {
                    error: "invalid_query".to_owned(),
                    message: e.to_string(),
                };
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            })
    }
}

/// A refusal before the upgrade: JSON `{error, message}`, counted.
pub(crate) fn refuse(
    state: &AppState,
    status: StatusCode,
    code: &str,
    message: String,
    retry_after_secs: Option<u64>,
) -> Response {
    crate::counters::Counters::bump(&state.counters.refused_handshakes);
    let body = wsc_core::HandshakeRefusal {
        error: code.to_owned(),
        message,
    };
    let mut response = (status, Json(body)).into_response();
    if let Some(secs) = retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The refusal of a handshake whose session could not be started or
/// resumed: 429 `rate_limited` when the user (or the gateway) holds as
/// many sessions as it may, all connected; else 503 `unavailable` (the
/// store did not answer). Both with `Retry-After`.
fn session_refused(state: &AppState, e: &SessionError) -> Response {
    match e {
        SessionError::TooManySessions(_) | SessionError::TooManySessionsForUser(_) => refuse(
            state,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            e.to_string(),
            Some(1),
        ),
        _ => {
            tracing::warn!(error = %e, "a session could not be started: handshake refused with 503");
            refuse(
                state,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the session could not be started now ({e}); retry shortly"),
                Some(1),
            )
        }
    }
}

/// 503 `at_capacity`: the gateway holds as many connections as it may
/// (`LimitsConfig::max_connections`); `Retry-After` 1 to 5 s, jittered.
pub(crate) fn at_capacity(state: &AppState) -> Response {
    crate::counters::Counters::bump(&state.counters.at_capacity);
    refuse(
        state,
        StatusCode::SERVICE_UNAVAILABLE,
        "at_capacity",
        format!(
            "this gateway holds as many connections as it may ({}): retry shortly",
            state.capacity.max()
        ),
        Some(crate::capacity::retry_after_secs()),
    )
}

/// A JSON refusal `{error, message}` of an HTTP endpoint (not counted
/// as a refused handshake).
pub(crate) fn json_refusal(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = wsc_core::HandshakeRefusal {
        error: code.to_owned(),
        message: message.into(),
    };
    (status, Json(body)).into_response()
}

/// The first checks of any handshake, before anything is parsed (the
/// refusal, if any): the
/// drain, then the IP's window and backoff (a blocked IP is answered 429
/// with the true Retry-After, so what it sends while blocked never counts
/// as a further failure).
pub(crate) fn gate(state: &AppState, ip: IpAddr) -> Option<Response> {
    if *state.shutdown.borrow() {
        return Some(refuse(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the gateway is shutting down".into(),
            None,
        ));
    }
    if let Err(e) = state.limiter.check_handshake(ip) {
        let secs = e.retry_after.map(|d| d.as_secs_f64().ceil() as u64);
        return Some(refuse(
            state,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            e.to_string(),
            secs,
        ));
    }
    None
}

/// Admits an authenticated user: the per-user connection cap (this node,
/// then all gateways on Redis), then the upgrade into the connection path.
pub(crate) async fn admit(
    state: Arc<AppState>,
    ws: WebSocketUpgrade,
    user: String,
    ip: IpAddr,
    resume: Option<ResumeRequest>,
    on_open: Option<OnOpen>,
    dialect: crate::agui_ws::Dialect,
) -> Response {
    // First, before anything is opened or counted for it.
    let Some(place) = state.capacity.take() else {
        return at_capacity(&state);
    };
    let connection_id = state.next_id("conn");
    let permit = match state.limiter.acquire_connection(&user, &connection_id) {
        Ok(permit) => permit,
        Err(e) => {
            return refuse(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                e.to_string(),
                Some(1),
            );
        }
    };
    state.limiter.record_handshake_success(ip);
    let cap = state.config.limits.max_connections_per_user;
    match state
        .shared
        .admit(&user, &connection_id, cap, resume.as_ref())
        .await
    {
        Ok(()) => {}
        Err(Refusal::Elsewhere(session_id)) => {
            return refuse(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "session_elsewhere",
                format!(
                    "session {session_id} is held by another gateway (it started while redis was unreachable); retry there"
                ),
                Some(1),
            );
        }
        Err(Refusal::Unavailable) => {
            return refuse(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "shared state (redis) is unreachable; retry shortly".to_owned(),
                Some(1),
            );
        }
        Err(Refusal::AtCap(cap)) => {
            return refuse(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("user {user} is at its limit of {cap} connections (all gateways)"),
                Some(1),
            );
        }
    }
    // Counted in the user's connections from here; released if it goes no
    // further.
    let slot = state.shared.hold(&user, &connection_id);
    // The session before the upgrade: a session the store cannot give now
    // is refused with a status, so an upgraded connection's first frame is
    // always `connection_established`.
    let (registry, started) = state.shared.start_session(&user, resume.as_ref()).await;
    let session = match started {
        Ok(start) => {
            if start.resumed && state.shared.spans_gateways() {
                // Its runs may go on on the gateway it left, or have died
                // with it: told either way.
                let (state, registry) = (state.clone(), registry.clone());
                let id = start.attached.session_id.clone();
                tokio::spawn(async move {
                    let now = state.clock.now();
                    state.shared.tell_lost_runs(&registry, &id, now).await;
                });
            }
            crate::connection::SessionOpening::new(registry, start)
        }
        Err(e) => return session_refused(&state, &e),
    };
    // Counted open from the answer on (before the upgrade task exists), so
    // a shutdown waits for its close.
    let open = state.open_sockets.subscribe();
    // Frames past max_frame_bytes are closed with 1009 by the connection;
    // the transport limit only guards against absurd sizes.
    let limit = state
        .config
        .limits
        .max_frame_bytes
        .saturating_mul(4)
        .max(1024);
    // tungstenite allocates (and zero-fills) its read buffer up front, 128
    // KiB by default: most of an idle connection's memory. Client frames
    // are small (pings, requests, chat); 512-byte reads take most in one
    // read, and a larger frame still arrives whole (the buffer grows to
    // it), in more reads. See docs/performance.md (idle connections).
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let (_open, _place) = (open, place);
            let client = crate::connection::Client {
                user,
                connection_id,
                ip,
                resumed_asked: resume.is_some(),
                session,
                slot,
                permit,
                on_open,
                dialect,
            };
            crate::connection::run(state, socket, client).await;
        })
}

/// A request's body, read only now (after the request was authenticated):
/// at most `max` bytes (`413` beyond, the rest never read) within
/// `HttpConfig::body_timeout` (`408` beyond).
pub(crate) async fn read_body(
    state: &AppState,
    body: axum::body::Body,
    max: usize,
) -> Result<axum::body::Bytes, Box<Response>> {
    use http_body_util::BodyExt;
    let plain = crate::stream::json_refusal;
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(state.config.http.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {max} bytes"),
        ))),
        Ok(Err(_)) => Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body could not be read".into(),
        ))),
        Err(_) => Err(Box::new(plain(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body did not arrive within {:?}",
                state.config.http.body_timeout
            ),
        ))),
    }
}
