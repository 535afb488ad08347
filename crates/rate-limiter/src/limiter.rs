//! [`WebSocketRateLimiter`]: per-user message windows, connection caps,
//! violation backoff and per-IP handshake limiting.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wsc_core::{BackgroundTask, SharedClock, SystemClock, Timestamp, WebSocketMessage};

use crate::bounded::BoundedMap;
use crate::config::{FailurePolicy, RateLimitConfig, scaled};
use crate::error::LimitKey;
use crate::error::{LimitKind, RateLimitExceeded};
use crate::store::{RateLimitStore, WindowRequest};
use crate::window::{Shape, WindowDecision, WindowLimit, WindowSet};

/// Per-user state. With the default configuration a user costs under 512
/// bytes (see the crate README for the measurement).
#[derive(Debug)]
struct UserState {
    windows: WindowSet,
    /// Open connection ids; a boxed slice (16 bytes) since it rarely changes.
    connections: Box<[Box<str>]>,
    last_activity: Timestamp,
    blocked_until: Timestamp,
    last_violation_at: Timestamp,
    current_backoff: Duration,
    /// The last refusal's retry time: until then nothing can change the
    /// windows (a refusal records nothing), so a refusal is answered again
    /// without walking them.
    refused_until: Timestamp,
    violation_count: u32,
    /// Which window refused last (`u8::MAX`: the violation block).
    refused_window: u8,
    /// Refused since the last admission: further refusals are the same burst.
    in_violation: bool,
}

impl UserState {
    fn new(shape: &Shape, now: Timestamp) -> Self {
        UserState {
            windows: WindowSet::new(shape),
            connections: Box::default(),
            last_activity: now,
            blocked_until: Timestamp::from_unix_micros(i64::MIN),
            last_violation_at: Timestamp::from_unix_micros(i64::MIN),
            current_backoff: Duration::ZERO,
            refused_until: Timestamp::from_unix_micros(i64::MIN),
            violation_count: 0,
            refused_window: 0,
            in_violation: false,
        }
    }

    fn pinned(&self) -> bool {
        !self.connections.is_empty()
    }
}

/// Per-client-IP handshake state.
#[derive(Debug)]
struct IpState {
    attempts: WindowSet,
    /// Client frames of all the IP's users (`max_messages_per_ip_per_minute`).
    frames: WindowSet,
    failures: u32,
    last_failure: Timestamp,
    blocked_until: Timestamp,
    last_seen: Timestamp,
}

/// A snapshot of one user's limiter state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserRateLimitState {
    /// The user.
    pub user_id: String,
    /// Ids of the user's open connections.
    pub active_connections: Vec<String>,
    /// The last connection or message of the user.
    pub last_activity: Timestamp,
    /// Violation bursts within the decay period.
    pub violation_count: u32,
    /// The backoff applied at the last violation (zero if none).
    pub current_backoff: Duration,
    /// Until when the user is blocked, if now blocked.
    pub blocked_until: Option<Timestamp>,
    /// Admissions counted in each window (minute, hour, extras) now.
    pub window_counts: Vec<u32>,
}

#[derive(Debug)]
struct Inner {
    config: RateLimitConfig,
    /// The message windows with the burst allowance.
    shape: Shape,
    /// No windows: users' state when the windows live in a store.
    no_windows: Shape,
    ip_shape: Shape,
    ip_frame_shape: Shape,
    clock: SharedClock,
    users: BoundedMap<UserState>,
    ips: BoundedMap<IpState>,
    store: Option<Arc<dyn RateLimitStore>>,
    store_failures: AtomicU64,
}

/// The per-user rate limiter (legacy name `WebSocketRateLimiter`).
///
/// Cloning is cheap and clones share state (an `Arc` inside), which is what
/// [`ConnectionPermit`]s hold on to. Users live in a capped `DashMap`; no
/// global lock is taken on the message path.
#[derive(Clone, Debug)]
pub struct WebSocketRateLimiter {
    inner: Arc<Inner>,
}

