//! `wsc-gateway`: run the gateway (`serve`, the `wsc-server` library) or
//! watch it under simulated load (`demo`, the `wsc-loadgen` library). The
//! command line, the progress display and log setup live here only. See
//! `--help`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::net::TcpListener;
use wsc_loadgen::{DemoConfig, DemoProgress, run_demo};
use wsc_server::{
    AgentProtocol, AgentRunner, AuthMode, Gateway, GatewayConfig, HttpAgent, HttpAgentConfig,
    JwtAuth, RedisFailurePolicy, RedisSettings, SimulatedAgent,
};

/// The binary's allocator: jemalloc spends fewer cycles than the system
/// allocator on the many small, short-lived allocations of an event's path
/// (about 9 % of the gateway's CPU under the demo's load) at the same
/// memory per idle connection; see docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The wsc WebSocket gateway.
#[derive(Parser, Debug)]
#[command(name = "wsc-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the gateway until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Run a gateway in-process under simulated users that drop and resume
    /// their connections; print a report; exit 1 if any event was lost or
    /// duplicated or any run failed validation.
    Demo(Box<DemoArgs>),
}

/// `demo --protocol`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DemoProtocolArg {
    /// The wsc protocol.
    Wsc,
    /// The AG-UI dialect.
    #[value(name = "ag-ui")]
    AgUi,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Simulated users, each with its own WebSocket connection.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Agent runs per user.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Chance that a run has its connection dropped (0..=1).
    #[arg(long, default_value_t = 0.2)]
    disconnect_rate: f64,
    /// The simulated agent's delay between events, ms.
    #[arg(long, default_value_t = 150)]
    step_delay_ms: u64,
    /// Seconds a run may take before its missing events count as lost; a
    /// client retries a lost connection this long too. Raise it (e.g. 60)
    /// to tell late from lost through a Redis failover: the report's
    /// "slowest run" says how late.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    run_timeout: u64,
    /// Pings one extra user sends at once, to show rate limiting (0: none).
    #[arg(long, default_value_t = 200)]
    flood_pings: u32,
    /// Seed for the random drops (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// The protocol the users speak: `wsc` (start_agent, lifecycle frames)
    /// or `ag-ui` (/ws?protocol=ag-ui: run_agent, the runs' AG-UI events,
    /// each run checked against AG-UI's rules, some joined by a second
    /// reader).
    #[arg(long, value_enum, default_value_t = DemoProtocolArg::Wsc)]
    protocol: DemoProtocolArg,
    /// With `--protocol ag-ui`: the share of runs a second connection of
    /// the user joins (join_run) and must get whole too.
    #[arg(long, default_value_t = 0.2)]
    join_rate: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Keep the gateway (and its dashboard) up after the run, until SIGINT
    /// or SIGTERM.
    #[arg(long)]
    serve_dashboard: bool,
    /// Address of the in-process gateway (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// Run the gateways on this Redis (shared limits and sessions).
    #[arg(long)]
    redis: Option<String>,
    /// Drive gateways already running at these WebSocket URLs
    /// (`ws://host:port/ws`, repeatable) instead of starting any; only the
    /// clients validate the runs then. Load tests and soaks use it.
    #[arg(long = "target", value_name = "WS_URL", conflicts_with_all = ["redis", "serve_dashboard"])]
    targets: Vec<String>,
    /// Gateways to start (more than one needs --redis); each client
    /// reconnects to the next one after a drop, so resumes cross gateways.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    #[command(flatten)]
    redis_options: RedisOptions,
    /// The in-process gateways run their runs on this agent backend
    /// instead of the simulated agent.
    #[command(flatten)]
    agent: AgentOptions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Auth {
    Dev,
    Jwt,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WSC_BIND", default_value = "127.0.0.1:8765")]
    bind: String,
    /// Authentication mode. `dev` trusts any `user_id`: it serves loopback
    /// addresses only, unless --insecure-dev.
    #[arg(long, env = "WSC_AUTH", value_enum, default_value = "dev")]
    auth: Auth,
    /// Serve `--auth dev` on a non-loopback address anyway (anyone who can
    /// reach it can claim any user id).
    #[arg(long, env = "WSC_INSECURE_DEV")]
    insecure_dev: bool,
    /// HS256 secret for --auth jwt (at least 32 bytes).
    #[arg(long, env = "WSC_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// Seconds of clock skew allowed on a token's `exp` and `nbf`.
    #[arg(long, env = "WSC_JWT_LEEWAY", default_value_t = 5)]
    jwt_leeway: u64,
    /// Require tokens' `aud` to name this audience.
    #[arg(long, env = "WSC_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Require tokens' `iss` to be this issuer.
    #[arg(long, env = "WSC_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Reverse proxies whose X-Forwarded-For / Forwarded headers are
    /// believed: comma-separated CIDRs or addresses (default none).
    #[arg(long, env = "WSC_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<wsc_server::IpNet>,
    /// Client frames per IP per minute, all its users together (default:
    /// 2x --max-messages-per-minute with --auth dev, 50x with jwt; 0 turns
    /// it off).
    #[arg(long, env = "WSC_MAX_MESSAGES_PER_IP_PER_MINUTE")]
    max_messages_per_ip_per_minute: Option<u32>,
    /// WebSocket connections and AG-UI SSE streams this gateway holds at
    /// once; one more is refused with 503 at_capacity and a Retry-After of
    /// 1-5 s (default: all but a fifth of the process's open-file limit,
    /// at least 256 of them left for /health, /metrics, Redis and agent
    /// requests).
    #[arg(long, env = "WSC_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Concurrent connections per user.
    #[arg(long, env = "WSC_MAX_CONNECTIONS_PER_USER", default_value_t = 5)]
    max_connections_per_user: u32,
    /// Client frames per user per minute.
    #[arg(long, env = "WSC_MAX_MESSAGES_PER_MINUTE", default_value_t = 120)]
    max_messages_per_minute: u32,
    /// Client frames per user per hour.
    #[arg(long, env = "WSC_MAX_MESSAGES_PER_HOUR", default_value_t = 3600)]
    max_messages_per_hour: u32,
    /// WebSocket handshakes per client IP per minute (0: no limit).
    #[arg(long, env = "WSC_MAX_HANDSHAKES_PER_IP", default_value_t = 120)]
    max_handshakes_per_ip: u32,
    /// Largest client frame in bytes (larger: close 1009).
    #[arg(long, env = "WSC_MAX_FRAME_BYTES", default_value_t = 65536)]
    max_frame_bytes: usize,
    /// Frames kept per session for resume.
    #[arg(long, env = "WSC_REPLAY_BUFFER", default_value_t = 1000)]
    replay_buffer: usize,
    /// Bytes (serialized frames) kept per session for resume.
    #[arg(long, env = "WSC_REPLAY_BUFFER_BYTES", default_value_t = 1 << 20)]
    replay_buffer_bytes: usize,
    /// Bytes of frames queued per connection: a client that falls this
    /// far behind for a second is dropped as too slow (close 1008; it stays
    /// resumable).
    #[arg(long, env = "WSC_MAX_SEND_QUEUE_BYTES", default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(65536..))]
    max_send_queue_bytes: u64,
    /// Seconds a lost session stays resumable.
    #[arg(long, env = "WSC_SESSION_TTL", default_value_t = 300)]
    session_ttl: u64,
    /// Seconds a client has to send a complete request head (slower
    /// handshakes are closed).
    #[arg(long, env = "WSC_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// Largest request head (request line and headers) in bytes (larger:
    /// 431).
    #[arg(long, env = "WSC_MAX_HEADER_BYTES", default_value_t = 16384, value_parser = clap::value_parser!(u64).range(8192..=1 << 20))]
    max_header_bytes: u64,
    /// Agent runs the event monitor tracks at once (ended ones are evicted
    /// first; an ended run keeps about 0.8 KiB, one in flight its events).
    #[arg(long, env = "WSC_MAX_TRACKED_RUNS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_tracked_runs: u64,
    /// Agent runs one user may have in flight (one more start is refused
    /// with rate_limited).
    #[arg(long, env = "WSC_MAX_RUNS_PER_USER", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    max_runs_per_user: u64,
    /// Sessions one user may hold (default 2x --max-connections-per-user);
    /// a new one beyond it reclaims the user's session detached longest
    /// ago.
    #[arg(long, env = "WSC_MAX_SESSIONS_PER_USER")]
    max_sessions_per_user: Option<usize>,
    /// Sessions held in all; when full, the ones detached longest ago are
    /// reclaimed first.
    #[arg(long, env = "WSC_MAX_SESSIONS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_sessions: u64,
    /// Heap bytes the replay buffers' frames may take in all sessions
    /// together (each frame counted as it is kept: its serialized text + at
    /// most 64 bytes); past it, the sessions detached longest ago are
    /// reclaimed.
    #[arg(long, env = "WSC_MAX_REPLAY_BYTES_TOTAL", default_value_t = 512 * 1024 * 1024)]
    max_replay_bytes_total: usize,
    /// Seconds after which a run still going is stuck (timed out; counted
    /// by /health). Pauses inside a run never affect health.
    #[arg(long, env = "WSC_RUN_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    run_timeout: u64,
    /// Seconds an AG-UI run's events stay readable after it ended
    /// (`GET /ag-ui/runs/{runId}/events`; later: 410).
    #[arg(long, env = "WSC_RUN_RETENTION", default_value_t = 300)]
    run_retention: u64,
    /// Seconds after which an AG-UI run no reader follows is cancelled (0:
    /// never).
    #[arg(long, env = "WSC_ORPHAN_RUN_TIMEOUT", default_value_t = 60)]
    orphan_run_timeout: u64,
    /// With --redis: seconds after which an AG-UI run whose gateway wrote
    /// nothing to Redis is ended by its readers on other gateways
    /// (`RUN_ERROR gateway_lost`). Keep it above Redis's failover time.
    #[arg(long, env = "WSC_RUN_OWNER_LEASE", default_value_t = 30, value_parser = clap::value_parser!(u64).range(10..))]
    run_owner_lease: u64,
    /// Events one agent run may emit; the next ends it with `agent_error
    /// run_too_large` (AG-UI: `RUN_ERROR`).
    #[arg(long, env = "WSC_MAX_RUN_EVENTS", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_run_events: u64,
    /// Bytes one agent run may emit (AG-UI events as the agent sent them,
    /// legacy frames serialized); past it, as --max-run-events.
    #[arg(long, env = "WSC_MAX_RUN_BYTES", default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    max_run_bytes: u64,
    /// The key backends send as `Authorization: Bearer KEY` to
    /// `POST /api/publish` (without it, the publish API is off): at least
    /// 32 bytes (`openssl rand -hex 32`); a shorter or empty one refuses to
    /// start.
    #[arg(long, env = "WSC_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The largest `POST /api/publish` body, bytes (413 beyond, after the
    /// key is checked).
    #[arg(long, env = "WSC_MAX_PUBLISH_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_publish_bytes: u64,
    /// Bytes one publish may add to replay buffers: its frame's size times
    /// the sessions it reaches (default: an eighth of
    /// --max-replay-bytes-total); larger is 413 and nothing is delivered.
    #[arg(long, env = "WSC_MAX_PUBLISH_FANOUT_BYTES")]
    max_publish_fanout_bytes: Option<usize>,
    /// Seconds a request body may take to arrive (408 beyond), every route.
    #[arg(long, env = "WSC_BODY_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// A web origin (`https://app.example.com`; repeat for more, `*` for
    /// any) whose pages may call the AG-UI endpoints from the browser
    /// (CORS). Without one, only same-origin pages and non-browser clients.
    #[arg(long = "cors-origin", env = "WSC_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Shared state in Redis (`redis://host:port/db`, or a Redis Cluster's
    /// seed list `redis+cluster://h1:p1,h2:p2`): rate limits, sessions and
    /// connection counts shared by every gateway on it.
    #[arg(long, env = "WSC_REDIS")]
    redis: Option<String>,
    #[command(flatten)]
    redis_options: RedisOptions,
    #[command(flatten)]
    agent: AgentOptions,
    /// Log lines as human-readable text or as one JSON object per line
    /// (for log collectors); the level comes from RUST_LOG (default info).
    #[arg(long, env = "WSC_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Failure {
    Open,
    Closed,
}

