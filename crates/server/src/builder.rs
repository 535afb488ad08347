//! [`Gateway`] and its [`GatewayBuilder`]: the only module that knows the
//! router, the server and the upkeep.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use wsc_core::{SharedClock, StoreError, SystemClock};
use wsc_event_monitor::{EventMonitor, EventMonitorConfig};
use wsc_perf_monitor::{PerformanceMonitor, PerformanceMonitorConfig};
use wsc_rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
use wsc_reconnection::{BufferLimits, SessionConfig, SessionRegistry};

use crate::broker::{Broker, MemoryBroker};
use crate::config::{GatewayConfig, RedisFailurePolicy, RedisSettings};
use crate::counters::{Counters, GatewayStats};
use crate::health::HealthCache;
use crate::metrics::GatewayCollector;
use crate::run::{AgentRunner, RunServices};
use crate::shared::{LOCAL_SESSION_MARK, Shared};
use crate::simulated::SimulatedAgent;
use crate::state::{AppState, UpkeepSlot};
use crate::telemetry::{StatsSample, Telemetry};
use crate::upkeep;

/// Builds a [`Gateway`]: its configuration, clock, agent runner and
/// (optionally) Redis.
///
/// ```
/// use std::sync::Arc;
/// use wsc_core::ManualClock;
/// use wsc_server::{Gateway, GatewayConfig, SimulatedAgent};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let gateway = Gateway::builder(GatewayConfig::default())
///     .clock(ManualClock::default().shared())
///     .runner(Arc::new(SimulatedAgent))
///     .build()
///     .await
///     .expect("no redis to reach");
/// assert_eq!(gateway.stats().connections, 0);
/// # });
/// ```
#[derive(Clone)]
#[must_use = "call .build()"]
pub struct GatewayBuilder {
    config: GatewayConfig,
    clock: SharedClock,
    runner: Arc<dyn AgentRunner>,
    redis: Option<RedisSettings>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// The clock every part of the gateway reads (default [`SystemClock`]):
    /// session TTLs, heartbeats, rate-limit windows, event timings, upkeep
    /// intervals. Tests pass `wsc_core::TokioClock` under paused tokio
    /// time, or a `ManualClock` for gateways they drive without sockets.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// What runs agents (default [`SimulatedAgent`]).
    pub fn runner(mut self, runner: Arc<dyn AgentRunner>) -> Self {
        self.runner = runner;
        self
    }

    /// Keeps rate limits, sessions, replay buffers and per-user connection
    /// counts in Redis, shared with every gateway on the same Redis and
    /// prefix (see [`Gateway::with_redis`]).
    pub fn redis(mut self, settings: RedisSettings) -> Self {
        self.redis = Some(settings);
        self
    }

    /// The gateway. Its background upkeep starts at once when called inside
    /// a tokio runtime (see [`Gateway::router`]).
    ///
    /// # Errors
    /// Redis (when set) not reachable at startup.
    pub async fn build(self) -> Result<Gateway, StoreError> {
        let redis = match self.redis {
            None => None,
            Some(settings) => {
                let conn = wsc_redis::connect_with_timeout(&settings.url, settings.timeout).await?;
                let secret = wsc_redis::shared_token_secret(&conn, &settings.prefix).await?;
                Some((settings, conn, secret))
            }
        };
        Ok(Gateway::assemble(
            self.config,
            self.clock,
            self.runner,
            redis,
        ))
    }
}

