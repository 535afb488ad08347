//! # wsc-rate-limiter
//!
//! Keeps any one user or client from flooding a WebSocket server.
//!
//! - **Message windows** per user, several at once (per minute and per hour by
//!   default), checked and recorded atomically: a message refused by one
//!   window consumes nothing in the others. No window of length W ever holds
//!   more than its limit; an admission leaves the window at most one tick
//!   (W / 60 by default) later than an exact log would let it go, and each
//!   user costs under 512 bytes (see [`WindowLimit`] and the README).
//! - **A tower layer** (feature `tower`): `RateLimitLayer` for an axum app's
//!   routes and WebSocket upgrades, keyed by client address (behind trusted
//!   proxies, `client_address`), a header or a function of the request; a
//!   refusal answers 429 with `Retry-After` and a JSON body.
//! - **Refusals** are a [`RateLimitExceeded`] with the [`LimitKind`], the
//!   limit, and an exact `retry_after`: the earliest moment the same request
//!   would be admitted.
//! - **Violation backoff**: repeated bursts of refusals block the user for
//!   `base_backoff × multiplier^(n-2)`, capped at `max_backoff`, forgotten
//!   after `violation_decay`.
//! - **Connection caps** per user, by connection id or with an RAII
//!   [`ConnectionPermit`]; **per-IP handshake** limiting with backoff after
//!   failed handshakes.
//! - **Bounded memory**: at most `max_tracked_users` users and
//!   `max_tracked_ips` IPs (approximately least recently active evicted
//!   first, never one holding a connection), inactive ones dropped by
//!   cleanup.
//! - A pluggable [`RateLimitStore`] (one atomic decision per call) so several
//!   nodes can share windows; plus the smaller legacy limiters
//!   [`AdaptiveRateLimiter`], [`check_rate_limit`] and
//!   [`EndpointRateLimiter`].
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use wsc_core::{ManualClock, MessageType, WebSocketMessage};
//! use wsc_rate_limiter::{LimitKind, RateLimitConfig, WebSocketRateLimiter};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let clock = ManualClock::default();
//! let config = RateLimitConfig { max_messages_per_minute: 3, ..Default::default() };
//! let limiter = WebSocketRateLimiter::with_clock(config, clock.shared());
//! let msg = WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi"}));
//!
//! for _ in 0..3 {
//!     limiter.record_message("alice", &msg).await?;
//! }
//! let refused = limiter.record_message("alice", &msg).await.unwrap_err();
//! assert_eq!(refused.kind, LimitKind::MessageWindow { window: Duration::from_secs(60) });
//! assert!(refused.to_string().contains("message rate limit"));
//!
//! // Waiting exactly retry_after is enough.
//! clock.advance(refused.retry_after.unwrap());
//! limiter.record_message("alice", &msg).await?;
//!
//! // Connection slots are released when the permit drops.
//! let permit = limiter.acquire_connection("alice", "conn-1")?;
//! assert_eq!(limiter.active_connections("alice"), 1);
//! drop(permit);
//! assert_eq!(limiter.active_connections("alice"), 0);
//! # Ok::<(), wsc_rate_limiter::RateLimitExceeded>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod bounded;
mod config;
mod error;
#[cfg(feature = "tower")]
mod forwarded;
mod keyed;
#[cfg(feature = "tower")]
mod layer;
mod limiter;
mod log;
mod store;
mod window;

pub use config::{FailurePolicy, RateLimitConfig};
pub use error::{LimitKey, LimitKind, RateLimitExceeded, RateLimitExceededException, StoreError};
#[cfg(feature = "tower")]
pub use forwarded::{IpNet, client_address};
pub use keyed::{AdaptiveRateLimiter, EndpointRateLimiter, check_rate_limit, normalize_identifier};
#[cfg(feature = "tower")]
pub use layer::{KeyBy, KeyFn, RateLimitLayer, RateLimitService};
pub use limiter::{CleanupHandle, ConnectionPermit, UserRateLimitState, WebSocketRateLimiter};
pub use log::SlidingLog;
pub use store::{FallbackStore, MemoryStore, RateLimitStore, WindowRequest};
pub use window::{WindowDecision, WindowLimit};

// The README's code is compiled and run as doctests (with `tower`, which
// its layer example needs; `cargo xtask ci` builds the workspace with it).
#[cfg(all(doctest, feature = "tower"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
