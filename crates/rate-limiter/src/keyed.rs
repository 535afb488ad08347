//! The smaller legacy limiters: [`AdaptiveRateLimiter`], the process-wide
//! [`check_rate_limit`], and the keyed [`EndpointRateLimiter`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use wsc_core::{SharedClock, SystemClock};

use crate::bounded::BoundedMap;
use crate::window::{Shape, WindowLimit, WindowSet};

/// Keys each keyed limiter tracks at most (CLOCK eviction past it).
const MAX_KEYS: usize = 100_000;

/// A per-client limiter whose limit follows a load signal: the full
/// `base_rate` per `window` normally, 75 % of it when the load is over 0.6
/// and 50 % over 0.8.
///
/// ```
/// use std::time::Duration;
/// use wsc_rate_limiter::AdaptiveRateLimiter;
///
/// let limiter = AdaptiveRateLimiter::new(4, Duration::from_secs(1));
/// assert!(limiter.is_allowed("c", Some(0.9))); // limit now 2
/// assert!(limiter.is_allowed("c", None));      // the last load still holds
/// assert!(!limiter.is_allowed("c", None));
/// assert_eq!(limiter.remaining_quota("c"), 0);
/// ```
#[derive(Debug)]
pub struct AdaptiveRateLimiter {
    window: WindowLimit,
    base_rate: u32,
    clock: SharedClock,
    clients: BoundedMap<WindowSet>,
    /// The last load reported, as `f64` bits.
    load: AtomicU64,
}

impl AdaptiveRateLimiter {
    /// `base_rate` requests per `window` per client, on the system clock.
    pub fn new(base_rate: u32, window: Duration) -> Self {
        Self::with_clock(base_rate, window, Arc::new(SystemClock))
    }

