//! The legacy rate limiters: [`WebSocketRateLimiter`] and
//! [`AdaptiveRateLimiter`] with the legacy `async` methods, and the
//! process-wide [`check_rate_limit`], over the synchronous limiters of
//! `wsc-rate-limiter`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use wsc_core::SharedClock;
use wsc_rate_limiter as rl;
use wsc_rate_limiter::{RateLimitConfig, RateLimitExceeded, RateLimitStore};

/// The legacy per-user rate limiter (legacy `WebSocketRateLimiter`): the
/// legacy coroutines are `async` here, thin wrappers of the synchronous
/// methods of [`rl::WebSocketRateLimiter`] of the same names; everything
/// else (`record_message`, `user_state`, `acquire_connection`, ...) is
/// reached through `Deref`.
///
/// ```
/// use websocket_core::rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter = WebSocketRateLimiter::new(RateLimitConfig::default());
/// limiter.record_connection("alice", "conn-1").await.unwrap();
/// assert_eq!(limiter.active_connections("alice"), 1); // through Deref
/// # });
/// ```
#[derive(Debug)]
pub struct WebSocketRateLimiter {
    inner: rl::WebSocketRateLimiter,
}

impl Deref for WebSocketRateLimiter {
    type Target = rl::WebSocketRateLimiter;
    fn deref(&self) -> &rl::WebSocketRateLimiter {
        &self.inner
    }
}

impl From<rl::WebSocketRateLimiter> for WebSocketRateLimiter {
    fn from(inner: rl::WebSocketRateLimiter) -> Self {
        WebSocketRateLimiter { inner }
    }
}

impl WebSocketRateLimiter {
    /// A limiter on the system clock, in memory.
    pub fn new(config: RateLimitConfig) -> Self {
        rl::WebSocketRateLimiter::new(config).into()
    }

    /// A limiter on `clock` (tests pass a `ManualClock`).
    pub fn with_clock(config: RateLimitConfig, clock: SharedClock) -> Self {
        rl::WebSocketRateLimiter::with_clock(config, clock).into()
    }

    /// A limiter whose windows live in `store` (e.g. Redis).
    pub fn with_store(
        config: RateLimitConfig,
        clock: SharedClock,
        store: Arc<dyn RateLimitStore>,
    ) -> Self {
        rl::WebSocketRateLimiter::with_store(config, clock, store).into()
    }

    /// The synchronous limiter inside.
    pub fn into_inner(self) -> rl::WebSocketRateLimiter {
        self.inner
    }

    /// See [`rl::WebSocketRateLimiter::check_connection_limit`].
    pub async fn check_connection_limit(&self, user_id: &str) -> bool {
        self.inner.check_connection_limit(user_id)
    }

    /// See [`rl::WebSocketRateLimiter::record_connection`].
    ///
    /// # Errors
    /// As [`rl::WebSocketRateLimiter::record_connection`].
    pub async fn record_connection(
        &self,
        user_id: &str,
        connection_id: &str,
    ) -> Result<(), RateLimitExceeded> {
        self.inner.record_connection(user_id, connection_id)
    }

    /// See [`rl::WebSocketRateLimiter::remove_connection`].
    pub async fn remove_connection(&self, user_id: &str, connection_id: &str) {
        self.inner.remove_connection(user_id, connection_id);
    }

    /// See [`rl::WebSocketRateLimiter::cleanup_expired_data`].
    pub async fn cleanup_expired_data(&self) -> usize {
        self.inner.cleanup_expired_data()
    }
}

/// The legacy load-adaptive limiter (legacy `AdaptiveRateLimiter`):
/// `is_allowed` is `async` here, a thin wrapper of
/// [`rl::AdaptiveRateLimiter::is_allowed`]; the rest through `Deref`.
#[derive(Debug)]
pub struct AdaptiveRateLimiter {
    inner: rl::AdaptiveRateLimiter,
}

impl Deref for AdaptiveRateLimiter {
    type Target = rl::AdaptiveRateLimiter;
    fn deref(&self) -> &rl::AdaptiveRateLimiter {
        &self.inner
    }
}

impl AdaptiveRateLimiter {
    /// `base_rate` requests per `window` at normal load.
    pub fn new(base_rate: u32, window: Duration) -> Self {
        AdaptiveRateLimiter {
            inner: rl::AdaptiveRateLimiter::new(base_rate, window),
        }
    }

    /// The same on `clock`.
    pub fn with_clock(base_rate: u32, window: Duration, clock: SharedClock) -> Self {
        AdaptiveRateLimiter {
            inner: rl::AdaptiveRateLimiter::with_clock(base_rate, window, clock),
        }
    }

    /// See [`rl::AdaptiveRateLimiter::is_allowed`].
    pub async fn is_allowed(&self, client_id: &str, current_load: Option<f64>) -> bool {
        self.inner.is_allowed(client_id, current_load)
    }
}

/// The legacy process-wide check (legacy `check_rate_limit`); see
/// [`rl::check_rate_limit`].
pub async fn check_rate_limit(client_id: &str, max_requests: u32, window: Duration) -> bool {
    rl::check_rate_limit(client_id, max_requests, window)
}