/// A gateway: the rate limiter, event monitor, performance monitor and
/// session registry behind one axum router. Cheap to clone.
///
/// Its background upkeep (session expiry, the one-second sampler behind
/// the dashboard and the cached health, alert evaluation, the monitors'
/// sweeps, and with Redis its health check and lease renewal) runs from the
/// moment the gateway exists inside a tokio runtime — or from the first
/// [`router`](Self::router) or [`serve`](Self::serve) call when it was
/// built outside one — until [`stop_upkeep`](Self::stop_upkeep) or until
/// the gateway and every router made from it are dropped.
#[derive(Clone)]
pub struct Gateway {
    state: Arc<AppState>,
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
        Self::assemble(config, Arc::new(SystemClock), runner, None)
    }

    /// A builder, to choose the clock, the runner and Redis.
    pub fn builder(config: GatewayConfig) -> GatewayBuilder {
        GatewayBuilder {
            config,
            clock: Arc::new(SystemClock),
            runner: Arc::new(SimulatedAgent),
            redis: None,
        }
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
    ) -> Result<Self, StoreError> {
        Self::builder(config)
            .runner(runner)
            .redis(redis)
            .build()
            .await
    }

    fn assemble(
        config: GatewayConfig,
        clock: SharedClock,
        runner: Arc<dyn AgentRunner>,
        redis: Option<(RedisSettings, wsc_redis::RedisConnection, [u8; 32])>,
    ) -> Self {
        let limits = RateLimitConfig {
            max_connections_per_user: config.limits.max_connections_per_user,
            max_messages_per_minute: config.limits.max_messages_per_minute,
            max_messages_per_hour: config.limits.max_messages_per_hour,
            max_handshakes_per_ip: config.limits.max_handshakes_per_ip,
            max_messages_per_ip_per_minute: config.ip_messages_per_minute(),
            ..Default::default()
        };
        let buffer = BufferLimits {
            max_frames: config.sessions.replay_buffer,
            max_bytes: config.sessions.replay_buffer_bytes,
            ..Default::default()
        };
        let session_config = SessionConfig {
            buffer,
            session_ttl: config.sessions.session_ttl,
            outbound_capacity: config.sessions.outbound_queue,
            outbound_bytes: config.sessions.max_send_queue_bytes,
            max_sessions: config.sessions.max_sessions.max(1),
            max_sessions_per_user: config.sessions.max_sessions_per_user.unwrap_or(
                usize::try_from(config.limits.max_connections_per_user)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(2),
            ),
            max_buffered_bytes: config.sessions.max_replay_bytes_total,
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
        let (limiter, sessions, broker, failure): (_, _, Arc<dyn Broker>, _) = match redis {
            None => (
                WebSocketRateLimiter::with_clock(limits, clock.clone()),
                local_sessions.clone(),
                Arc::new(MemoryBroker),
                RedisFailurePolicy::default(),
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
                        session_ttl: config.sessions.session_ttl,
                        max_sessions: config.sessions.max_sessions.max(1),
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
                let broker = RedisBroker {
                    connections: wsc_redis::RedisConnectionCounter::new(
                        conn.clone(),
                        settings.prefix.clone(),
                    ),
                    runs: wsc_redis::RedisRunLogs::new(conn.clone(), settings.prefix.clone()),
                    url: settings.url.clone(),
                    ping_timeout: settings.timeout,
                    // The run timeout, and a lease for its gateway to be
                    // judged gone.
                    longest_run: config.agents.run_timeout + std::time::Duration::from_secs(60),
                    redis: conn,
                    channel,
                    limiter_store,
                };
                (
                    WebSocketRateLimiter::with_store(limits, clock.clone(), store),
                    sessions,
                    Arc::new(broker),
                    settings.failure,
                )
            }
        };
        let (shutdown_tx, shutdown) = watch::channel(false);
        let node_tag = wsc_reconnection::new_session_id()[..6].to_owned();
        let max_runs_per_user = config.agents.max_runs_per_user.max(1);
        let monitor = Arc::new(EventMonitor::with_clock(
            EventMonitorConfig {
                max_tracked_runs: config.agents.max_tracked_runs.max(1),
                run_timeout: config.agents.run_timeout,
                // Health from what the gateway controls, not the agents'
                // pacing.
                health_scope: wsc_event_monitor::HealthScope::Delivery,
                ..EventMonitorConfig::default()
            },
            clock.clone(),
        ));
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared::new(
            broker,
            failure,
            sessions.clone(),
            local_sessions,
            local_prefix,
            counters.clone(),
        ));
        let run_services = Arc::new(RunServices {
            ids: crate::counters::Ids::new(node_tag),
            monitor: monitor.clone(),
            clock: clock.clone(),
            shared: shared.clone(),
            counters: counters.clone(),
            limits: crate::run::RunLimits {
                max_events: config.agents.max_run_events,
                max_bytes: config.agents.max_run_bytes,
            },
        });
        let ag_ui_runs = crate::agui::AgUiRuns::new(
            config.agents.run_retention,
            config.agents.max_ag_ui_runs_per_user,
            config.agents.max_ag_ui_runs,
            config.sessions.replay_buffer_bytes,
            config.sessions.max_replay_bytes_total,
        );
        let state = Arc::new(AppState {
            monitor,
            perf: Arc::new(PerformanceMonitor::with_clock(
                PerformanceMonitorConfig::default(),
                clock.clone(),
            )),
            sessions,
            limiter,
            runner,
            counters,
            shutdown,
            shutdown_tx,
            open_sockets: watch::Sender::new(()),
            capacity: crate::capacity::Capacity::new(config.limits.effective_max_connections()),
            config,
            clock,
            telemetry: Telemetry::new(),
            shared,
            health: HealthCache::default(),
            runs: Arc::new(crate::runs::RunTable::new(max_runs_per_user, run_services)),
            ag_ui_runs,
            metrics: std::sync::RwLock::default(),
            upkeep: std::sync::Mutex::default(),
        });
        {
            let mut registry = state.metrics.write().unwrap_or_else(|e| e.into_inner());
            registry.register_collector(Box::new(wsc_perf_monitor::MonitorCollector::new(
                state.perf.clone(),
            )));
            registry.register_collector(Box::new(wsc_perf_monitor::ProcessCollector));
            registry.register_collector(Box::new(GatewayCollector(Arc::downgrade(&state))));
        }
        let gateway = Gateway { state };
        gateway.ensure_upkeep();
        gateway
    }

    /// Starts the upkeep if it has not started (and was not stopped) and a
    /// tokio runtime is at hand.
    fn ensure_upkeep(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut slot = self.upkeep_slot();
        if matches!(*slot, UpkeepSlot::NotStarted) {
            *slot = UpkeepSlot::Running {
                _upkeep: upkeep::start(&self.state),
            };
        }
    }

    fn upkeep_slot(&self) -> std::sync::MutexGuard<'_, UpkeepSlot> {
        self.state.upkeep.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the background upkeep (session expiry, sampling, alert
    /// evaluation, sweeps, Redis health checks) for good; the router keeps
    /// serving. For embedders that run their own maintenance, or tests.
    pub fn stop_upkeep(&self) {
        *self.upkeep_slot() = UpkeepSlot::Stopped;
    }

    /// Whether the background upkeep is running.
    pub fn upkeep_running(&self) -> bool {
        matches!(*self.upkeep_slot(), UpkeepSlot::Running { .. })
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.state.config
    }

    /// The connections (WebSocket and AG-UI SSE) it holds now, and the most
    /// it holds at once ([`LimitsConfig::max_connections`](crate::LimitsConfig::max_connections),
    /// or the default derived from the open-file limit).
    pub fn connections(&self) -> (usize, usize) {
        (self.state.capacity.open(), self.state.capacity.max())
    }

    /// The clock the gateway runs on.
    pub fn clock(&self) -> &SharedClock {
        &self.state.clock
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

    /// Agent runs `user` has in flight (at most
    /// [`AgentsConfig::max_runs_per_user`](crate::AgentsConfig::max_runs_per_user)).
    pub fn runs_in_flight(&self, user: &str) -> usize {
        self.state.runs.in_flight(user)
    }

    /// The performance monitor every connection is measured by.
    pub fn performance_monitor(&self) -> &Arc<PerformanceMonitor> {
        &self.state.perf
    }

    /// Adds your own metrics to what `/metrics` serves: `register` gets the
    /// gateway's `prometheus_client` registry (re-exported as
    /// [`prometheus_client`](crate::prometheus_client)).
    ///
    /// ```
    /// use wsc_server::{Gateway, GatewayConfig};
    /// use wsc_server::prometheus_client::metrics::counter::Counter;
    ///
    /// let gateway = Gateway::new(GatewayConfig::default());
    /// let logins: Counter = Counter::default();
    /// gateway.register_metrics(|registry| {
    ///     registry.register("myapp_logins", "Logins.", logins.clone());
    /// });
    /// logins.inc();
    /// assert!(gateway.render_metrics().contains("myapp_logins_total 1"));
    /// ```
    pub fn register_metrics(
        &self,
        register: impl FnOnce(&mut prometheus_client::registry::Registry),
    ) {
        let mut registry = self
            .state
            .metrics
            .write()
            .unwrap_or_else(|e| e.into_inner());
        register(&mut registry);
    }

    /// What `/metrics` serves, in the Prometheus text format (0.0.4).
    /// Health-derived metrics appear once the sampler ran (every second).
    pub fn render_metrics(&self) -> String {
        let registry = self.state.metrics.read().unwrap_or_else(|e| e.into_inner());
        crate::metrics::encode(&registry, None).1
    }

    /// The last minutes of the dashboard's series (one sample per second
    /// while the upkeep runs), oldest first.
    pub fn stats_series(&self) -> Vec<StatsSample> {
        self.state.telemetry.series()
    }

    /// The axum router: `/` (the dashboard), `/ws`, `/health`, `/metrics`,
    /// `/api/stats`. Merge it into your own app; the upkeep keeps running
    /// while the router (or the gateway) lives.
    ///
    /// The `/ws` handler reads the peer address from `ConnectInfo`: serve
    /// with `into_make_service_with_connect_info::<SocketAddr>()` (as
    /// [`serve`](Self::serve) does); without it every handshake is answered
    /// 500 `misconfigured`, saying so. For your own WebSocket route, see
    /// [`streams`](Self::streams).
    pub fn router(&self) -> axum::Router {
        self.ensure_upkeep();
        crate::http::router(self.state.clone())
    }

    /// Resumable agent streams for your own axum WebSocket handler,
    /// served by this gateway (its sessions, limits, monitors, upkeep):
    /// see [`AgentStreams`](crate::AgentStreams).
    pub fn streams(&self) -> crate::AgentStreams {
        self.ensure_upkeep();
        crate::AgentStreams {
            state: self.state.clone(),
        }
    }

    /// Starts draining: from now on handshakes are refused with 503 and
    /// `/health` answers 503 (so a load balancer moves traffic away), and
    /// every open WebSocket is closed with 1001; their sessions stay
    /// resumable on another node or after a restart. [`serve`](Self::serve)
    /// keeps accepting HTTP until its shutdown future completes. Idempotent.
    ///
    /// ```
    /// # use wsc_server::{Gateway, GatewayConfig};
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
    /// WebSocket with 1001 (their sessions stay resumable), waits until
    /// each has closed (at most [`HttpConfig::drain_timeout`](crate::HttpConfig::drain_timeout)) and
    /// returns, so a process that exits then has sent every close.
    /// HTTP/1.1 with a deadline and a size cap on each request head
    /// ([`HttpConfig::handshake_timeout`](crate::HttpConfig::handshake_timeout), [`HttpConfig::max_header_bytes`](crate::HttpConfig::max_header_bytes)).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let tx = self.state.shutdown_tx.clone();
        let limits = crate::server::HeadLimits {
            timeout: self.state.config.http.handshake_timeout,
            max_bytes: self.state.config.http.max_header_bytes,
        };
        let counters = self.state.counters.clone();
        let on_error = move |e: &hyper::Error| {
            if e.is_timeout() {
                Counters::bump(&counters.head_timeouts);
            } else if e.is_parse_too_large() {
                Counters::bump(&counters.heads_too_large);
            }
        };
        let admission = crate::admission::Admission::new(
            wsc_perf_monitor::open_file_limit(),
            self.state.counters.clone(),
        );
        crate::server::serve(
            listener,
            self.router(),
            limits,
            admission,
            on_error,
            async move {
                shutdown.await;
                // Connections see this and close with 1001.
                let _ = tx.send(true);
            },
        )
        .await?;
        // Upgraded connections are not HTTP requests: wait for them here.
        let drain = self.state.config.http.drain_timeout;
        let closed = tokio::time::timeout(drain, self.state.open_sockets.closed()).await;
        if closed.is_err() {
            tracing::warn!(
                open = self.state.open_sockets.receiver_count(),
                "WebSockets still open after the drain timeout"
            );
        }
        Ok(())
    }
}