    /// As [`new`](Self::new), on `clock`.
    pub fn with_clock(base_rate: u32, window: Duration, clock: SharedClock) -> Self {
        AdaptiveRateLimiter {
            window: WindowLimit::new(window, base_rate),
            base_rate,
            clock,
            clients: BoundedMap::new(MAX_KEYS),
            load: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The limit at `load`: 100 %, 75 % (> 0.6) or 50 % (> 0.8) of the base.
    pub fn effective_limit(&self, load: f64) -> u32 {
        let base = u64::from(self.base_rate);
        let scaled = if load > 0.8 {
            base / 2
        } else if load > 0.6 {
            base * 3 / 4
        } else {
            base
        };
        u32::try_from(scaled).unwrap_or(u32::MAX)
    }

    /// The last load reported (0 until one is).
    pub fn current_load(&self) -> f64 {
        f64::from_bits(self.load.load(Ordering::Relaxed))
    }

    fn shape_at(&self, load: f64) -> Shape {
        Shape::new(
            &[WindowLimit {
                limit: self.effective_limit(load),
                ..self.window
            }],
            0,
        )
    }

    /// Admits and records one request of `client_id` if it is under the
    /// limit for the load. `current_load` (0.0 to 1.0), when given, becomes
    /// the load for this and later calls. A non-finite load is ignored.
    pub fn is_allowed(&self, client_id: &str, current_load: Option<f64>) -> bool {
        if let Some(load) = current_load.filter(|l| l.is_finite()) {
            self.load.store(load.to_bits(), Ordering::Relaxed);
        }
        let shape = self.shape_at(self.current_load());
        if shape.windows()[0].limit == 0 {
            return false;
        }
        let now = self.clock.now();
        let mut slot = self
            .clients
            .get_or_insert(client_id, || WindowSet::new(&shape), |_| false);
        slot.value.decide(&shape, now, true).admitted
    }

    /// Requests the client may still make now at the current load.
    pub fn remaining_quota(&self, client_id: &str) -> u32 {
        let shape = self.shape_at(self.current_load());
        let now = self.clock.now();
        let used = self
            .clients
            .get_mut(client_id)
            .map_or(0, |mut s| s.value.count(&shape, 0, now));
        shape.windows()[0].limit.saturating_sub(used)
    }
}

fn global_limiter() -> &'static BoundedMap<WindowSet> {
    static GLOBAL: OnceLock<BoundedMap<WindowSet>> = OnceLock::new();
    GLOBAL.get_or_init(|| BoundedMap::new(MAX_KEYS))
}

/// Admits and records one request of `client_id` if fewer than
/// `max_requests` were admitted in the last `window`; process-wide shared
/// state on the system clock (at most 100 000 distinct
/// `(client_id, max_requests, window)` keys, CLOCK eviction past that).
///
/// ```
/// use std::time::Duration;
/// use wsc_rate_limiter::check_rate_limit;
///
/// let w = Duration::from_secs(60);
/// assert!(check_rate_limit("doc-client", 2, w));
/// assert!(check_rate_limit("doc-client", 2, w));
/// assert!(!check_rate_limit("doc-client", 2, w));
/// ```
pub fn check_rate_limit(client_id: &str, max_requests: u32, window: Duration) -> bool {
    if max_requests == 0 {
        return false;
    }
    let shape = Shape::new(&[WindowLimit::new(window, max_requests)], 0);
    let key = format!(
        "{client_id}\u{1f}{max_requests}\u{1f}{}",
        window.as_micros()
    );
    let now = wsc_core::Clock::now(&SystemClock);
    let mut slot = global_limiter().get_or_insert(&key, || WindowSet::new(&shape), |_| false);
    slot.value.decide(&shape, now, true).admitted
}

/// Normalizes a user or endpoint identifier: trims whitespace, lowercases,
/// and strips a query (`?...`) and fragment (`#...`).
pub fn normalize_identifier(raw: &str) -> String {
    let cut = raw.find(['?', '#']).unwrap_or(raw.len());
    raw[..cut].trim().to_lowercase()
}

/// Limits keyed by (user, endpoint) (legacy name `RateLimiter`).
///
/// Identifiers are normalized with [`normalize_identifier`], so
/// `" /API/Chat?x=1"` and `"/api/chat"` share a limit. A pair with no limit
/// set is always allowed. Limits are configuration (kept until removed);
/// the per-pair windows are capped at 100 000 pairs with CLOCK eviction.
///
/// ```
/// use std::time::Duration;
/// use wsc_rate_limiter::EndpointRateLimiter;
///
/// let limiter = EndpointRateLimiter::new();
/// limiter.set_rate_limit("alice", "/api/chat", 1, Duration::from_secs(60));
/// assert!(limiter.check_rate_limit("Alice ", "/API/chat?stream=1"));
/// assert!(!limiter.check_rate_limit("alice", "/api/chat"));
/// assert!(limiter.check_rate_limit("alice", "/api/other"));
/// ```
#[derive(Debug)]
pub struct EndpointRateLimiter {
    limits: DashMap<String, WindowLimit, RandomState>,
    state: BoundedMap<WindowSet>,
    clock: SharedClock,
}

impl Default for EndpointRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

fn pair_key(user: &str, endpoint: &str) -> String {
    format!(
        "{}\u{1f}{}",
        normalize_identifier(user),
        normalize_identifier(endpoint)
    )
}

impl EndpointRateLimiter {
    /// An empty limiter on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty limiter on `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        EndpointRateLimiter {
            limits: DashMap::with_hasher(RandomState::default()),
            state: BoundedMap::new(MAX_KEYS),
            clock,
        }
    }

    /// Sets `limit` requests per `window` for `user` on `endpoint`.
    /// Changing a window's length restarts its count.
    pub fn set_rate_limit(&self, user: &str, endpoint: &str, limit: u32, window: Duration) {
        self.limits
            .insert(pair_key(user, endpoint), WindowLimit::new(window, limit));
    }

    /// Removes the limit of a pair; returns whether one was set.
    pub fn remove_rate_limit(&self, user: &str, endpoint: &str) -> bool {
        let key = pair_key(user, endpoint);
        self.state.remove(&key);
        self.limits.remove(&key).is_some()
    }

    /// Admits and records one request if under the pair's limit; a pair
    /// without a limit is always admitted.
    pub fn check_rate_limit(&self, user: &str, endpoint: &str) -> bool {
        let key = pair_key(user, endpoint);
        let Some(limit) = self.limits.get(&key).map(|l| *l) else {
            return true;
        };
        if limit.limit == 0 {
            return false;
        }
        let shape = Shape::new(&[limit], 0);
        let now = self.clock.now();
        let mut slot = self
            .state
            .get_or_insert(&key, || WindowSet::new(&shape), |_| false);
        slot.value.decide(&shape, now, true).admitted
    }

    /// Requests the pair may still make now, or `None` without a limit.
    pub fn remaining(&self, user: &str, endpoint: &str) -> Option<u32> {
        let key = pair_key(user, endpoint);
        let limit = *self.limits.get(&key)?;
        let now = self.clock.now();
        let shape = Shape::new(&[limit], 0);
        let used = self
            .state
            .get_mut(&key)
            .map_or(0, |mut s| s.value.count(&shape, 0, now));
        Some(limit.limit.saturating_sub(used))
    }
}
