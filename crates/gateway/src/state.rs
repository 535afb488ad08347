//! [`Gateway`]: the shared state of every connection, and serving it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wsc_core::{SharedClock, SystemClock};
use wsc_event_monitor::{EventMonitor, EventMonitorConfig};
use wsc_perf_monitor::{PerformanceMonitor, PerformanceMonitorConfig};
use wsc_rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
use wsc_reconnection::{BufferLimits, SessionConfig, SessionRegistry};

use crate::agent::{AgentRunner, SimulatedAgent};
use crate::config::{GatewayConfig, RedisFailurePolicy, RedisSettings};
use crate::outbox::Outbox;
use crate::telemetry::{StatsSample, Telemetry};

/// Gateway-level counters (also in `/metrics` and `/api/stats`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) refused_handshakes: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) resumes: AtomicU64,
    pub(crate) resumes_refused: AtomicU64,
    pub(crate) runs: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bad_frames: AtomicU64,
    pub(crate) slow_clients: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) local_sessions: AtomicU64,
    pub(crate) head_timeouts: AtomicU64,
    pub(crate) heads_too_large: AtomicU64,
    pub(crate) repeated_starts: AtomicU64,
}

/// How the ids of sessions held in one node's memory start (see
/// `AppState::local_prefix`).
pub(crate) const LOCAL_SESSION_MARK: &str = "local-";

/// A snapshot of the gateway's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GatewayStats {
    /// Connections accepted.
    pub connections: u64,
    /// Handshakes refused (401, 429, 503).
    pub refused_handshakes: u64,
    /// Client frames refused by the rate limiter.
    pub rate_limited: u64,
    /// Sessions resumed.
    pub resumes: u64,
    /// Resumes refused (a fresh session was started).
    pub resumes_refused: u64,
    /// Agent runs started.
    pub runs: u64,
    /// Frames sent to clients.
    pub frames_sent: u64,
    /// Client frames answered with an error.
    pub bad_frames: u64,
    /// Connections dropped because the client did not read fast enough
    /// (their sessions stay resumable).
    pub slow_clients: u64,
    /// Redis calls that failed.
    pub redis_errors: u64,
    /// Sessions started in this node's memory while Redis was unreachable.
    pub local_fallback_sessions: u64,
    /// Connections closed for not sending a complete request head within
    /// [`GatewayConfig::handshake_timeout`] (slow or silent clients).
    pub head_timeouts: u64,
    /// Request heads refused with 431 (over
    /// [`GatewayConfig::max_header_bytes`] or too many headers).
    pub heads_too_large: u64,
    /// `start_agent` frames repeating the `message_id` of a run already
    /// started in the session (a client unsure its start arrived); no
    /// second run was started.
    pub repeated_starts: u64,
}

pub(crate) struct AppState {
    pub(crate) config: GatewayConfig,
    pub(crate) clock: SharedClock,
    pub(crate) limiter: WebSocketRateLimiter,
    pub(crate) monitor: Arc<EventMonitor>,
    pub(crate) perf: Arc<PerformanceMonitor>,
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) runner: Arc<dyn AgentRunner>,
    pub(crate) counters: Counters,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) next_id: AtomicU64,
    pub(crate) telemetry: Telemetry,
    /// Distinguishes this node's ids (runs, connections) from other nodes'.
    pub(crate) node_tag: String,
    /// Shared state, when the gateway runs on Redis.
    pub(crate) redis: Option<RedisState>,
    /// Sessions started while Redis was unreachable (fail-open): kept in
    /// this node's memory, resumable here only.
    pub(crate) local_sessions: Arc<SessionRegistry>,
    /// The id prefix of sessions this node holds only in its memory (with
    /// Redis; empty without).
    pub(crate) local_prefix: String,
    pub(crate) outbox: Arc<Outbox>,
}

/// The Redis side of a gateway.
pub(crate) struct RedisState {
    pub(crate) settings: RedisSettings,
    pub(crate) redis: redis::aio::ConnectionManager,
    pub(crate) channel: String,
    pub(crate) connections: wsc_redis::RedisConnectionCounter,
    pub(crate) limiter_store: Arc<wsc_rate_limiter::FallbackStore>,
    /// Whether Redis answered the last health check (or call).
    pub(crate) up: std::sync::atomic::AtomicBool,
    /// This node's open connections (user, member), for lease renewal.
    pub(crate) open: dashmap::DashMap<String, String>,
}

impl RedisState {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn fail_closed(&self) -> bool {
        self.settings.failure == RedisFailurePolicy::FailClosed
    }
}

