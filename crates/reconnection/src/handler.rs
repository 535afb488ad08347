//! The legacy reconnection handler: session bookkeeping, retries with
//! jittered backoff, one attempt in flight per session, buffered replay.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use wsc_core::{SharedClock, SystemClock, Timestamp, WebSocketMessage};

use crate::backoff::{Backoff, Jitter, backoff_ceiling};

/// Configuration of a [`WebSocketReconnectionHandler`].
#[derive(Clone, PartialEq, Debug)]
pub struct ReconnectionConfig {
    /// Tries before giving up (default 5).
    pub max_retry_attempts: u32,
    /// The first backoff ceiling (default 1 s).
    pub initial_retry_delay: Duration,
    /// The largest backoff ceiling (default 30 s).
    pub max_retry_delay: Duration,
    /// Growth of the ceiling per retry (default 2.0).
    pub backoff_multiplier: f64,
    /// A session with no activity this long is removed by cleanup (default 5 min).
    pub session_timeout: Duration,
    /// Frames buffered per session for replay (default 1 000).
    pub message_buffer_max_size: usize,
    /// How a ceiling becomes a delay (default full jitter).
    pub jitter: Jitter,
    /// Longest wait for one transport attempt, in tokio time (default 10 s).
    pub attempt_timeout: Duration,
}

impl Default for ReconnectionConfig {
    fn default() -> Self {
        ReconnectionConfig {
            max_retry_attempts: 5,
            initial_retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(30),
            backoff_multiplier: 2.0,
            session_timeout: Duration::from_secs(300),
            message_buffer_max_size: 1_000,
            jitter: Jitter::Full,
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// A transport failure (legacy `websocket_manager` send failure).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("transport error: {message}")]
pub struct TransportError {
    /// What went wrong.
    pub message: String,
}

impl TransportError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
        }
    }
}

/// What the handler reconnects through (the legacy `websocket_manager`).
#[async_trait]
pub trait ReconnectTransport: Send + Sync {
    /// Tries to re-establish the session's connection once.
    async fn attempt_reconnection(&self, session: &ReconnectionSession) -> bool;
    /// Sends frames on a connection.
    async fn send_messages(
        &self,
        connection_id: &str,
        messages: Vec<WebSocketMessage>,
    ) -> Result<(), TransportError>;
}

/// Where buffered frames come from on reconnection. Implemented by
/// [`SessionRegistry`](crate::SessionRegistry) (every frame buffered for the
/// user's sessions).
#[async_trait]
pub trait MessageBuffer: Send + Sync {
    /// The frames to replay to the user.
    async fn get_buffered_messages(&self, user_id: &str) -> Vec<WebSocketMessage>;
}

/// What a session is registered with.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionRegistration {
    /// The user.
    pub user_id: String,
    /// The current connection.
    pub connection_id: String,
    /// The conversation thread.
    pub thread_id: Option<String>,
    /// The last message the client saw.
    pub last_message_id: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The client's address.
    pub client_ip: Option<String>,
}

impl SessionRegistration {
    /// A registration of a user's connection.
    pub fn new(user_id: impl Into<String>, connection_id: impl Into<String>) -> Self {
        SessionRegistration {
            user_id: user_id.into(),
            connection_id: connection_id.into(),
            ..Default::default()
        }
    }

    /// Sets `thread_id`.
    pub fn with_thread_id(mut self, id: impl Into<String>) -> Self {
        self.thread_id = Some(id.into());
        self
    }

    /// Sets `last_message_id`.
    pub fn with_last_message_id(mut self, id: impl Into<String>) -> Self {
        self.last_message_id = Some(id.into());
        self
    }

    /// Sets `user_agent`.
    pub fn with_user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Sets `client_ip`.
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> Self {
        self.client_ip = Some(ip.into());
        self
    }
}

/// A registered session (snapshot).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReconnectionSession {
    /// The session.
    pub session_id: String,
    /// Its user.
    pub user_id: String,
    /// Its current connection.
    pub connection_id: String,
    /// Connected now.
    pub is_active: bool,
    /// When it was registered.
    pub connected_at: Timestamp,
    /// Its last registration, loss or reconnection.
    pub last_activity: Timestamp,
    /// The last successful reconnection.
    pub reconnected_at: Option<Timestamp>,
    /// Successful reconnections.
    pub reconnection_count: u32,
    /// Time spent disconnected, summed over losses.
    pub total_downtime: Duration,
    /// When the connection was last lost.
    pub disconnected_at: Option<Timestamp>,
    /// The registration's thread, agent and client details.
    pub registration: SessionRegistration,
}

