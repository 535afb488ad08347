//! [`GatewayConfig`].

use std::time::Duration;

/// How clients authenticate.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// `?user_id=U`: the caller is trusted (development and demos).
    #[default]
    Dev,
    /// `?token=JWT`: HS256 (see [`JwtAuth`]); `sub` is the user id.
    Jwt(JwtAuth),
}

/// The shortest JWT secret a gateway accepts, in bytes (HS256's key is as
/// strong as its secret: RFC 7518 §3.2 asks for at least 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// How `?token=JWT` is checked: HS256 with a secret of at least
/// [`MIN_JWT_SECRET_BYTES`]; `exp` and `sub` required; `nbf` checked when
/// present; `leeway` (default 5 s) for clock skew on both; `sub` a valid
/// user id (1 to 256 printable characters); `aud` and `iss` when
/// configured.
///
/// ```
/// use std::time::Duration;
/// use wsc_server::JwtAuth;
/// assert!(JwtAuth::new("too short").is_err());
/// let auth = JwtAuth::new("0123456789abcdef0123456789abcdef")
///     .unwrap()
///     .with_leeway(Duration::from_secs(2))
///     .with_audience("chat")
///     .with_issuer("https://auth.example.com");
/// assert_eq!(auth.leeway(), Duration::from_secs(2));
/// assert!(!format!("{auth:?}").contains("0123"), "the secret is never shown");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JwtAuth {
    secret: String,
    leeway: Duration,
    audience: Option<String>,
    issuer: Option<String>,
}

/// A JWT secret too short to use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the JWT secret is {0} bytes; at least {MIN_JWT_SECRET_BYTES} are needed (e.g. `openssl rand -hex 32`)"
)]
pub struct WeakJwtSecret(pub usize);

impl JwtAuth {
    /// Checks with `secret` (at least [`MIN_JWT_SECRET_BYTES`] bytes).
    ///
    /// # Errors
    /// [`WeakJwtSecret`] for a shorter secret (an empty one included).
    pub fn new(secret: impl Into<String>) -> Result<Self, WeakJwtSecret> {
        let secret = secret.into();
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(WeakJwtSecret(secret.len()));
        }
        Ok(JwtAuth {
            secret,
            leeway: Duration::from_secs(5),
            audience: None,
            issuer: None,
        })
    }

    /// Clock skew allowed on `exp` and `nbf` (default 5 s).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires `aud` to name `audience`.
    #[must_use]
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Requires `iss` to be `issuer`.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The clock skew allowed.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The user a token names, or why it is refused.
    pub(crate) fn verify(&self, token: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Claims {
            sub: String,
        }
        let key = jsonwebtoken::DecodingKey::from_secret(self.secret.as_bytes())
            .map_err(|e| format!("the gateway's JWT secret is unusable: {e}"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = self.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let sub = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims.sub)
            .map_err(|e| format!("invalid token: {e}"))?;
        crate::config::check_user_id(&sub).map_err(|e| format!("invalid token: `sub` {e}"))?;
        Ok(sub)
    }
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("secret", &"<redacted>")
            .field("leeway", &self.leeway)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl GatewayConfig {
    /// The per-IP frame budget in effect (see
    /// [`LimitsConfig::max_messages_per_ip_per_minute`]).
    pub fn ip_messages_per_minute(&self) -> u32 {
        self.limits
            .max_messages_per_ip_per_minute
            .unwrap_or_else(|| {
                let factor = match self.auth {
                    AuthMode::Dev => 2,
                    AuthMode::Jwt(_) => 50,
                };
                self.limits.max_messages_per_minute.saturating_mul(factor)
            })
    }
}

/// The longest user id, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

/// Checks a user id (dev `user_id`, or a token's `sub`): 1 to
/// [`MAX_USER_ID_BYTES`] bytes, printable characters only (no control
/// characters, so no forged log lines or terminal escapes).
pub(crate) fn check_user_id(user: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
        return Err(format!("must be 1 to {MAX_USER_ID_BYTES} bytes"));
    }
    if user.chars().any(char::is_control) {
        return Err("must be printable (no control characters)".to_owned());
    }
    Ok(())
}

