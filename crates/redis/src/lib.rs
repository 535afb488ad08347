//! # wsc-redis
//!
//! Shared state for several wsc gateways, in Redis: the rate limiter's
//! message windows ([`RedisRateLimitStore`], an O(1) Lua decision, concurrent
//! decisions sent together in one script call, the same exact sliding
//! windows and `retry_after` as in memory), sessions
//! and replay buffers ([`RedisSessionStore`], so a client resumes on any
//! gateway), live delivery across gateways
//! ([`spawn_announcement_listener`]), per-user connection counts that heal
//! when a gateway dies ([`RedisConnectionCounter`]) and the shared
//! resume-token secret ([`shared_token_secret`]), and AG-UI runs' event
//! logs ([`RedisRunLogs`]: a run started on one gateway is read, resumed
//! and cancelled from any). [`connect`] opens one
//! Redis or a Redis Cluster (`redis+cluster://h1:p1,h2:p2`; everything here
//! runs on either).
//! [`testing`] starts a throwaway `redis-server` for tests.
//!
//! The gateway (`wsc-server`) uses all of it: `Gateway::builder(..).redis(..)`,
//! or `wsc-gateway serve --redis URL`.
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use wsc_rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
//!
//! # async fn run() -> Result<(), wsc_core::StoreError> {
//! let redis = wsc_redis::connect("redis://127.0.0.1:6379").await?;
//! let limiter = WebSocketRateLimiter::with_store(
//!     RateLimitConfig::default(),
//!     wsc_core::SystemClock::shared(),
//!     Arc::new(wsc_redis::RedisRateLimitStore::new(redis, "wsc:")),
//! );
//! // Every node built like this shares each user's windows.
//! # let _ = limiter;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use wsc_core::StoreError;

mod announce;
mod connection;
mod connections;
mod limiter;
mod runs;
mod sessions;
pub mod testing;

pub use announce::{AnnouncementListener, spawn_announcement_listener, spawn_channel_listener};
pub use connection::{
    CLUSTER_SCHEME, ClusterHandle, DEFAULT_REPLY_TIMEOUT, RedisConnection, connect,
    connect_with_timeout, hash_slot,
};
pub use connections::{LostRuns, RedisConnectionCounter, shared_token_secret};
pub use limiter::{BatchStats, RedisRateLimitStore};
pub use runs::RedisRunLogs;
pub use sessions::{RedisSessionConfig, RedisSessionStore};

pub(crate) fn store_error(e: redis::RedisError) -> StoreError {
    if e.is_timeout() {
        StoreError::timeout(format!("redis: {e}"))
    } else {
        StoreError::new(format!("redis: {e}"))
    }
}

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