/// Where a session's reconnection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReconnectionPhase {
    /// Connected.
    Connected,
    /// Lost, no attempt running now.
    Disconnected,
    /// An `attempt_reconnection` is running (one per session at a time).
    Reconnecting,
    /// Gave up after `max_retry_attempts`.
    Failed,
    /// Removed by cleanup while disconnected.
    Abandoned,
}

/// A session's reconnection state (snapshot).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ReconnectionState {
    /// The phase.
    pub phase: ReconnectionPhase,
    /// Tries made by the last `attempt_reconnection` (kept after success;
    /// reset to 0 by a new loss).
    pub retry_count: u32,
    /// The session is reconnecting: true from a lost connection (or the
    /// start of an `attempt_reconnection`) until the next successful
    /// reconnection or the final failed try. Whether a transport attempt
    /// is running right now is the phase [`ReconnectionPhase::Reconnecting`].
    pub is_reconnecting: bool,
    /// Why the connection was lost.
    pub lost_reason: Option<String>,
    /// The last successful reconnection (`None` again after a new loss).
    pub reconnected_at: Option<Timestamp>,
    /// Gave up after `max_retry_attempts`.
    pub failed_permanently: bool,
}

/// Reconnection counters of one session.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReconnectionMetrics {
    /// Connection losses.
    pub total_disconnections: u64,
    /// Transport tries.
    pub total_reconnection_attempts: u64,
    /// Reconnections that succeeded.
    pub successful_reconnections: u64,
    /// `attempt_reconnection` calls that gave up.
    pub failed_reconnections: u64,
    /// Mean time from loss to reconnection, seconds.
    pub average_reconnection_time_seconds: f64,
}

/// `max_retry_attempts` tries failed. `Display` contains "max retry attempts".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("max retry attempts ({attempts}) exceeded for session {session_id:?}")]
pub struct MaxRetriesExceededException {
    /// The session.
    pub session_id: String,
    /// Tries made.
    pub attempts: u32,
}

/// An error of the reconnection handler.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconnectionError {
    /// Every try failed; the session is failed permanently.
    #[error(transparent)]
    MaxRetriesExceeded(MaxRetriesExceededException),
    /// No session is registered under this id.
    #[error("unknown session {0:?}: register it first")]
    UnknownSession(String),
    /// Replaying buffered frames failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

#[derive(Debug)]
struct Entry {
    session: ReconnectionSession,
    state: ReconnectionState,
    metrics: ReconnectionMetrics,
    reconnect_time_sum: f64,
    /// An `attempt_reconnection` holds the session's single flight. Kept
    /// apart from `state.is_reconnecting`, which a lost connection sets
    /// before any attempt runs.
    attempt_in_flight: bool,
}

impl Entry {
    /// The session is connected again on `connection_id` (or on the one it
    /// has) at `now`: active, counted, its downtime since the loss added,
    /// and the state out of reconnecting.
    fn reconnected(&mut self, now: Timestamp, connection_id: Option<&str>) {
        let lost = self.session.disconnected_at.take();
        let downtime = lost.map_or(Duration::ZERO, |at| now.duration_since(at));
        if let Some(id) = connection_id {
            self.session.connection_id = id.to_owned();
        }
        self.session.is_active = true;
        self.session.reconnected_at = Some(now);
        self.session.reconnection_count += 1;
        self.session.total_downtime += downtime;
        self.session.last_activity = now;
        self.state.phase = ReconnectionPhase::Connected;
        self.state.is_reconnecting = false;
        self.state.failed_permanently = false;
        self.state.reconnected_at = Some(now);
        self.metrics.successful_reconnections += 1;
        self.reconnect_time_sum += downtime.as_secs_f64();
        self.metrics.average_reconnection_time_seconds =
            self.reconnect_time_sum / self.metrics.successful_reconnections as f64;
    }
}