/// Where a session lives, judged from its id alone (with Redis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionHome {
    /// In Redis, shared by every gateway (or, without Redis, in memory).
    Shared,
    /// In this gateway's memory (started while Redis was unreachable).
    Here,
    /// In another gateway's memory.
    Elsewhere,
}

impl AppState {
    /// Where `session_id` lives: ids of sessions kept in one gateway's
    /// memory carry that gateway's local prefix.
    pub(crate) fn session_home(&self, session_id: &str) -> SessionHome {
        if !session_id.starts_with(LOCAL_SESSION_MARK) || self.local_prefix.is_empty() {
            SessionHome::Shared
        } else if session_id.starts_with(&self.local_prefix) {
            SessionHome::Here
        } else {
            SessionHome::Elsewhere
        }
    }

    pub(crate) fn next_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            self.node_tag,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A store call failed: Redis is presumably down until the next health
    /// check says otherwise.
    pub(crate) fn redis_failed(&self) {
        self.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = &self.redis {
            if r.up.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    "redis unreachable: {:?} until it is back",
                    r.settings.failure
                );
            }
        }
    }

    pub(crate) fn stats(&self) -> GatewayStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayStats {
            connections: get(&c.connections),
            refused_handshakes: get(&c.refused_handshakes),
            rate_limited: get(&c.rate_limited),
            resumes: get(&c.resumes),
            resumes_refused: get(&c.resumes_refused),
            runs: get(&c.runs),
            frames_sent: get(&c.frames_sent),
            bad_frames: get(&c.bad_frames),
            slow_clients: get(&c.slow_clients),
            redis_errors: get(&c.redis_errors),
            local_fallback_sessions: get(&c.local_sessions),
            head_timeouts: get(&c.head_timeouts),
            heads_too_large: get(&c.heads_too_large),
            repeated_starts: get(&c.repeated_starts),
        }
    }
}

