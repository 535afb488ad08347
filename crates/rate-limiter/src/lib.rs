//! # wsc-rate-limiter
//!
//! Keeps any one user or client from flooding a WebSocket server: exact
//! sliding message windows, per-user connection caps, per-IP handshake
//! backoff, escalating violation backoff and adaptive limits.
//!
//! **Status:** the crate is being built; this release exposes no API yet.
//! The public shape to come:
//!
//! - `RateLimiter` (legacy name `WebSocketRateLimiter`) with `new(config)` and
//!   `with_clock(config, clock)`: several windows per user checked and
//!   recorded atomically (never more than N admitted in any window of length
//!   W), each refusal a `RateLimitExceeded` with an exact `retry_after`;
//! - connection caps with an RAII `ConnectionPermit`;
//! - per-IP handshake limiting, violation backoff, `AdaptiveRateLimiter`;
//! - an async, object-safe store trait (in-memory `DashMap` by default) that
//!   a Redis store implements with one atomic script per decision.
#![forbid(unsafe_code)]
