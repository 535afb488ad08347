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
//! resume-token secret ([`shared_token_secret`]). [`testing`] starts a
//! throwaway `redis-server` for tests.
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

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use wsc_core::StoreError;

mod announce;
mod connections;
mod limiter;
mod sessions;
pub mod testing;

pub use announce::{AnnouncementListener, spawn_announcement_listener};
pub use connections::{RedisConnectionCounter, shared_token_secret};
pub use limiter::{BatchStats, RedisRateLimitStore};
pub use sessions::{RedisSessionConfig, RedisSessionStore};

/// Opens a managed connection to `url` (`redis://host:port/db`): it
/// reconnects by itself after a failure, and every command times out after
/// one second so an unreachable Redis turns into a [`StoreError`] quickly
/// (the limiter's failure policy decides what happens then).
///
/// # Errors
/// An invalid URL, or Redis not reachable now.
pub async fn connect(url: &str) -> Result<ConnectionManager, StoreError> {
    let client = redis::Client::open(url).map_err(store_error)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(2)
        .set_max_delay(200);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(store_error)
}

pub(crate) fn store_error(e: redis::RedisError) -> StoreError {
    StoreError::new(format!("redis: {e}"))
}

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
