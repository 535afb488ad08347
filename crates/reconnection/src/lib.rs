//! # wsc-reconnection
//!
//! Lets a client that lost its WebSocket resume without losing or
//! duplicating a single event.
//!
//! **Server side**, a [`SessionRegistry`] gives each session an id (128
//! random bits), an epoch and a resume token (HMAC-SHA256 over session, user
//! and epoch, verified in constant time). Every outbound frame is numbered
//! (seq 1, 2, 3 ...) and kept in a [`ReplayBuffer`] bounded by count, bytes
//! and age before it is delivered. A resume with `(session_id, token,
//! last_seq)` answers exactly the frames after `last_seq`, then live frames
//! with no gap and no duplicate — or an explicit [`NotResumedReason`], never
//! a partial replay. Sessions and buffers live in a [`SessionStore`] (in
//! memory by default) so several nodes can share them.
//!
//! **Client side**, [`ResilientClient`] (tokio-tungstenite) tracks the last
//! seq it received, reconnects with jittered backoff on any loss, resumes,
//! and drops duplicates by seq.
//!
//! **The legacy handler** [`WebSocketReconnectionHandler`] retries a lost
//! connection with exponential backoff and jitter ([`Backoff`]), one attempt
//! in flight per session, and replays buffered frames to the new connection.
//!
//! ## Example
//!
//! ```
//! use serde_json::json;
//! use wsc_core::{MessageType, WebSocketMessage};
//! use wsc_reconnection::{ResumeOutcome, ResumeRequest, SessionConfig, SessionRegistry};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let registry = SessionRegistry::new(SessionConfig::default());
//! let mut first = registry.open("alice").await?;
//! for t in [MessageType::AgentStarted, MessageType::AgentThinking, MessageType::AgentCompleted] {
//!     registry.publish(&first.session_id, WebSocketMessage::new(t, json!({}))).await?;
//! }
//! // The client read seq 1, then lost its connection.
//! assert_eq!(first.frames.recv().await.unwrap().seq(), Some(1));
//! registry.detach(&first.session_id, first.attachment).await?;
//!
//! let request = ResumeRequest {
//!     session_id: first.session_id.clone(),
//!     resume_token: first.resume_token.clone(),
//!     last_seq: 1,
//! };
//! match registry.resume("alice", &request).await? {
//!     ResumeOutcome::Resumed { replay, .. } => {
//!         let seqs: Vec<_> = replay.iter().map(|m| m.seq().unwrap()).collect();
//!         assert_eq!(seqs, [2, 3]);
//!     }
//!     ResumeOutcome::NotResumed { reason } => panic!("not resumed: {reason}"),
//! }
//! // Another user cannot resume it, even with the token.
//! assert!(matches!(
//!     registry.resume("mallory", &request).await?,
//!     ResumeOutcome::NotResumed { .. }
//! ));
//! # Ok::<(), wsc_reconnection::SessionError>(())
//! # }).unwrap();
//! ```
#![forbid(unsafe_code)]

mod backoff;
mod buffer;
mod client;
mod error;
mod handler;
mod live;
mod query;
mod registry;
mod store;
mod token;

pub use backoff::{Backoff, Jitter, backoff_ceiling};
pub use buffer::{
    BufferLimits, BufferedFrame, OverflowPolicy, PushOutcome, ReplayBuffer, ReplayGap, is_critical,
};
pub use client::{ClientConfig, ClientEvent, ClientStats, ConnectionOutcome, ResilientClient};
pub use error::{SessionError, StoreError};
pub use handler::{
    MaxRetriesExceededException, MessageBuffer, ReconnectTransport, ReconnectionConfig,
    ReconnectionError, ReconnectionMetrics, ReconnectionPhase, ReconnectionSession,
    ReconnectionState, SessionRegistration, TransportError, WebSocketReconnectionHandler,
};
pub use live::{Detached, LiveFrames};
pub use query::{MAX_RESUME_TOKEN_BYTES, MAX_SESSION_ID_BYTES, ResumeQueryError};
pub use registry::{
    Attached, CATCH_UP_CONCURRENCY, NotResumedReason, ResumeOutcome, ResumeRequest, SessionConfig,
    SessionRegistry, SessionStart,
};
pub use store::{Appended, MemorySessionStore, RECENT_MESSAGE_IDS, SessionRecord, SessionStore};
pub use token::{TokenSecret, new_session_id};

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