/// What a gateway on Redis does while Redis is unreachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisFailurePolicy {
    /// Keep serving (the default): rate limits are decided per node in
    /// memory, new sessions are kept in this node's memory (resumable here
    /// only), agent events of Redis sessions wait in order in a local
    /// outbox and are published when Redis is back, and resumes of Redis
    /// sessions are answered 503 + `Retry-After` until then. Logged and
    /// counted in `/metrics`.
    #[default]
    FailOpen,
    /// Refuse new work: handshakes get 503 and client frames
    /// `rate_limited` until Redis is back. Agent events already under way
    /// still wait in the outbox, so nothing is lost.
    FailClosed,
}

/// Where a gateway keeps shared state in Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port/db`, or a Redis Cluster's seed list
    /// `redis+cluster://h1:p1,h2:p2`.
    pub url: String,
    /// Prefix of every key (default `"wsc:"`); gateways sharing state use
    /// the same.
    pub prefix: String,
    /// What happens while Redis is unreachable.
    pub failure: RedisFailurePolicy,
    /// How long a command waits for Redis's reply (default 2 s). A reply
    /// that times out is not taken as Redis being unreachable on its own
    /// (a busy Redis, or a busy gateway, answers late): the health check's
    /// `PING`, within 500 ms, decides.
    pub timeout: std::time::Duration,
}

/// How long a Redis command waits for its reply by default
/// ([`RedisSettings::timeout`]).
pub const DEFAULT_REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl RedisSettings {
    /// Settings for `url` with the default prefix, fail-open and the
    /// default reply timeout.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            prefix: "wsc:".into(),
            failure: RedisFailurePolicy::FailOpen,
            timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }
}

/// The publish API's key: at least [`MIN_API_KEY_BYTES`] bytes, compared
/// in constant time, never shown (its `Debug` is redacted).
///
/// ```
/// use wsc_server::ApiKey;
/// assert!(ApiKey::new("").is_err() && ApiKey::new("s3cret").is_err());
/// let key = ApiKey::new("0123456789abcdef0123456789abcdef").unwrap();
/// assert!(key.matches("0123456789abcdef0123456789abcdef") && !key.matches("0123"));
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// The shortest publish API key accepted, in bytes.
pub const MIN_API_KEY_BYTES: usize = 32;

/// A publish API key too short to use (an empty one included).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the API key is {0} bytes; at least {MIN_API_KEY_BYTES} are needed (e.g. `openssl rand -hex 32`)"
)]
pub struct WeakApiKey(pub usize);

impl ApiKey {
    /// A key of at least [`MIN_API_KEY_BYTES`] bytes.
    ///
    /// # Errors
    /// [`WeakApiKey`] for a shorter one: an empty `--api-key` (or
    /// `WSC_API_KEY=`) must never open the publish API.
    pub fn new(key: impl Into<String>) -> Result<Self, WeakApiKey> {
        let key = key.into();
        if key.len() < MIN_API_KEY_BYTES {
            return Err(WeakApiKey(key.len()));
        }
        Ok(ApiKey(key))
    }