impl WebSocketRateLimiter {
    /// A limiter on the system clock, windows in memory.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A limiter on `clock` (tests pass a `ManualClock`).
    pub fn with_clock(config: RateLimitConfig, clock: SharedClock) -> Self {
        Self::build(config, clock, None)
    }

    /// A limiter whose message windows live in `store` (shared across
    /// nodes); connections, backoff and IP state stay local. Store failures
    /// follow [`RateLimitConfig::store_failure`].
    pub fn with_store(
        config: RateLimitConfig,
        clock: SharedClock,
        store: Arc<dyn RateLimitStore>,
    ) -> Self {
        Self::build(config, clock, Some(store))
    }

    fn build(
        config: RateLimitConfig,
        clock: SharedClock,
        store: Option<Arc<dyn RateLimitStore>>,
    ) -> Self {
        let shape = Shape::new(&config.windows(), config.burst_allowance);
        let ip_shape = Shape::new(
            &[WindowLimit {
                length: config.ip_window,
                limit: config.max_handshakes_per_ip,
                buckets: config.window_buckets,
            }],
            0,
        );
        let ip_frame_shape = Shape::new(
            &[WindowLimit {
                length: Duration::from_secs(60),
                limit: config.max_messages_per_ip_per_minute,
                buckets: config.window_buckets,
            }],
            0,
        );
        WebSocketRateLimiter {
            inner: Arc::new(Inner {
                users: BoundedMap::new(config.max_tracked_users),
                ips: BoundedMap::new(config.max_tracked_ips),
                config,
                shape,
                no_windows: Shape::new(&[], 0),
                ip_shape,
                ip_frame_shape,
                clock,
                store,
                store_failures: AtomicU64::new(0),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RateLimitConfig {
        &self.inner.config
    }

    /// The message windows checked, in order (minute, hour, extras).
    pub fn windows(&self) -> &[WindowLimit] {
        self.inner.shape.windows()
    }

    /// Users tracked now.
    pub fn tracked_users(&self) -> usize {
        self.inner.users.len()
    }

    /// Client IPs tracked now.
    pub fn tracked_ips(&self) -> usize {
        self.inner.ips.len()
    }

    /// Users evicted so far to respect `max_tracked_users`.
    pub fn evicted_users(&self) -> u64 {
        self.inner.users.evicted()
    }

    /// Store failures so far (each handled per the failure policy).
    pub fn store_failures(&self) -> u64 {
        self.inner.store_failures.load(Ordering::Relaxed)
    }

    /// The user's open connections.
    pub fn active_connections(&self, user_id: &str) -> usize {
        self.inner
            .users
            .get(user_id)
            .map_or(0, |s| s.value.connections.len())
    }

    /// Messages counted in the user's per-minute window now (in-memory
    /// windows only; with a custom store ask the store).
    pub fn messages_in_window(&self, user_id: &str) -> usize {
        let now = self.inner.clock.now();
        self.inner.users.get_mut(user_id).map_or(0, |mut s| {
            s.value.windows.count(&self.inner.shape, 0, now) as usize
        })
    }

    /// A snapshot of a user's state, or `None` if the user is not tracked.
    pub fn user_state(&self, user_id: &str) -> Option<UserRateLimitState> {
        let now = self.inner.clock.now();
        let mut slot = self.inner.users.get_mut(user_id)?;
        let u = &mut slot.value;
        let window_counts = (0..self.inner.shape.windows().len())
            .map(|i| u.windows.count(&self.inner.shape, i, now))
            .collect();
        Some(UserRateLimitState {
            user_id: user_id.to_owned(),
            active_connections: u.connections.iter().map(|c| c.to_string()).collect(),
            last_activity: u.last_activity,
            violation_count: u.violation_count,
            current_backoff: u.current_backoff,
            blocked_until: (u.blocked_until > now).then_some(u.blocked_until),
            window_counts,
        })
    }

    /// Whether the user may open one more connection now.
    pub fn check_connection_limit(&self, user_id: &str) -> bool {
        self.active_connections(user_id) < self.cap()
    }

    fn cap(&self) -> usize {
        self.inner.config.max_connections_per_user as usize
    }

    /// Records an open connection. Idempotent: recording the same id again
    /// changes nothing.
    ///
    /// # Errors
    /// A [`LimitKind::Connections`] refusal (no `retry_after`) when the user
    /// already holds `max_connections_per_user` other connections.
    pub fn record_connection(
        &self,
        user_id: &str,
        connection_id: &str,
    ) -> Result<(), RateLimitExceeded> {
        self.add_connection(user_id, connection_id)
    }

    fn add_connection(&self, user_id: &str, connection_id: &str) -> Result<(), RateLimitExceeded> {
        let now = self.inner.clock.now();
        let inner = &self.inner;
        let mut slot = inner.users.get_or_insert(
            user_id,
            || UserState::new(self.local_shape(), now),
            UserState::pinned,
        );
        let (key, s) = slot.pair_mut();
        let u = &mut s.value;
        u.last_activity = now;
        if u.connections.iter().any(|c| &**c == connection_id) {
            return Ok(());
        }
        if u.connections.len() >= self.cap() {
            return Err(RateLimitExceeded {
                kind: LimitKind::Connections,
                limit: inner.config.max_connections_per_user,
                retry_after: None,
                key: key.clone(),
            });
        }
        u.connections = u
            .connections
            .iter()
            .cloned()
            .chain([Box::from(connection_id)])
            .collect();
        Ok(())
    }

    /// Forgets an open connection. Idempotent.
    pub fn remove_connection(&self, user_id: &str, connection_id: &str) {
        self.drop_connection(user_id, connection_id);
    }

    fn drop_connection(&self, user_id: &str, connection_id: &str) {
        let now = self.inner.clock.now();
        if let Some(mut slot) = self.inner.users.get_mut(user_id) {
            let conns = &mut slot.value.connections;
            if conns.iter().any(|c| &**c == connection_id) {
                *conns = conns
                    .iter()
                    .filter(|c| &***c != connection_id)
                    .cloned()
                    .collect();
            }
            slot.value.last_activity = now;
        }
    }

    /// Records a connection and returns a permit that removes it when
    /// dropped: the RAII form of `record_connection` / `remove_connection`.
    ///
    /// # Errors
    /// As [`record_connection`](Self::record_connection). A second permit
    /// for the same connection id is refused too (with
    /// [`LimitKind::Connections`]), so one id cannot be released twice.
    pub fn acquire_connection(
        &self,
        user_id: &str,
        connection_id: &str,
    ) -> Result<ConnectionPermit, RateLimitExceeded> {
        if self
            .inner
            .users
            .get(user_id)
            .is_some_and(|s| s.value.connections.iter().any(|c| &**c == connection_id))
        {
            return Err(RateLimitExceeded {
                kind: LimitKind::Connections,
                limit: self.inner.config.max_connections_per_user,
                retry_after: None,
                key: LimitKey::from(user_id),
            });
        }
        self.add_connection(user_id, connection_id)?;
        Ok(ConnectionPermit {
            limiter: self.clone(),
            user_id: user_id.to_owned(),
            connection_id: connection_id.to_owned(),
        })
    }

    /// Whether a message from the user would be admitted now (records
    /// nothing). An unknown user is admitted.
    pub async fn check_message_rate_limit(&self, user_id: &str) -> bool {
        let now = self.inner.clock.now();
        let blocked = self
            .inner
            .users
            .get(user_id)
            .is_some_and(|s| s.value.blocked_until > now);
        if blocked {
            return false;
        }
        self.decide(user_id, now, false).await.is_ok()
    }

    /// Checks and records one message of the user: admitted in every window
    /// at once, or refused with nothing recorded. Every message type counts.
    ///
    /// # Errors
    /// [`LimitKind::MessageWindow`] (the first full window) or
    /// [`LimitKind::ViolationBackoff`], with the exact `retry_after`; with a
    /// fail-closed store that fails, [`LimitKind::StoreUnavailable`].
    pub async fn record_message(
        &self,
        user_id: &str,
        message: &WebSocketMessage,
    ) -> Result<(), RateLimitExceeded> {
        let _ = message; // every type counts alike
        let now = self.inner.clock.now();
        self.decide(user_id, now, true).await
    }

    /// Counts one request under `key` in the message windows (what the
    /// tower layer does per HTTP request or upgrade): the same windows,
    /// backoff and store as [`record_message`](Self::record_message), keyed
    /// by anything (an address, an API key, a user).
    ///
    /// # Errors
    /// As `record_message`.
    pub async fn record_request(&self, key: &str) -> Result<(), RateLimitExceeded> {
        let now = self.inner.clock.now();
        self.decide(key, now, true).await
    }

    /// [`record_message`](Self::record_message) for a client at `ip`: the
    /// frame must fit the IP's minute (`max_messages_per_ip_per_minute`,
    /// all its users together) and the user's windows; it is counted in
    /// both only if both admit it. (Frames of one IP racing on several
    /// connections may pass the IP's window by at most one each.)
    ///
    /// # Errors
    /// [`LimitKind::IpMessages`] when the IP's minute is full (the user's
    /// windows are untouched); otherwise as `record_message`.
    pub async fn record_message_from(
        &self,
        user_id: &str,
        ip: IpAddr,
        message: &WebSocketMessage,
    ) -> Result<(), RateLimitExceeded> {
        let inner = &self.inner;
        if inner.config.max_messages_per_ip_per_minute == 0 {
            return self.record_message(user_id, message).await;
        }
        let now = inner.clock.now();
        let key = ip.to_string();
        {
            let mut slot = self.ip_slot(&key, now);
            let s = &mut slot.value;
            s.last_seen = now;
            let peek = s.frames.decide(&inner.ip_frame_shape, now, false);
            if !peek.admitted {
                return Err(RateLimitExceeded {
                    kind: LimitKind::IpMessages,
                    limit: inner.config.max_messages_per_ip_per_minute,
                    retry_after: peek.retry_at.map(|at| at.duration_since(now)),
                    key: LimitKey::from(key),
                });
            }
        }
        self.record_message(user_id, message).await?;
        let mut slot = self.ip_slot(&key, now);
        let _ = slot.value.frames.decide(&inner.ip_frame_shape, now, true);
        Ok(())
    }

    /// The decision for one message at `now`; `record` admits for real.
    async fn decide(
        &self,
        user_id: &str,
        now: Timestamp,
        record: bool,
    ) -> Result<(), RateLimitExceeded> {
        let inner = &self.inner;
        let Some(store) = &inner.store else {
            return self.decide_local(user_id, now, record);
        };
        let request = WindowRequest {
            key: user_id,
            windows: inner.shape.windows(),
            burst: inner.config.burst_allowance,
            now,
            record,
        };
        let blocked_until = inner
            .users
            .get(user_id)
            .map(|s| s.value.blocked_until)
            .filter(|until| *until > now);
        if let Some(until) = blocked_until {
            // Blocked: the retry is the later of the block and the windows.
            let peek = WindowRequest {
                record: false,
                ..request
            };
            let window_retry = store.decide(peek).await.ok().and_then(|d| d.retry_at);
            return Err(self.blocked_refusal(&LimitKey::from(user_id), until, window_retry, now));
        }
        match store.decide(request).await {
            Ok(decision) if !record => self
                .refusal_for(&LimitKey::from(user_id), &decision, now)
                .map_or(Ok(()), Err),
            Ok(decision) => {
                let mut slot = inner.users.get_or_insert(
                    user_id,
                    || UserState::new(&inner.no_windows, now),
                    UserState::pinned,
                );
                let (key, s) = slot.pair_mut();
                self.settle(&mut s.value, key, decision, now)
            }
            Err(_) => {
                inner.store_failures.fetch_add(1, Ordering::Relaxed);
                match inner.config.store_failure {
                    FailurePolicy::FailOpen => Ok(()),
                    FailurePolicy::FailClosed => Err(RateLimitExceeded {
                        kind: LimitKind::StoreUnavailable,
                        limit: 0,
                        retry_after: None,
                        key: LimitKey::from(user_id),
                    }),
                }
            }
        }
    }

    fn local_shape(&self) -> &Shape {
        if self.inner.store.is_some() {
            &self.inner.no_windows
        } else {
            &self.inner.shape
        }
    }

    fn decide_local(
        &self,
        user_id: &str,
        now: Timestamp,
        record: bool,
    ) -> Result<(), RateLimitExceeded> {
        let inner = &self.inner;
        if !record {
            let Some(mut slot) = inner.users.get_mut(user_id) else {
                return Ok(());
            };
            let d = slot.value.windows.decide(&inner.shape, now, false);
            return self.refusal_for(slot.key(), &d, now).map_or(Ok(()), Err);
        }
        let mut slot = inner.users.get_or_insert(
            user_id,
            || UserState::new(&inner.shape, now),
            UserState::pinned,
        );
        let (key, s) = slot.pair_mut();
        let u = &mut s.value;
        u.last_activity = now;
        if u.refused_until > now {
            return Err(self.repeat_refusal(key, u, now));
        }
        if u.blocked_until > now {
            let d = u.windows.decide(&inner.shape, now, false);
            return Err(self.blocked_refusal(key, u.blocked_until, d.retry_at, now));
        }
        let d = u.windows.decide(&inner.shape, now, true);
        self.settle(u, key, d, now)
    }

    /// Applies a window decision to the user's violation state.
    fn settle(
        &self,
        u: &mut UserState,
        key: &LimitKey,
        decision: WindowDecision,
        now: Timestamp,
    ) -> Result<(), RateLimitExceeded> {
        let cfg = &self.inner.config;
        u.last_activity = now;
        if decision.admitted {
            u.in_violation = false;
            return Ok(());
        }
        if !u.in_violation {
            u.in_violation = true;
            if now.duration_since(u.last_violation_at) > cfg.violation_decay {
                u.violation_count = 0;
            }
            u.violation_count = u.violation_count.saturating_add(1);
            u.last_violation_at = now;
            let backoff = cfg.violation_backoff(u.violation_count);
            u.current_backoff = backoff;
            if !backoff.is_zero() {
                u.blocked_until = now + backoff;
            }
        }
        let mut refusal = self
            .refusal_for(key, &decision, now)
            .unwrap_or_else(|| self.blocked_refusal(key, u.blocked_until, None, now));
        if u.blocked_until > now {
            let window_retry = refusal.retry_after.unwrap_or(Duration::ZERO);
            let block = u.blocked_until.duration_since(now);
            refusal.retry_after = Some(window_retry.max(block));
        }
        if self.inner.store.is_none() {
            u.refused_until = now + refusal.retry_after.unwrap_or(Duration::ZERO);
            u.refused_window = decision
                .refused_window
                .and_then(|i| u8::try_from(i).ok())
                .unwrap_or(u8::MAX);
        }
        Err(refusal)
    }

    /// The refusal again, from the cache, before its retry time.
    fn repeat_refusal(&self, key: &LimitKey, u: &UserState, now: Timestamp) -> RateLimitExceeded {
        let retry_after = Some(u.refused_until.duration_since(now));
        match self
            .inner
            .shape
            .windows()
            .get(usize::from(u.refused_window))
        {
            Some(w) if u.blocked_until <= now => RateLimitExceeded {
                kind: LimitKind::MessageWindow { window: w.length },
                limit: w.limit.saturating_add(self.inner.config.burst_allowance),
                retry_after,
                key: key.clone(),
            },
            _ => RateLimitExceeded {
                retry_after,
                ..self.blocked_refusal(key, u.blocked_until, None, now)
            },
        }
    }

    fn refusal_for(
        &self,
        key: &LimitKey,
        d: &WindowDecision,
        now: Timestamp,
    ) -> Option<RateLimitExceeded> {
        let i = d.refused_window?;
        let w = self.inner.shape.windows().get(i)?;
        Some(RateLimitExceeded {
            kind: LimitKind::MessageWindow { window: w.length },
            limit: w.limit.saturating_add(self.inner.config.burst_allowance),
            retry_after: d.retry_at.map(|at| at.duration_since(now)),
            key: key.clone(),
        })
    }

    fn blocked_refusal(
        &self,
        key: &LimitKey,
        blocked_until: Timestamp,
        window_retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> RateLimitExceeded {
        let until = window_retry_at.map_or(blocked_until, |w| w.max(blocked_until));
        RateLimitExceeded {
            kind: LimitKind::ViolationBackoff,
            limit: self.inner.config.max_messages_per_minute,
            retry_after: Some(until.duration_since(now)),
            key: key.clone(),
        }
    }

    /// The state of a client IP, created if new (IPs in backoff are never
    /// evicted).
    fn ip_slot(
        &self,
        key: &str,
        now: Timestamp,
    ) -> dashmap::mapref::one::RefMut<'_, LimitKey, Box<crate::bounded::Slot<IpState>>> {
        let inner = &self.inner;
        inner.ips.get_or_insert(
            key,
            || IpState {
                attempts: WindowSet::new(&inner.ip_shape),
                frames: WindowSet::new(&inner.ip_frame_shape),
                failures: 0,
                last_failure: Timestamp::from_unix_micros(i64::MIN),
                blocked_until: Timestamp::from_unix_micros(i64::MIN),
                last_seen: now,
            },
            |s| s.blocked_until > inner.clock.now(),
        )
    }

    /// Checks and records one handshake attempt from `ip`, before the
    /// WebSocket upgrade.
    ///
    /// # Errors
    /// [`LimitKind::IpBackoff`] while the IP backs off after failed
    /// handshakes; [`LimitKind::IpHandshakes`] when its attempt window is
    /// full. Both carry the exact `retry_after`.
    pub fn check_handshake(&self, ip: IpAddr) -> Result<(), RateLimitExceeded> {
        let inner = &self.inner;
        let now = inner.clock.now();
        let key = ip.to_string();
        let mut slot = self.ip_slot(&key, now);
        let s = &mut slot.value;
        s.last_seen = now;
        if s.blocked_until > now {
            return Err(RateLimitExceeded {
                kind: LimitKind::IpBackoff,
                limit: inner.config.ip_failures_before_backoff,
                retry_after: Some(s.blocked_until.duration_since(now)),
                key: LimitKey::from(key),
            });
        }
        let d = s.attempts.decide(&inner.ip_shape, now, true);
        if d.admitted {
            return Ok(());
        }
        Err(RateLimitExceeded {
            kind: LimitKind::IpHandshakes,
            limit: inner.config.max_handshakes_per_ip,
            retry_after: d.retry_at.map(|at| at.duration_since(now)),
            key: LimitKey::from(key),
        })
    }

    /// Records a failed handshake from `ip` (bad credentials, protocol
    /// error; not a refusal by policy such as the connection cap). Failures
    /// while the IP is blocked are not counted: a block is never extended
    /// by the requests it refuses. From the
    /// `ip_failures_before_backoff`th failure on, the IP is blocked for
    /// `ip_base_backoff`, doubling with each further failure, capped at
    /// `max_backoff`. Failures are forgotten after `violation_decay`.
    pub fn record_handshake_failure(&self, ip: IpAddr) {
        let inner = &self.inner;
        let cfg = &inner.config;
        let now = inner.clock.now();
        let key = ip.to_string();
        let mut slot = self.ip_slot(&key, now);
        let s = &mut slot.value;
        if s.blocked_until > now {
            // Already blocked: what it sends meanwhile does not extend its
            // own block (and `Retry-After` stays true).
            s.last_seen = now;
            return;
        }
        if now.duration_since(s.last_failure) > cfg.violation_decay {
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        s.last_failure = now;
        s.last_seen = now;
        let threshold = cfg.ip_failures_before_backoff.max(1);
        if s.failures >= threshold {
            let backoff = scaled(
                cfg.ip_base_backoff,
                2.0,
                s.failures - threshold,
                cfg.max_backoff,
            );
            s.blocked_until = now + backoff;
        }
    }

    /// Records a successful handshake from `ip`: its failures are forgotten.
    pub fn record_handshake_success(&self, ip: IpAddr) {
        if let Some(mut slot) = self.inner.ips.get_mut(&ip.to_string()) {
            slot.value.failures = 0;
        }
    }

    /// Drops users with no connection and no activity for
    /// `cleanup_inactive_after`, and client IPs idle as long (or for twice
    /// `ip_window` and `violation_decay` when that is `None`) and not
    /// blocked. Returns how many entries it removed.
    pub fn cleanup_expired_data(&self) -> usize {
        self.cleanup_now()
    }

    fn cleanup_now(&self) -> usize {
        let inner = &self.inner;
        let cfg = &inner.config;
        let now = inner.clock.now();
        let users = match cfg.cleanup_inactive_after {
            Some(after) => inner.users.retain(|_, u| {
                !u.connections.is_empty() || now.duration_since(u.last_activity) < after
            }),
            None => 0,
        };
        let ip_idle = cfg
            .cleanup_inactive_after
            .unwrap_or(cfg.ip_window.max(cfg.violation_decay) * 2);
        let ips = inner
            .ips
            .retain(|_, s| s.blocked_until > now || now.duration_since(s.last_seen) < ip_idle);
        users + ips
    }

    /// Runs [`cleanup_expired_data`](Self::cleanup_expired_data) every
    /// `interval` of the limiter's clock in a tokio task, until the handle is
    /// stopped or dropped. Must be called within a tokio runtime.
    pub fn spawn_cleanup(&self, interval: Duration) -> CleanupHandle {
        let limiter = Arc::downgrade(&self.inner);
        BackgroundTask::spawn_periodic(self.inner.clock.clone(), interval, move || {
            limiter
                .upgrade()
                .map(|inner| WebSocketRateLimiter { inner }.cleanup_now())
                .is_some()
        })
    }

    /// Approximate bytes held for users: the map's table plus each user's
    /// own heap data (windows, connection ids). Used to check the per-user
    /// memory bound.
    pub fn approximate_user_bytes(&self) -> usize {
        let mut bytes = self.inner.users.table_bytes();
        self.inner.users.retain(|k, u| {
            bytes += k.len()
                + u.windows.heap_bytes()
                + u.connections.len() * std::mem::size_of::<Box<str>>()
                + u.connections.iter().map(|c| c.len()).sum::<usize>();
            true
        });
        bytes
    }
}

/// A connection slot held for a user; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "dropping the permit releases the connection slot at once"]
pub struct ConnectionPermit {
    limiter: WebSocketRateLimiter,
    user_id: String,
    connection_id: String,
}

impl ConnectionPermit {
    /// The user holding the slot.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The connection id.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter
            .drop_connection(&self.user_id, &self.connection_id);
    }
}

/// The background cleanup's handle: stops it when dropped or stopped.
pub type CleanupHandle = BackgroundTask;
