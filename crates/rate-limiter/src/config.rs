//! [`RateLimitConfig`].

use std::time::Duration;

use crate::window::WindowLimit;

/// What a store failure does (see [`RateLimitStore`](crate::RateLimitStore)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Admit the message (availability first). Counted in
    /// [`store_failures`](crate::WebSocketRateLimiter::store_failures).
    #[default]
    FailOpen,
    /// Refuse the message with [`LimitKind::StoreUnavailable`](crate::LimitKind::StoreUnavailable).
    FailClosed,
}

/// Limits and bounds of a [`WebSocketRateLimiter`](crate::WebSocketRateLimiter).
///
/// Every field has a default; write `RateLimitConfig {
/// max_messages_per_minute: 120, ..Default::default() }` to change one.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Concurrent connections per user (default 5).
    pub max_connections_per_user: u32,
    /// Messages per user in any 60 s (default 60; 0 disables the window).
    pub max_messages_per_minute: u32,
    /// Messages per user in any hour (default 1 000; 0 disables the window).
    pub max_messages_per_hour: u32,
    /// Further windows checked with the two above, atomically (default none).
    pub extra_windows: Vec<WindowLimit>,
    /// Buckets per window: the granularity is the window's length divided by
    /// this (default 60: 1 s for the minute window, 1 min for the hour).
    pub window_buckets: u32,
    /// Extra messages admitted above each window's limit (default 0).
    pub burst_allowance: u32,
    /// The first backoff after repeated violations (default 1 s).
    pub base_backoff: Duration,
    /// Each further violation multiplies the backoff by this (default 2.0).
    pub backoff_multiplier: f64,
    /// The longest backoff (default 300 s).
    pub max_backoff: Duration,
    /// Violations older than this are forgotten (default 300 s).
    pub violation_decay: Duration,
    /// Users with no connection and no activity for this long are dropped
    /// by cleanup (default 1 h; `None`: never).
    pub cleanup_inactive_after: Option<Duration>,
    /// At most this many users are tracked (default 100 000). A new user
    /// past it evicts an approximately least recently active user that holds
    /// no connection (CLOCK second-chance order).
    pub max_tracked_users: usize,
    /// Handshake attempts per client IP in [`ip_window`](Self::ip_window)
    /// (default 120; 0 disables).
    pub max_handshakes_per_ip: u32,
    /// The per-IP handshake window (default 60 s).
    pub ip_window: Duration,
    /// Client frames per IP per minute, all its users together, checked
    /// with the user's windows by
    /// [`record_message_from`](crate::WebSocketRateLimiter::record_message_from)
    /// (default 0: off). Where user ids are self-asserted (a dev gateway),
    /// this is what stops one address from multiplying its budget by
    /// inventing users.
    pub max_messages_per_ip_per_minute: u32,
    /// Failed handshakes from an IP before it backs off (default 5).
    pub ip_failures_before_backoff: u32,
    /// The first per-IP backoff; doubles with each further failure up to
    /// `max_backoff` (default 1 s).
    pub ip_base_backoff: Duration,
    /// At most this many client IPs are tracked (default 100 000), evicted
    /// like users.
    pub max_tracked_ips: usize,
    /// What to do when a custom store fails (default fail-open).
    pub store_failure: FailurePolicy,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            max_connections_per_user: 5,
            max_messages_per_minute: 60,
            max_messages_per_hour: 1_000,
            extra_windows: Vec::new(),
            window_buckets: WindowLimit::DEFAULT_BUCKETS,
            burst_allowance: 0,
            base_backoff: Duration::from_secs(1),
            backoff_multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
            violation_decay: Duration::from_secs(300),
            cleanup_inactive_after: Some(Duration::from_secs(3600)),
            max_tracked_users: 100_000,
            max_handshakes_per_ip: 120,
            ip_window: Duration::from_secs(60),
            max_messages_per_ip_per_minute: 0,
            ip_failures_before_backoff: 5,
            ip_base_backoff: Duration::from_secs(1),
            max_tracked_ips: 100_000,
            store_failure: FailurePolicy::FailOpen,
        }
    }
}

impl RateLimitConfig {
    /// The message windows in checking order: minute, hour, then the extras.
    pub fn windows(&self) -> Vec<WindowLimit> {
        let mut windows = vec![
            WindowLimit {
                length: Duration::from_secs(60),
                limit: self.max_messages_per_minute,
                buckets: self.window_buckets,
            },
            WindowLimit {
                length: Duration::from_secs(3600),
                limit: self.max_messages_per_hour,
                buckets: self.window_buckets,
            },
        ];
        windows.extend(self.extra_windows.iter().copied());
        windows
    }

    /// The backoff after the `n`th violation of a burst series (n >= 2):
    /// `min(base_backoff * multiplier^(n-2), max_backoff)`. The first
    /// violation adds no backoff: its retry is the window's own.
    pub fn violation_backoff(&self, n: u32) -> Duration {
        if n < 2 {
            return Duration::ZERO;
        }
        scaled(
            self.base_backoff,
            self.backoff_multiplier,
            n - 2,
            self.max_backoff,
        )
    }
}

/// `min(base * mult^exp, cap)`, robust to overflow and odd multipliers.
pub(crate) fn scaled(base: Duration, mult: f64, exp: u32, cap: Duration) -> Duration {
    let mult = if mult.is_finite() && mult >= 1.0 {
        mult
    } else {
        1.0
    };
    let secs = base.as_secs_f64() * mult.powi(i32::try_from(exp).unwrap_or(i32::MAX));
    if !secs.is_finite() || secs >= cap.as_secs_f64() {
        cap
    } else {
        Duration::from_secs_f64(secs.max(0.0)).min(cap)
    }
}