    /// Whether `presented` is the key. Both are hashed first, so the
    /// comparison takes the same time whatever and however long they are.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest, Sha256};
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Configuration of a [`Gateway`](crate::Gateway), by concern: who may
/// connect ([`auth`](Self::auth)), how much each user and address may do
/// ([`limits`](Self::limits)), what sessions keep for resume
/// ([`sessions`](Self::sessions)), agent runs ([`agents`](Self::agents)),
/// and the HTTP and WebSocket transport ([`http`](Self::http)). Every
/// default is in the sections' `Default`; the `wsc-gateway` command line
/// maps its flags onto these fields one to one.
///
/// ```
/// use std::time::Duration;
/// use wsc_server::{GatewayConfig, LimitsConfig, SessionsConfig};
///
/// let config = GatewayConfig {
///     limits: LimitsConfig { max_connections_per_user: 10, ..Default::default() },
///     sessions: SessionsConfig { session_ttl: Duration::from_secs(60), ..Default::default() },
///     ..Default::default()
/// };
/// assert_eq!(config.limits.max_messages_per_minute, 120);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayConfig {
    /// Authentication (default dev).
    pub auth: AuthMode,
    /// What each user and each client address may do.
    pub limits: LimitsConfig,
    /// What sessions keep for resume, and how many there may be.
    pub sessions: SessionsConfig,
    /// Agent runs: how many, how long, how many tracked.
    pub agents: AgentsConfig,
    /// The HTTP and WebSocket transport: timeouts, sizes, proxies, the
    /// publish API's key.
    pub http: HttpConfig,
}

/// What each user and each client address may do.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    /// Concurrent connections per user (default 5).
    pub max_connections_per_user: u32,
    /// Client frames per user per minute (default 120).
    pub max_messages_per_minute: u32,
    /// Client frames per user per hour (default 3 600).
    pub max_messages_per_hour: u32,
    /// WebSocket handshakes per client IP per minute (default 120; 0
    /// disables the check, e.g. for load tests from one machine).
    pub max_handshakes_per_ip: u32,
    /// Client frames per IP per minute, all its users together, checked
    /// with the user's windows (`None`, the default: twice
    /// `max_messages_per_minute` in dev auth, where user ids are
    /// self-asserted; fifty times it with JWT, where users behind one NAT
    /// share an address; `Some(0)` turns it off).
    pub max_messages_per_ip_per_minute: Option<u32>,
    /// The largest client frame; larger ones close the connection with 1009
    /// (default 64 KiB).
    pub max_frame_bytes: usize,
    /// WebSocket connections and AG-UI SSE streams this gateway holds at
    /// once; one more is refused before anything is opened for it, with
    /// 503 `at_capacity` and a `Retry-After` of 1 to 5 s (jittered, so
    /// refused clients come back spread out). `None` (the default): all
    /// but a fifth of the process's open-file limit (at least 256 left for
    /// `/health`, `/metrics`, the store and agent requests), so the
    /// gateway never runs out of open files.
    pub max_connections: Option<usize>,
}

impl LimitsConfig {
    /// The connection cap in force: [`max_connections`](Self::max_connections),
    /// else derived from the process's open-file limit (no cap where the
    /// limit cannot be read).
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            wsc_perf_monitor::open_file_limit().map_or(usize::MAX, crate::capacity::cap_for)
        })
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections_per_user: 5,
            max_messages_per_minute: 120,
            max_messages_per_hour: 3_600,
            max_handshakes_per_ip: 120,
            max_messages_per_ip_per_minute: None,
            max_frame_bytes: 64 * 1024,
            max_connections: None,
        }
    }
}

