//! [`RateLimitStore`]: where message windows live, pluggable so several
//! gateway nodes can share them (the Redis store implements it).

use async_trait::async_trait;
use wsc_core::Timestamp;

use crate::bounded::BoundedMap;
use crate::error::StoreError;
use crate::window::{Shape, WindowDecision, WindowLimit, WindowSet};

/// One decision asked of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRequest<'a> {
    /// The key (a user id).
    pub key: &'a str,
    /// The windows, checked together.
    pub windows: &'a [WindowLimit],
    /// Extra admissions above each window's limit.
    pub burst: u32,
    /// The decision time.
    pub now: Timestamp,
    /// Record the admission (`false`: only look).
    pub record: bool,
}

/// Per-key message windows, checked and recorded atomically.
///
/// One call is one decision: a store checks every window of the request at
/// `now` and, only if all admit and `record` is set, counts one admission
/// in each — so it maps onto a single Lua script in Redis. Implementations
/// must use the window arithmetic documented on [`WindowLimit`] (ticks of
/// `length / buckets`, an admission counted for `span` ticks after its own)
/// so that every store gives the same answers.
#[async_trait]
pub trait RateLimitStore: Send + Sync + std::fmt::Debug {
    /// Checks (and with `record`, records) one request.
    async fn decide(&self, request: WindowRequest<'_>) -> Result<WindowDecision, StoreError>;

    /// Admissions counted in each window of `windows` at `now`.
    async fn counts(
        &self,
        key: &str,
        windows: &[WindowLimit],
        now: Timestamp,
    ) -> Result<Vec<u32>, StoreError>;

    /// Forgets a key's windows.
    async fn forget(&self, key: &str) -> Result<(), StoreError>;
}

/// The in-memory store: a `DashMap` of window rings, capped at
/// `max_keys` with CLOCK eviction.
///
/// [`WebSocketRateLimiter`](crate::WebSocketRateLimiter) keeps its windows
/// in memory by itself; this type is the same logic behind the trait, for
/// code written against [`RateLimitStore`] and as the reference other stores
/// are tested against.
#[derive(Debug)]
pub struct MemoryStore {
    keys: BoundedMap<WindowSet>,
}

impl MemoryStore {
    /// A store holding at most `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            keys: BoundedMap::new(max_keys),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(100_000)
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn decide(&self, r: WindowRequest<'_>) -> Result<WindowDecision, StoreError> {
        let shape = Shape::new(r.windows, r.burst);
        if !r.record && self.keys.get(r.key).is_none() {
            return Ok(WindowSet::new(&shape).decide(&shape, r.now, false));
        }
        let mut slot = self
            .keys
            .get_or_insert(r.key, || WindowSet::new(&shape), |_| false);
        Ok(slot.value.decide(&shape, r.now, r.record))
    }

    async fn counts(
        &self,
        key: &str,
        windows: &[WindowLimit],
        now: Timestamp,
    ) -> Result<Vec<u32>, StoreError> {
        let shape = Shape::new(windows, 0);
        Ok(match self.keys.get_mut(key) {
            Some(mut slot) => (0..windows.len())
                .map(|i| slot.value.count(&shape, i, now))
                .collect(),
            None => vec![0; windows.len()],
        })
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        self.keys.remove(key);
        Ok(())
    }
}

/// A store that asks `primary` (e.g. Redis) and, when it fails, decides
/// with `fallback` (e.g. a [`MemoryStore`]) instead: availability first,
/// with limits still enforced per node while the shared store is away.
/// Each fallback decision is counted ([`fallbacks`](Self::fallbacks)) and
/// the first of a run of failures is logged.
#[derive(Debug)]
pub struct FallbackStore {
    primary: std::sync::Arc<dyn RateLimitStore>,
    fallback: std::sync::Arc<dyn RateLimitStore>,
    fallbacks: std::sync::atomic::AtomicU64,
    failing: std::sync::atomic::AtomicBool,
}

impl FallbackStore {
    /// `primary`, falling back to `fallback`.
    pub fn new(
        primary: std::sync::Arc<dyn RateLimitStore>,
        fallback: std::sync::Arc<dyn RateLimitStore>,
    ) -> Self {
        FallbackStore {
            primary,
            fallback,
            fallbacks: std::sync::atomic::AtomicU64::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Decisions made by the fallback so far.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn failed(&self, e: &StoreError) {
        use std::sync::atomic::Ordering;
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e.message, "rate-limit store failing: deciding locally");
        }
    }

    fn recovered(&self) {
        if self
            .failing
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!("rate-limit store back: deciding with it again");
        }
    }
}

#[async_trait]
impl RateLimitStore for FallbackStore {
    async fn decide(&self, request: WindowRequest<'_>) -> Result<WindowDecision, StoreError> {
        match self.primary.decide(request).await {
            Ok(d) => {
                self.recovered();
                Ok(d)
            }
            Err(e) => {
                self.failed(&e);
                self.fallback.decide(request).await
            }
        }
    }

    async fn counts(
        &self,
        key: &str,
        windows: &[WindowLimit],
        now: Timestamp,
    ) -> Result<Vec<u32>, StoreError> {
        match self.primary.counts(key, windows, now).await {
            Ok(c) => Ok(c),
            Err(e) => {
                self.failed(&e);
                self.fallback.counts(key, windows, now).await
            }
        }
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        let _ = self.fallback.forget(key).await;
        self.primary.forget(key).await
    }
}