/// Releases a session's in-flight claim if an attempt is cancelled.
struct InFlight<'a> {
    handler: &'a WebSocketReconnectionHandler,
    session_id: &'a str,
    settled: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.settled {
            // The attempt ended without an outcome: the session is still
            // lost (so still reconnecting), with no attempt running.
            self.handler.with(self.session_id, |e| {
                e.attempt_in_flight = false;
                if e.session.is_active {
                    // Never lost: nothing to reconnect.
                    e.state.is_reconnecting = false;
                    e.state.phase = ReconnectionPhase::Connected;
                } else if e.state.phase == ReconnectionPhase::Reconnecting {
                    e.state.phase = ReconnectionPhase::Disconnected;
                }
            });
        }
    }
}

/// The legacy reconnection handler.
///
/// `attempt_reconnection` tries at once, then sleeps
/// `clock.sleep(jitter(calculate_backoff_delay(n)))` between failed tries (no
/// sleep after the last). While one call is in flight for a session,
/// another returns `Ok(false)` without touching the transport.
///
/// A session's [`ReconnectionState::is_reconnecting`] is true from
/// [`handle_connection_lost`](Self::handle_connection_lost) until the next
/// success ([`attempt_reconnection`](Self::attempt_reconnection) or
/// [`handle_successful_reconnection`](Self::handle_successful_reconnection))
/// or the final failed try:
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use wsc_core::{Clock, ManualClock, WebSocketMessage};
/// use wsc_reconnection::{
///     MessageBuffer, ReconnectTransport, ReconnectionConfig, ReconnectionSession,
///     SessionRegistration, TransportError, WebSocketReconnectionHandler,
/// };
///
/// struct Up;
/// #[async_trait]
/// impl ReconnectTransport for Up {
///     async fn attempt_reconnection(&self, _: &ReconnectionSession) -> bool { true }
///     async fn send_messages(&self, _: &str, _: Vec<WebSocketMessage>) -> Result<(), TransportError> { Ok(()) }
/// }
/// #[async_trait]
/// impl MessageBuffer for Up {
///     async fn get_buffered_messages(&self, _: &str) -> Vec<WebSocketMessage> { Vec::new() }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let clock = ManualClock::default();
/// let h = WebSocketReconnectionHandler::with_clock(
///     ReconnectionConfig::default(), Arc::new(Up), Arc::new(Up), clock.shared());
/// h.register_session("s1", SessionRegistration::new("alice", "conn-1"));
/// h.handle_connection_lost("s1", "network error");
/// let state = h.reconnection_state("s1").unwrap();
/// assert!(state.is_reconnecting && state.retry_count == 0);
/// assert_eq!(state.lost_reason.as_deref(), Some("network error"));
/// assert!(!h.session("s1").unwrap().is_active);
///
/// assert_eq!(h.attempt_reconnection("s1").await, Ok(true));
/// let state = h.reconnection_state("s1").unwrap();
/// assert!(!state.is_reconnecting && state.reconnected_at == Some(clock.now()));
/// # });
/// ```
pub struct WebSocketReconnectionHandler {
    config: ReconnectionConfig,
    transport: Arc<dyn ReconnectTransport>,
    buffer: Arc<dyn MessageBuffer>,
    clock: SharedClock,
    sessions: DashMap<String, Mutex<Entry>, RandomState>,
}