/// What sessions keep for resume, and how many there may be.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionsConfig {
    /// Frames kept per session for resume (default 1 000).
    pub replay_buffer: usize,
    /// Bytes (serialized frames, seq included) kept per session for resume
    /// (default 1 MiB). A buffered frame takes its serialized size + at
    /// most 64 bytes of heap, which
    /// [`max_replay_bytes_total`](Self::max_replay_bytes_total) counts.
    pub replay_buffer_bytes: usize,
    /// How long a lost session stays resumable (default 300 s).
    pub session_ttl: Duration,
    /// Frames queued per connection before a slow client is dropped (it
    /// stays resumable; default 256).
    pub outbound_queue: usize,
    /// Bytes of frames queued per connection (serialized size; default
    /// 4 MiB): a client that falls this far behind for a second is dropped
    /// as too slow as well (close 1008 "client too slow"; it stays
    /// resumable). What a slow reader pins is this plus one write batch
    /// (256 KiB) and its socket buffer.
    pub max_send_queue_bytes: usize,
    /// Sessions (attached or resumable) one user may hold (`None`, the
    /// default: twice `max_connections_per_user`). A new session beyond it
    /// reclaims that user's session detached longest ago.
    pub max_sessions_per_user: Option<usize>,
    /// Sessions held in all (default 100 000). When full, the sessions
    /// detached longest ago are reclaimed first; a new user is refused only
    /// when every held session is connected.
    pub max_sessions: usize,
    /// Heap bytes the frames of replay buffers may take in all sessions
    /// together (default 512 MiB; memory sessions): each frame counted as
    /// it is kept (`BufferedFrame::heap_bytes`: its text + at most 64
    /// bytes). Past it, the sessions detached longest ago are reclaimed. A
    /// reclaimed session's resume is answered `expired`.
    pub max_replay_bytes_total: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            replay_buffer: 1_000,
            replay_buffer_bytes: 1 << 20,
            session_ttl: Duration::from_secs(300),
            outbound_queue: 256,
            max_send_queue_bytes: 4 << 20,
            max_sessions_per_user: None,
            max_sessions: 100_000,
            max_replay_bytes_total: 512 * 1024 * 1024,
        }
    }
}

/// Agent runs: how many, how long, how many tracked.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentsConfig {
    /// Agent runs one user may have in flight at once (default 4); one
    /// more `start_agent` is answered `rate_limited` and starts nothing.
    pub max_runs_per_user: usize,
    /// A run still going this long after it started is stuck: the event
    /// monitor marks it timed out, and `/health` counts it (default 5 min).
    /// Pauses inside a run (a model thinking, a slow tool) never affect
    /// health; only this and what the gateway itself controls do.
    pub run_timeout: Duration,
    /// Agent runs the event monitor tracks at once, with their events
    /// (default 10 000). Ended runs are kept up to 10 minutes for
    /// inspection and are the first evicted past this bound. A run in
    /// flight keeps its events whole (about 7 KiB with the simulated
    /// agent's 7 events); an ended one keeps compact records (about
    /// 0.8 KiB; see docs/performance.md).
    pub max_tracked_runs: usize,
    /// How long an AG-UI run's events stay readable after it ended
    /// (`GET /ag-ui/runs/{runId}/events`; later: 410), default 5 min.
    pub run_retention: Duration,
    /// AG-UI runs (in flight or within their retention) one user may hold
    /// (default 100), and the gateway in all (default 10 000); each keeps
    /// at most `SessionsConfig::replay_buffer_bytes` of events.
    pub max_ag_ui_runs_per_user: usize,
    /// See [`max_ag_ui_runs_per_user`](Self::max_ag_ui_runs_per_user).
    pub max_ag_ui_runs: usize,
    /// An AG-UI run no reader has followed for this long is cancelled, so
    /// an abandoned tab does not burn agent tokens (default 60 s; zero:
    /// never). Readers leave when their stream closes (noticed within
    /// 15 s, the keep-alive's interval).
    pub orphan_run_timeout: Duration,
    /// With gateways sharing Redis: an AG-UI run whose gateway has written
    /// nothing to Redis for this long (its gateway died, or could not
    /// reach Redis) is ended by its readers on other gateways with
    /// `RUN_ERROR {code: "gateway_lost"}`, so none waits forever (default
    /// 30 s; the gateway renews its runs every 5 s). Keep it above your
    /// Redis failover time (a Redis Cluster's `cluster-node-timeout`, 15 s
    /// by default, plus the election): a run is not ended by a failover.
    pub run_owner_lease: Duration,
    /// Events one run may emit (default 1 000 000; its terminal frame not
    /// counted): the next one ends it with `agent_error {code:
    /// "run_too_large"}` (over AG-UI, `RUN_ERROR` with that code), and its
    /// agent is hung up on.
    pub max_run_events: u64,
    /// Bytes one run may emit (default 256 MiB): an AG-UI event counts its
    /// text as the agent sent it, a legacy frame its serialized size.
    /// Past it, as [`max_run_events`](Self::max_run_events).
    pub max_run_bytes: u64,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        AgentsConfig {
            max_runs_per_user: 4,
            run_timeout: Duration::from_secs(300),
            max_tracked_runs: 10_000,
            run_retention: Duration::from_secs(300),
            max_ag_ui_runs_per_user: 100,
            max_ag_ui_runs: 10_000,
            orphan_run_timeout: Duration::from_secs(60),
            run_owner_lease: Duration::from_secs(30),
            max_run_events: 1_000_000,
            max_run_bytes: 256 << 20,
        }
    }
}

