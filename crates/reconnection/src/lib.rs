//! # wsc-reconnection
//!
//! Lets a client that lost its WebSocket resume without losing or
//! duplicating a single event, on any gateway node.
//!
//! **Status:** the crate is being built; this release exposes no API yet.
//! The public shape to come:
//!
//! - a session registry: per session an epoch, a resume token (HMAC over
//!   session, user and epoch) and a replay buffer that numbers frames 1, 2,
//!   3 ... and is bounded by count, bytes and age;
//! - `resume(session_id, token, last_seq)` answering either exactly the frames
//!   after `last_seq` or an explicit "not resumed" with a reason, never a
//!   partial replay;
//! - the legacy `WebSocketReconnectionHandler` (exponential backoff with
//!   jitter, one attempt in flight per session, metrics, cleanup);
//! - `ResilientClient`, a tokio-tungstenite client that reconnects and
//!   resumes on its own;
//! - an async, object-safe store trait, in memory by default.
#![forbid(unsafe_code)]