/// The broker on Redis (or a Redis Cluster): connection counts with
/// leases, `PING` for health, and the announcement listener that delivers
/// frames other gateways append. The only place in the server that knows
/// Redis is behind the broker.
struct RedisBroker {
    redis: wsc_redis::RedisConnection,
    connections: wsc_redis::RedisConnectionCounter,
    runs: wsc_redis::RedisRunLogs,
    url: String,
    channel: String,
    limiter_store: Arc<wsc_rate_limiter::FallbackStore>,
    /// How long a health check waits for Redis's answer (the reply
    /// timeout).
    ping_timeout: std::time::Duration,
    /// How long a run may go on (its mark in Redis is dropped after).
    longest_run: std::time::Duration,
}

#[async_trait::async_trait]
impl Broker for RedisBroker {
    fn spans_gateways(&self) -> bool {
        true
    }

    async fn acquire(
        &self,
        user: &str,
        connection: &str,
        cap: u32,
    ) -> Result<bool, wsc_core::StoreError> {
        self.connections.acquire(user, connection, cap).await
    }

    async fn release(&self, user: &str, connection: &str) -> Result<(), wsc_core::StoreError> {
        self.connections.release(user, connection).await
    }

    async fn refresh(&self) -> Result<(), wsc_core::StoreError> {
        self.connections.refresh().await
    }