impl std::fmt::Debug for WebSocketReconnectionHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketReconnectionHandler")
            .field("config", &self.config)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WebSocketReconnectionHandler {
    /// A handler on the system clock.
    pub fn new(
        config: ReconnectionConfig,
        transport: Arc<dyn ReconnectTransport>,
        buffer: Arc<dyn MessageBuffer>,
    ) -> Self {
        Self::with_clock(config, transport, buffer, Arc::new(SystemClock))
    }

    /// A handler on `clock` (tests pass a `ManualClock`: its sleeps return
    /// at once and are recorded).
    pub fn with_clock(
        config: ReconnectionConfig,
        transport: Arc<dyn ReconnectTransport>,
        buffer: Arc<dyn MessageBuffer>,
        clock: SharedClock,
    ) -> Self {
        WebSocketReconnectionHandler {
            config,
            transport,
            buffer,
            clock,
            sessions: DashMap::with_hasher(RandomState::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReconnectionConfig {
        &self.config
    }

    /// Registered sessions.
    pub fn active_session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions with reconnection state (every registered session has one).
    pub fn reconnection_state_count(&self) -> usize {
        self.sessions.len()
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let entry = self.sessions.get(id)?;
        let mut e = lock(entry.value());
        Some(f(&mut e))
    }

    /// A snapshot of a session.
    pub fn session(&self, session_id: &str) -> Option<ReconnectionSession> {
        self.with(session_id, |e| e.session.clone())
    }

    /// A snapshot of a session's reconnection state.
    pub fn reconnection_state(&self, session_id: &str) -> Option<ReconnectionState> {
        self.with(session_id, |e| e.state.clone())
    }

    /// Registers (or re-registers) a connected session.
    pub fn register_session(&self, session_id: &str, registration: SessionRegistration) {
        let now = self.clock.now();
        let entry = Entry {
            session: ReconnectionSession {
                session_id: session_id.to_owned(),
                user_id: registration.user_id.clone(),
                connection_id: registration.connection_id.clone(),
                is_active: true,
                connected_at: now,
                last_activity: now,
                reconnected_at: None,
                reconnection_count: 0,
                total_downtime: Duration::ZERO,
                disconnected_at: None,
                registration,
            },
            state: ReconnectionState {
                phase: ReconnectionPhase::Connected,
                retry_count: 0,
                is_reconnecting: false,
                lost_reason: None,
                reconnected_at: None,
                failed_permanently: false,
            },
            metrics: ReconnectionMetrics::default(),
            reconnect_time_sum: 0.0,
            attempt_in_flight: false,
        };
        self.sessions
            .insert(session_id.to_owned(), Mutex::new(entry));
    }

    /// Records a lost connection: the session is inactive and its state
    /// reconnecting (`is_reconnecting`, `retry_count` 0, `lost_reason`,
    /// `reconnected_at` cleared, not failed). Losing an already lost
    /// session updates the reason only; during a running attempt the
    /// attempt's counters are kept. Unknown sessions are ignored.
    pub fn handle_connection_lost(&self, session_id: &str, reason: &str) {
        let now = self.clock.now();
        self.with(session_id, |e| {
            if e.session.is_active {
                e.session.disconnected_at = Some(now);
                e.metrics.total_disconnections += 1;
            }
            e.session.is_active = false;
            e.session.last_activity = now;
            e.state.lost_reason = Some(reason.to_owned());
            e.state.is_reconnecting = true;
            e.state.reconnected_at = None;
            e.state.failed_permanently = false;
            if !e.attempt_in_flight {
                e.state.retry_count = 0;
                e.state.phase = ReconnectionPhase::Disconnected;
            }
        });
    }

    /// The backoff ceiling before retry `retry_count`: `min(initial *
    /// multiplier^n, max)`, before jitter.
    pub fn calculate_backoff_delay(&self, retry_count: u32) -> Duration {
        let c = &self.config;
        backoff_ceiling(
            c.initial_retry_delay,
            c.backoff_multiplier,
            c.max_retry_delay,
            retry_count,
        )
    }

    /// Reconnects a session: tries at once, then after each failure sleeps a
    /// jittered backoff, up to `max_retry_attempts` tries. `Ok(true)` on
    /// success (the session is active again), `Ok(false)` if another call
    /// is already in flight for the session (the transport is not touched).
    ///
    /// # Errors
    /// [`ReconnectionError::UnknownSession`];
    /// [`ReconnectionError::MaxRetriesExceeded`] after the last failed try
    /// (the state is then failed permanently).
    pub async fn attempt_reconnection(&self, session_id: &str) -> Result<bool, ReconnectionError> {
        // Claim the single flight.
        let session = self
            .with(session_id, |e| {
                if e.attempt_in_flight {
                    return None;
                }
                e.attempt_in_flight = true;
                e.state.is_reconnecting = true;
                e.state.phase = ReconnectionPhase::Reconnecting;
                e.state.retry_count = 0;
                e.state.failed_permanently = false;
                Some(e.session.clone())
            })
            .ok_or_else(|| ReconnectionError::UnknownSession(session_id.to_owned()))?;
        let Some(session) = session else {
            return Ok(false);
        };
        // If this future is dropped mid-way, the claim is released.
        let mut claim = InFlight {
            handler: self,
            session_id,
            settled: false,
        };
        let c = &self.config;
        let mut backoff = Backoff::new(
            c.initial_retry_delay,
            c.backoff_multiplier,
            c.max_retry_delay,
            c.jitter,
        );
        let attempts = c.max_retry_attempts.max(1);
        for attempt in 0..attempts {
            // A `handle_successful_reconnection` during the backoff already
            // reconnected the session: no further try.
            let elsewhere = self
                .with(session_id, |e| {
                    let done = !e.state.is_reconnecting;
                    if done {
                        e.attempt_in_flight = false;
                    } else {
                        e.state.retry_count = attempt + 1;
                        e.metrics.total_reconnection_attempts += 1;
                    }
                    done
                })
                .unwrap_or(false);
            if elsewhere {
                claim.settled = true;
                return Ok(true);
            }
            let ok = tokio::time::timeout(
                c.attempt_timeout,
                self.transport.attempt_reconnection(&session),
            )
            .await
            .unwrap_or(false);
            if ok {
                let now = self.clock.now();
                self.with(session_id, |e| {
                    e.attempt_in_flight = false;
                    // Counted once even if the session was reconnected
                    // meanwhile by other means.
                    if e.state.is_reconnecting {
                        e.reconnected(now, None);
                    }
                });
                claim.settled = true;
                return Ok(true);
            }
            if attempt + 1 < attempts {
                let delay = backoff.delay(attempt, &mut rand::rng());
                self.clock.sleep(delay).await;
            }
        }
        let now = self.clock.now();
        let elsewhere = self
            .with(session_id, |e| {
                e.attempt_in_flight = false;
                if !e.state.is_reconnecting {
                    return true;
                }
                e.state.phase = ReconnectionPhase::Failed;
                e.state.is_reconnecting = false;
                e.state.failed_permanently = true;
                e.session.last_activity = now;
                e.metrics.failed_reconnections += 1;
                false
            })
            .unwrap_or(false);
        claim.settled = true;
        if elsewhere {
            return Ok(true);
        }
        Err(ReconnectionError::MaxRetriesExceeded(
            MaxRetriesExceededException {
                session_id: session_id.to_owned(),
                attempts,
            },
        ))
    }

    /// The session reconnected on `new_connection_id` (by the caller's own
    /// means): it is updated as a successful try of
    /// [`attempt_reconnection`](Self::attempt_reconnection) updates it
    /// (the new `connection_id`, active, `reconnected_at`,
    /// `reconnection_count`, `total_downtime` since the loss, the metrics;
    /// the state leaves reconnecting). Then the user's buffered frames are
    /// replayed through the new connection; returns how many.
    ///
    /// # Errors
    /// [`ReconnectionError::UnknownSession`]; [`ReconnectionError::Transport`]
    /// if sending fails.
    pub async fn handle_successful_reconnection(
        &self,
        session_id: &str,
        new_connection_id: &str,
    ) -> Result<usize, ReconnectionError> {
        let now = self.clock.now();
        let user_id = self
            .with(session_id, |e| {
                e.reconnected(now, Some(new_connection_id));
                e.session.user_id.clone()
            })
            .ok_or_else(|| ReconnectionError::UnknownSession(session_id.to_owned()))?;
        let messages = self.buffer.get_buffered_messages(&user_id).await;
        let count = messages.len();
        if count > 0 {
            self.transport
                .send_messages(new_connection_id, messages)
                .await?;
        }
        Ok(count)
    }

    /// Removes sessions with no activity for `session_timeout` (a lost one
    /// too, but never one with an attempt in flight); returns how many.
    pub fn cleanup_expired_sessions(&self) -> usize {
        let now = self.clock.now();
        let timeout = self.config.session_timeout;
        let before = self.sessions.len();
        self.sessions.retain(|_, e| {
            let e = lock(e);
            e.attempt_in_flight || now.duration_since(e.session.last_activity) <= timeout
        });
        before - self.sessions.len()
    }

    /// A session's reconnection counters.
    pub fn get_session_metrics(&self, session_id: &str) -> Option<ReconnectionMetrics> {
        self.with(session_id, |e| e.metrics.clone())
    }
}