/// A gateway: the rate limiter, event monitor, performance monitor and
/// session registry behind one axum router. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) state: Arc<AppState>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway with the built-in simulated agent, on the system clock.
    pub fn new(config: GatewayConfig) -> Self {
        Self::with_runner(config, Arc::new(SimulatedAgent))
    }

    /// A gateway running agents with `runner`, everything in memory.
    pub fn with_runner(config: GatewayConfig, runner: Arc<dyn AgentRunner>) -> Self {
        Self::build(config, runner, None)
    }

    /// A gateway whose rate limits, sessions, replay buffers and per-user
    /// connection counts live in Redis, shared with every gateway using the
    /// same Redis and prefix: a client resumes on any of them. While Redis
    /// is unreachable it follows `redis.failure`.
    ///
    /// # Errors
    /// Redis not reachable at startup.
    pub async fn with_redis(
        config: GatewayConfig,
        runner: Arc<dyn AgentRunner>,
        redis: RedisSettings,
    ) -> Result<Self, wsc_core::StoreError> {
        let conn = wsc_redis::connect(&redis.url).await?;
        let secret = wsc_redis::shared_token_secret(&conn, &redis.prefix).await?;
        Ok(Self::build(config, runner, Some((redis, conn, secret))))
    }

    fn build(
        config: GatewayConfig,
        runner: Arc<dyn AgentRunner>,
        redis: Option<(RedisSettings, redis::aio::ConnectionManager, [u8; 32])>,
    ) -> Self {
        let clock: SharedClock = Arc::new(SystemClock);
        let limits = RateLimitConfig {
            max_connections_per_user: config.max_connections_per_user,
            max_messages_per_minute: config.max_messages_per_minute,
            max_messages_per_hour: config.max_messages_per_hour,
            max_handshakes_per_ip: config.max_handshakes_per_ip,
            ..Default::default()
        };
        let buffer = BufferLimits {
            max_frames: config.replay_buffer,
            max_bytes: config.replay_buffer_bytes,
            ..Default::default()
        };
        let session_config = SessionConfig {
            buffer,
            session_ttl: config.session_ttl,
            outbound_capacity: config.outbound_queue,
            ..Default::default()
        };
        // With Redis, sessions started while it is unreachable live only
        // here; their ids say so (and which node), so another node can send
        // their resumes back instead of refusing them.
        let local_prefix = if redis.is_some() {
            format!(
                "{LOCAL_SESSION_MARK}{}-",
                &wsc_reconnection::new_session_id()[..8]
            )
        } else {
            String::new()
        };
        let local_sessions = Arc::new(SessionRegistry::with_clock(
            SessionConfig {
                id_prefix: local_prefix.clone(),
                ..session_config.clone()
            },
            clock.clone(),
        ));
        let (limiter, sessions, redis) = match redis {
            None => (
                WebSocketRateLimiter::with_clock(limits, clock.clone()),
                local_sessions.clone(),
                None,
            ),
            Some((settings, conn, secret)) => {
                let limiter_store = Arc::new(wsc_rate_limiter::FallbackStore::new(
                    Arc::new(wsc_redis::RedisRateLimitStore::new(
                        conn.clone(),
                        settings.prefix.clone(),
                    )),
                    Arc::new(wsc_rate_limiter::MemoryStore::default()),
                ));
                let store: Arc<dyn wsc_rate_limiter::RateLimitStore> = match settings.failure {
                    // Decide locally while Redis is away.
                    RedisFailurePolicy::FailOpen => limiter_store.clone(),
                    // Refuse (the limiter's fail-closed policy).
                    RedisFailurePolicy::FailClosed => Arc::new(
                        wsc_redis::RedisRateLimitStore::new(conn.clone(), settings.prefix.clone()),
                    ),
                };
                let limits = RateLimitConfig {
                    store_failure: match settings.failure {
                        RedisFailurePolicy::FailOpen => wsc_rate_limiter::FailurePolicy::FailOpen,
                        RedisFailurePolicy::FailClosed => {
                            wsc_rate_limiter::FailurePolicy::FailClosed
                        }
                    },
                    ..limits
                };
                let session_store = wsc_redis::RedisSessionStore::new(
                    conn.clone(),
                    wsc_redis::RedisSessionConfig {
                        prefix: settings.prefix.clone(),
                        limits: buffer,
                        session_ttl: config.session_ttl,
                        ..Default::default()
                    },
                );
                let channel = session_store.channel();
                let sessions = Arc::new(SessionRegistry::with_store(
                    SessionConfig {
                        secret: wsc_reconnection::TokenSecret::from_bytes(secret),
                        ..session_config
                    },
                    clock.clone(),
                    Arc::new(session_store),
                ));
                let redis = RedisState {
                    connections: wsc_redis::RedisConnectionCounter::new(
                        conn.clone(),
                        settings.prefix.clone(),
                    ),
                    settings,
                    redis: conn,
                    channel,
                    limiter_store,
                    up: std::sync::atomic::AtomicBool::new(true),
                    open: dashmap::DashMap::new(),
                };
                (
                    WebSocketRateLimiter::with_store(limits, clock.clone(), store),
                    sessions,
                    Some(redis),
                )
            }
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let node_tag = wsc_reconnection::new_session_id()[..6].to_owned();
        Gateway {
            state: Arc::new(AppState {
                monitor: Arc::new(EventMonitor::with_clock(
                    EventMonitorConfig {
                        max_tracked_runs: config.max_tracked_runs.max(1),
                        ..EventMonitorConfig::default()
                    },
                    clock.clone(),
                )),
                perf: Arc::new(PerformanceMonitor::with_clock(
                    PerformanceMonitorConfig::default(),
                    clock.clone(),
                )),
                sessions,
                limiter,
                runner,
                counters: Counters::default(),
                shutdown,
                shutdown_tx,
                next_id: AtomicU64::new(1),
                config,
                clock,
                telemetry: Telemetry::new(),
                node_tag,
                redis,
                local_sessions,
                local_prefix,
                outbox: Arc::new(Outbox::default()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.state.config
    }

    /// The gateway's counters now.
    pub fn stats(&self) -> GatewayStats {
        self.state.stats()
    }

    /// The event monitor every agent event goes through.
    pub fn event_monitor(&self) -> &Arc<EventMonitor> {
        &self.state.monitor
    }

    /// The session registry (sessions, replay buffers).
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.state.sessions
    }

    /// The rate limiter (connection permits, message windows, handshake
    /// limits per IP).
    pub fn rate_limiter(&self) -> &WebSocketRateLimiter {
        &self.state.limiter
    }

    /// The performance monitor every connection is measured by.
    pub fn performance_monitor(&self) -> &Arc<PerformanceMonitor> {
        &self.state.perf
    }

    /// The last minutes of the dashboard's series (one sample per second
    /// while [`serve`](Self::serve) runs), oldest first.
    pub fn stats_series(&self) -> Vec<StatsSample> {
        self.state.telemetry.series()
    }

    /// The axum router: `/` (the dashboard), `/ws`, `/health`, `/metrics`,
    /// `/api/stats`.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.state.clone())
    }

    /// Starts draining: from now on handshakes are refused with 503 and
    /// `/health` answers 503 (so a load balancer moves traffic away), and
    /// every open WebSocket is closed with 1001; their sessions stay
    /// resumable on another node or after a restart. [`serve`](Self::serve)
    /// keeps accepting HTTP until its shutdown future completes. Idempotent.
    ///
    /// ```
    /// # use wsc_gateway::{Gateway, GatewayConfig};
    /// let gateway = Gateway::new(GatewayConfig::default());
    /// assert!(!gateway.is_shutting_down());
    /// gateway.shutdown();
    /// assert!(gateway.is_shutting_down());
    /// ```
    pub fn shutdown(&self) {
        let _ = self.state.shutdown_tx.send(true);
    }

    /// Whether [`shutdown`](Self::shutdown) was called (or `serve`'s
    /// shutdown future completed).
    pub fn is_shutting_down(&self) -> bool {
        *self.state.shutdown_tx.borrow()
    }

    /// Serves on `listener` until `shutdown` completes; then closes every
    /// WebSocket with 1001 (their sessions stay resumable) and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tx = self.state.shutdown_tx.clone();
        let _maintenance = Maintenance::start(&self.state);
        let limits = crate::server::HeadLimits {
            timeout: self.state.config.handshake_timeout,
            max_bytes: self.state.config.max_header_bytes,
        };
        let state = self.state.clone();
        let on_error = move |e: &hyper::Error| {
            if e.is_timeout() {
                state.counters.head_timeouts.fetch_add(1, Ordering::Relaxed);
            } else if e.is_parse_too_large() {
                state
                    .counters
                    .heads_too_large
                    .fetch_add(1, Ordering::Relaxed);
            }
        };
        crate::server::serve(listener, self.router(), limits, on_error, async move {
            shutdown.await;
            // Connections see this and close with 1001.
            let _ = tx.send(true);
        })
        .await
    }
}

/// The background work of a serving gateway; stops when dropped.
struct Maintenance {
    upkeep: tokio::task::JoinHandle<()>,
    _listener: Option<wsc_redis::AnnouncementListener>,
    _sweeper: wsc_core::BackgroundTask,
    _evaluator: wsc_core::BackgroundTask,
    _cleanup: wsc_core::BackgroundTask,
    sampler: tokio::task::JoinHandle<()>,
}

/// Redis upkeep, every 500 ms: a health check (PING), publishing what the
/// outbox holds, and every 10 s renewing this node's connection leases.
async fn redis_upkeep(s: Arc<AppState>) {
    let Some(redis) = &s.redis else { return };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let mut conn = redis.redis.clone();
        let ping = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match ping {
            Ok(Ok(_)) => {
                if !redis.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis reachable again");
                    let _ = s.sessions.catch_up_all().await;
                }
            }
            _ => s.redis_failed(),
        }
        if redis.is_up() && s.outbox.len() > 0 {
            let published = s.outbox.flush(&s.sessions).await;
            if published > 0 {
                tracing::info!(published, "outbox events published");
            }
        }
        if redis.is_up() && n % 20 == 0 {
            let open: Vec<(String, String)> = redis
                .open
                .iter()
                .map(|e| (e.value().clone(), e.key().clone()))
                .collect();
            if redis.connections.refresh(&open).await.is_err() {
                s.redis_failed();
            }
        }
    }
}