/// The HTTP and WebSocket transport.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// The server pings every connection this often (a WebSocket ping) and
    /// drops one it has heard nothing from (no frame, no pong) for two
    /// intervals; its session stays resumable. Told to clients in
    /// `connection_established` as `heartbeat_interval_ms`. Measured on the
    /// gateway's clock (default 15 s, at least 10 ms).
    pub heartbeat_interval: Duration,
    /// A write to a client taking longer than this drops it (default 10 s).
    pub write_timeout: Duration,
    /// On shutdown, how long [`Gateway::serve`](crate::Gateway::serve)
    /// waits for every open WebSocket to be closed with 1001 before it
    /// returns (default 10 s).
    pub drain_timeout: Duration,
    /// A client must send a complete request head (request line and
    /// headers) within this time of connecting, or of its previous request
    /// on a kept-alive connection; otherwise the connection is closed
    /// (default 10 s). Guards against slowloris-style handshakes.
    pub handshake_timeout: Duration,
    /// The largest request head (request line and headers) in bytes; a
    /// larger one is answered 431 and the connection closed (default
    /// 16 KiB).
    pub max_header_bytes: usize,
    /// Reverse proxies whose forwarding headers are believed (default
    /// none): a request from one of these networks is attributed to the
    /// client it names in `X-Forwarded-For` (else `Forwarded: for=`), the
    /// rightmost address that is not itself a trusted proxy. Every per-IP
    /// limit then counts real clients, not the proxy.
    pub trusted_proxies: Vec<wsc_rate_limiter::IpNet>,
    /// The key backends present (`Authorization: Bearer KEY`) to
    /// `POST /api/publish`; without one the publish API is off (404).
    pub api_key: Option<ApiKey>,
    /// The web origins (`https://app.example.com`) whose pages may call the
    /// AG-UI endpoints (`POST /ag-ui`, `GET …/events`, `POST …/cancel`)
    /// from the browser: CORS answers for them, and only them (default
    /// none: same-origin pages and non-browser clients only). `*` allows
    /// every origin.
    pub cors_origins: Vec<String>,
    /// The largest request body of `POST /api/publish` (default 1 MiB):
    /// larger is `413`, answered after the key is checked and without
    /// reading the rest. (`POST /ag-ui` takes at most 1 MiB too.)
    pub max_publish_bytes: usize,
    /// The bytes one publish may add to replay buffers in all: its frame's
    /// size times the sessions it goes to (`None`, the default: an eighth
    /// of [`SessionsConfig::max_replay_bytes_total`], 64 MiB). Larger is
    /// `413 fanout_too_large` and nothing is delivered, so one publish to a
    /// user with many sessions cannot reclaim other users' sessions.
    pub max_publish_fanout_bytes: Option<usize>,
    /// How long a request body may take to arrive, on every route that
    /// reads one (default 10 s): slower is `408` and the connection's
    /// request ends.
    pub body_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            heartbeat_interval: Duration::from_secs(15),
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            api_key: None,
            cors_origins: Vec::new(),
            max_publish_bytes: 1024 * 1024,
            max_publish_fanout_bytes: None,
            body_timeout: Duration::from_secs(10),
        }
    }
}