#[derive(clap::Args, Debug)]
struct RedisOptions {
    /// While Redis is unreachable: `open` keeps serving from memory,
    /// `closed` refuses new work (503 / rate_limited).
    #[arg(long, env = "WSC_REDIS_FAILURE", value_enum, default_value = "open")]
    redis_failure: Failure,
    /// Prefix of every Redis key (gateways sharing state use the same).
    #[arg(long, env = "WSC_REDIS_PREFIX", default_value = "wsc:")]
    redis_prefix: String,
    /// Seconds a Redis command waits for its reply (and a health check's
    /// PING). A reply that times out alone does not make Redis
    /// unreachable: the next health check (within 500 ms) decides.
    #[arg(long, env = "WSC_REDIS_TIMEOUT", default_value = "2", value_parser = parse_timeout)]
    redis_timeout: Duration,
}

/// A reply timeout in seconds: more than 0, at most 60.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 60.0) {
        return Err(format!("{s} s: give more than 0 and at most 60 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl RedisOptions {
    fn settings(&self, url: &str) -> RedisSettings {
        RedisSettings {
            url: url.to_owned(),
            prefix: self.redis_prefix.clone(),
            failure: match self.redis_failure {
                Failure::Open => RedisFailurePolicy::FailOpen,
                Failure::Closed => RedisFailurePolicy::FailClosed,
            },
            timeout: self.redis_timeout,
        }
    }
}

async fn gateway_for(
    config: GatewayConfig,
    redis: Option<RedisSettings>,
    agent: Option<HttpAgentConfig>,
) -> anyhow::Result<Gateway> {
    let runner: Arc<dyn AgentRunner> = match agent {
        Some(agent) => Arc::new(HttpAgent::new(agent)),
        None => Arc::new(SimulatedAgent),
    };
    let mut builder = Gateway::builder(config).runner(runner);
    let url = redis.as_ref().map(|r| r.url.clone());
    if let Some(settings) = redis {
        builder = builder.redis(settings);
    }
    builder
        .build()
        .await
        .with_context(|| format!("cannot use redis at {}", url.unwrap_or_default()))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Protocol {
    /// AG-UI events over SSE.
    AgUi,
    /// wsc frames over SSE or NDJSON.
    Wsc,
}

/// An upstream agent backend instead of the simulated agent.
#[derive(clap::Args, Debug)]
struct AgentOptions {
    /// The agent backend: one streaming POST per run (http://). Without
    /// it, the simulated agent runs.
    #[arg(long, env = "WSC_AGENT_URL")]
    agent_url: Option<String>,
    /// What the backend streams.
    #[arg(long, env = "WSC_AGENT_PROTOCOL", value_enum, default_value = "ag-ui")]
    agent_protocol: Protocol,
    /// Sent to the backend as `Authorization: Bearer TOKEN`.
    #[arg(long, env = "WSC_AGENT_TOKEN", hide_env_values = true)]
    agent_token: Option<String>,
    /// Seconds a run may take in all.
    #[arg(long, env = "WSC_AGENT_TIMEOUT", default_value_t = 600)]
    agent_timeout: u64,
    /// Seconds the backend may stay silent (no answer, no event).
    #[arg(long, env = "WSC_AGENT_IDLE_TIMEOUT", default_value_t = 60)]
    agent_idle_timeout: u64,
    /// Requests open to the backend at once (each holds a socket); a run
    /// beyond waits up to --agent-idle-timeout, then ends with
    /// `upstream_busy`.
    #[arg(long, env = "WSC_MAX_UPSTREAM_REQUESTS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_upstream_requests: u64,
}

impl AgentOptions {
    fn config(&self) -> Option<HttpAgentConfig> {
        let url = self.agent_url.clone()?;
        Some(HttpAgentConfig {
            protocol: match self.agent_protocol {
                Protocol::AgUi => AgentProtocol::AgUi,
                Protocol::Wsc => AgentProtocol::Wsc,
            },
            token: self.agent_token.clone(),
            timeout: Duration::from_secs(self.agent_timeout.max(1)),
            idle_timeout: Duration::from_secs(self.agent_idle_timeout.max(1)),
            max_requests: usize::try_from(self.max_upstream_requests).unwrap_or(usize::MAX),
            ..HttpAgentConfig::new(url)
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A network (`10.0.0.0/8`) or one address (`10.0.0.7`).
fn parse_net(text: &str) -> Result<wsc_server::IpNet, String> {
    let text = text.trim();
    text.parse::<wsc_server::IpNet>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(wsc_server::IpNet::from)
        })
        .map_err(|_| format!("{text:?} is neither a CIDR network nor an IP address"))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let auth = match args.auth {
        Auth::Dev => AuthMode::Dev,
        Auth::Jwt => {
            let secret = args
                .jwt_secret
                .context("--auth jwt needs --jwt-secret (or WSC_JWT_SECRET)")?;
            let mut jwt = JwtAuth::new(secret)
                .context("--jwt-secret")?
                .with_leeway(Duration::from_secs(args.jwt_leeway));
            if let Some(aud) = args.jwt_audience {
                jwt = jwt.with_audience(aud);
            }
            if let Some(iss) = args.jwt_issuer {
                jwt = jwt.with_issuer(iss);
            }
            AuthMode::Jwt(jwt)
        }
    };
    let config = GatewayConfig {
        auth,
        limits: wsc_server::LimitsConfig {
            max_connections_per_user: args.max_connections_per_user,
            max_messages_per_minute: args.max_messages_per_minute,
            max_messages_per_hour: args.max_messages_per_hour,
            max_handshakes_per_ip: args.max_handshakes_per_ip,
            max_messages_per_ip_per_minute: args.max_messages_per_ip_per_minute,
            max_frame_bytes: args.max_frame_bytes,
            max_connections: args
                .max_connections
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        },
        sessions: wsc_server::SessionsConfig {
            replay_buffer: args.replay_buffer,
            replay_buffer_bytes: args.replay_buffer_bytes,
            max_send_queue_bytes: usize::try_from(args.max_send_queue_bytes).unwrap_or(usize::MAX),
            session_ttl: Duration::from_secs(args.session_ttl),
            max_sessions_per_user: args.max_sessions_per_user,
            max_sessions: usize::try_from(args.max_sessions).unwrap_or(usize::MAX),
            max_replay_bytes_total: args.max_replay_bytes_total,
            ..Default::default()
        },
        agents: wsc_server::AgentsConfig {
            max_tracked_runs: usize::try_from(args.max_tracked_runs).unwrap_or(usize::MAX),
            max_runs_per_user: usize::try_from(args.max_runs_per_user).unwrap_or(usize::MAX),
            run_timeout: Duration::from_secs(args.run_timeout),
            run_retention: Duration::from_secs(args.run_retention),
            orphan_run_timeout: Duration::from_secs(args.orphan_run_timeout),
            run_owner_lease: Duration::from_secs(args.run_owner_lease),
            max_run_events: args.max_run_events,
            max_run_bytes: args.max_run_bytes,
            ..Default::default()
        },
        http: wsc_server::HttpConfig {
            trusted_proxies: args.trusted_proxies.clone(),
            handshake_timeout: Duration::from_secs(args.handshake_timeout.max(1)),
            max_header_bytes: args.max_header_bytes as usize,
            api_key: args
                .api_key
                .clone()
                .map(wsc_server::ApiKey::new)
                .transpose()
                .context("--api-key")?,
            cors_origins: args.cors_origins.clone(),
            max_publish_bytes: usize::try_from(args.max_publish_bytes).unwrap_or(usize::MAX),
            max_publish_fanout_bytes: args.max_publish_fanout_bytes,
            body_timeout: Duration::from_secs(args.body_timeout),
            ..Default::default()
        },
    };
    let listener = TcpListener::bind(&args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = listener.local_addr()?;
    if matches!(args.auth, Auth::Dev) && !addr.ip().is_loopback() {
        anyhow::ensure!(
            args.insecure_dev,
            "--auth dev trusts any user_id, so it serves loopback addresses only; {addr} is not one. \
             Use --auth jwt, bind 127.0.0.1, or pass --insecure-dev to accept the risk"
        );
        tracing::warn!(%addr, "--insecure-dev: --auth dev on a non-loopback address; anyone who reaches it can claim any user id");
        eprintln!(
            "warning: --auth dev on {addr} (not loopback): anyone who reaches it can claim any user id"
        );
    }
    let redis = args
        .redis
        .as_deref()
        .map(|u| args.redis_options.settings(u));
    let gateway = gateway_for(config, redis, args.agent.config()).await?;
    let (_, max_connections) = gateway.connections();
    println!("listening on http://{addr}");
    tracing::info!(%addr, max_connections, "gateway started");
    gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    // The demo's hundreds of connections would drown the progress in
    // per-connection logs: warnings only, unless RUST_LOG says otherwise.
    let (default_filter, format) = match &cli.command {
        Command::Serve(args) => ("info", args.log_format),
        Command::Demo(_) => ("warn", LogFormat::Text),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match cli.command {
        Command::Serve(args) => serve(*args).await.map(|()| std::process::ExitCode::SUCCESS),
        Command::Demo(args) => demo(*args).await,
    }
}

async fn demo(args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    if !(0.0..=1.0).contains(&args.disconnect_rate) {
        anyhow::bail!("--disconnect-rate must be between 0 and 1");
    }
    if args.agent.agent_url.is_some() && !args.targets.is_empty() {
        anyhow::bail!(
            "--agent-url is for the gateways demo starts; gateways given with --target run their own agent"
        );
    }
    if args.instances == 0 || (args.instances > 1 && args.redis.is_none()) {
        anyhow::bail!("--instances must be 1, or more with --redis (they share state there)");
    }
    let config = GatewayConfig {
        // Every simulated user connects from this machine's one IP.
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            max_messages_per_ip_per_minute: Some(0),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut gateways = Vec::new();
    let mut urls = args.targets.clone();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    if let Some(bad) = urls
        .iter()
        .find(|u| !u.starts_with("ws://") && !u.starts_with("wss://"))
    {
        anyhow::bail!("--target must be a ws:// or wss:// URL, got {bad}");
    }
    let instances = if urls.is_empty() { args.instances } else { 0 };
    for i in 0..instances {
        // The first gateway on --bind, the others on free ports.
        let bind = if i == 0 {
            args.bind.as_str()
        } else {
            "127.0.0.1:0"
        };
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("cannot listen on {bind}"))?;
        let addr = listener.local_addr()?;
        let redis = args
            .redis
            .as_deref()
            .map(|u| args.redis_options.settings(u));
        let gateway = gateway_for(config.clone(), redis, args.agent.config()).await?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let g = gateway.clone();
        servers.push(tokio::spawn(async move {
            g.serve(listener, async move {
                let _ = stop_rx.await;
            })
            .await
        }));
        eprintln!(
            "gateway {} on http://{addr} (dashboard at http://{addr}/)",
            i + 1
        );
        gateways.push(gateway);
        urls.push(format!("ws://{addr}/ws"));
        stops.push(stop_tx);
    }
    let addr = urls[0]
        .trim_start_matches("ws://")
        .trim_start_matches("wss://")
        .trim_end_matches("/ws")
        .to_owned();

    let demo_config = DemoConfig {
        users: args.users,
        runs: args.runs,
        disconnect_rate: args.disconnect_rate,
        step_delay: Duration::from_millis(args.step_delay_ms),
        seed: args.seed,
        flood_pings: args.flood_pings,
        agent: args.agent.agent_url.clone(),
        protocol: match args.protocol {
            DemoProtocolArg::Wsc => wsc_loadgen::DemoProtocol::Wsc,
            DemoProtocolArg::AgUi => wsc_loadgen::DemoProtocol::AgUi,
        },
        join_rate: args.join_rate,
        run_timeout: Duration::from_secs(args.run_timeout),
        ..Default::default()
    };
    let progress = Arc::new(DemoProgress::default());
    let total_runs = (args.users * args.runs) as u64;
    let display = tokio::spawn(show_progress(progress.clone(), total_runs));
    let monitors: Vec<_> = gateways.iter().map(|g| g.event_monitor().clone()).collect();
    let report = run_demo(&monitors, &urls, &demo_config, progress.clone()).await;
    display.abort();
    let _ = display.await;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.to_table());
    }
    if args.serve_dashboard {
        eprintln!("demo done; the dashboard stays at http://{addr}/ until Ctrl-C");
        shutdown_signal().await;
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for server in servers {
        server.await??;
    }
    Ok(if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("demo FAILED: events were lost or duplicated, or runs failed validation");
        std::process::ExitCode::FAILURE
    })
}

/// A progress bar on a terminal; a plain line every two seconds otherwise.
async fn show_progress(progress: Arc<DemoProgress>, total_runs: u64) {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total_runs);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        // Dropped (aborted) with the task: leave the bar where it is.
        struct Finish(indicatif::ProgressBar);
        impl Drop for Finish {
            fn drop(&mut self) {
                self.0.finish();
            }
        }
        let bar = Finish(bar);
        loop {
            let s = progress.snapshot();
            bar.0.set_position(s.runs_done);
            bar.0.set_message(format!(
                "{} events, {} drops, {} resumes",
                s.events, s.disconnects, s.resumes
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let s = progress.snapshot();
            eprintln!(
                "progress: {}/{total_runs} runs, {} events, {} drops, {} resumes",
                s.runs_done, s.events, s.disconnects, s.resumes
            );
        }
    }
}