    async fn ping(&self) -> Result<(), wsc_core::StoreError> {
        self.redis.ping(self.ping_timeout).await
    }

    async fn run_started(&self, session: &str, run: &str) -> Result<(), wsc_core::StoreError> {
        self.connections
            .run_started(session, run, self.longest_run)
            .await
    }

    async fn run_ended(&self, session: &str, run: &str) -> Result<(), wsc_core::StoreError> {
        self.connections.run_ended(session, run).await
    }

    async fn lost_runs(
        &self,
        session: &str,
    ) -> Result<crate::broker::LostRuns, wsc_core::StoreError> {
        let found = self
            .connections
            .lost_runs(session, self.longest_run)
            .await?;
        Ok(crate::broker::LostRuns {
            lost: found.lost,
            others_running: found.others_running,
        })
    }

    fn deliver_to(&self, sessions: Arc<SessionRegistry>) -> Option<Box<dyn std::any::Any + Send>> {
        wsc_redis::spawn_announcement_listener(&self.url, self.channel.clone(), sessions)
            .ok()
            .map(|listener| Box::new(listener) as Box<dyn std::any::Any + Send>)
    }

    fn local_decisions(&self) -> u64 {
        self.limiter_store.fallbacks()
    }

    async fn claim_run(
        &self,
        user: &str,
        run_id: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<wsc_core::RunClaim, wsc_core::StoreError> {
        self.runs.claim(user, run_id, owner, ttl).await
    }

    async fn release_run(
        &self,
        user: &str,
        run_id: &str,
        owner: &str,
    ) -> Result<(), wsc_core::StoreError> {
        self.runs.release(user, run_id, owner).await.map(|_| ())
    }

    async fn append_run(
        &self,
        user: &str,
        run_id: &str,
        owner: &str,
        write: &wsc_core::RunWrite<'_>,
    ) -> Result<wsc_core::RunAppended, wsc_core::StoreError> {
        self.runs.append(user, run_id, owner, write).await
    }

    async fn read_run(
        &self,
        user: &str,
        run_id: &str,
        after: u64,
        max: usize,
    ) -> Result<Option<wsc_core::RunRead>, wsc_core::StoreError> {
        self.runs.read(user, run_id, after, max, true).await
    }

    async fn cancel_run(
        &self,
        user: &str,
        run_id: &str,
    ) -> Result<wsc_core::CancelAsked, wsc_core::StoreError> {
        self.runs.cancel(user, run_id).await
    }

    async fn end_abandoned_run(
        &self,
        user: &str,
        run_id: &str,
        lease: std::time::Duration,
        event: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, wsc_core::StoreError> {
        self.runs
            .end_abandoned(user, run_id, lease, event, ttl)
            .await
    }

    fn watch_runs(
        &self,
        on_wakeup: crate::broker::OnRunWakeup,
    ) -> Option<Box<dyn std::any::Any + Send>> {
        let on_subscribed = {
            let on_wakeup = on_wakeup.clone();
            // Wake-ups may have been missed while unsubscribed: every
            // waiting reader reads again.
            move || on_wakeup(wsc_core::RunWakeup::Events, "", "")
        };
        wsc_redis::spawn_channel_listener(
            &self.url,
            self.runs.channel(),
            move |message| {
                if let Some((kind, user, run_id)) = wsc_redis::RedisRunLogs::parse_wakeup(message) {
                    on_wakeup(kind, &user, &run_id);
                }
            },
            on_subscribed,
        )
        .ok()
        .map(|listener| Box::new(listener) as Box<dyn std::any::Any + Send>)
    }
}