impl Maintenance {
    fn start(state: &Arc<AppState>) -> Self {
        let s = state.clone();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                let sessions = s.sessions.session_count().await.unwrap_or(0) as u64;
                let open = s
                    .perf
                    .get_system_wide_metrics()
                    .await
                    .total_active_connections as u64;
                s.telemetry
                    .sample(s.clock.now().as_unix_secs_f64(), s.stats(), open, sessions);
                // Sessions detached longer than their TTL go, every 10 s.
                if n % 10 == 0 {
                    let _ = s.sessions.cleanup_expired().await;
                    if s.redis.is_some() {
                        let _ = s.local_sessions.cleanup_expired().await;
                    }
                }
            }
        });
        let upkeep = tokio::spawn(redis_upkeep(state.clone()));
        let listener = state.redis.as_ref().and_then(|r| {
            wsc_redis::spawn_announcement_listener(
                &r.settings.url,
                r.channel.clone(),
                state.sessions.clone(),
            )
            .ok()
        });
        Maintenance {
            upkeep,
            _listener: listener,
            _sweeper: state.monitor.spawn_sweeper(),
            _evaluator: state
                .perf
                .spawn_evaluator(std::time::Duration::from_secs(5)),
            _cleanup: state
                .limiter
                .spawn_cleanup(std::time::Duration::from_secs(60)),
            sampler,
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.sampler.abort();
        self.upkeep.abort();
    }
}
