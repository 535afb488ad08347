//! # wsc-core
//!
//! The types every wsc crate shares: the [`MessageType`] of each frame, the
//! [`WebSocketMessage`] itself, time ([`Timestamp`], the injectable
//! [`Clock`], [`SystemClock`] and the test [`ManualClock`]), and the wire
//! codec ([`parse_client_frame`], [`serialize`]) with the protocol's
//! [`ErrorCode`]s and [`CloseCode`]s, and the protocol's control frames as
//! types ([`ConnectionEstablished`], [`ErrorFrame`], [`StartAgent`], [`StopAgent`],
//! [`Ack`], [`HandshakeRefusal`]; see [`Frame`]), and [`WireFrame`]: a
//! frame serialized once, whose text the server's buffer, store and every
//! reader share; [`ClientFrame`]: a client's frame parsed once into the
//! [`ClientRequest`] it makes, with every bound checked. [`StoreError`] is
//! any shared store's failure; [`RunClaim`], [`RunWrite`], [`RunAppended`],
//! [`RunRead`], [`CancelAsked`] and [`RunWakeup`] are what a store shared
//! for AG-UI runs' logs answers.
//!
//! It is deliberately small (serde, serde_json, thiserror, and tokio for
//! [`SystemClock::sleep`] and the clock-driven [`BackgroundTask`] every
//! component's sweeper uses) so that every component crate can depend on it
//! without pulling in a server.
//!
//! ## Wire format
//!
//! One UTF-8 JSON object per text frame:
//! `{"type": T, "payload": {...}, "message_id"?: str, "timestamp"?: unix-seconds,
//! "user_id"?: str, "thread_id"?: str, "seq"?: int}`.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use wsc_core::{parse_client_frame, serialize, Clock, ManualClock, MessageType, WebSocketMessage};
//!
//! // Time is injected: tests drive a ManualClock instead of sleeping.
//! let clock = ManualClock::default();
//! let sent_at = clock.now();
//! clock.advance(Duration::from_millis(40));
//!
//! // Build a message, put it on the wire, read it back.
//! let msg = WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi"}))
//!     .with_message_id("m-1")
//!     .with_timestamp(sent_at);
//! let back = parse_client_frame(&serialize(&msg)).expect("a valid client frame");
//! assert_eq!(back, msg);
//! assert_eq!(clock.now().duration_since(sent_at), Duration::from_millis(40));
//!
//! // Bad input is a typed error with its protocol code, never a panic.
//! let err = parse_client_frame(r#"{"type": "tool_completed"}"#).unwrap_err();
//! assert_eq!(err.code(), "not_allowed");
//! ```
#![forbid(unsafe_code)]

mod ag_ui;
mod client;
mod codec;
mod message;
mod message_type;
mod protocol;
mod run_log;
mod store;
mod task;
mod time;
mod wire;

pub use ag_ui::{AgUiClientFrame, JoinRun, RunAgent, RunInputError};
pub use client::{ClientFrame, ClientFrameError, ClientRequest};
pub use codec::{
    CloseCode, DEFAULT_MAX_FRAME_BYTES, ErrorCode, FrameError, MAX_CLIENT_ID_BYTES,
    parse_client_frame, parse_client_frame_with_limit, parse_server_frame, serialize,
};
pub use message::WebSocketMessage;
pub use message_type::{Direction, MessageType, UnknownMessageType};
pub use protocol::{
    Ack, ConnectionEstablished, ErrorFrame, Frame, HandshakeRefusal, LIMIT_RUNS_IN_FLIGHT,
    MAX_NAME_CHARS, MAX_STEP_DELAY_MS, MAX_TOOLS, ProtocolError, StartAgent, StopAgent,
};
pub use run_log::{CancelAsked, RunAppended, RunClaim, RunRead, RunWakeup, RunWrite};
pub use store::StoreError;
pub use task::BackgroundTask;
pub use time::{Clock, ManualClock, SharedClock, SystemClock, Timestamp, TokioClock};
pub use wire::{MAX_WIRE_SEQ, WireFrame, WireFrameError};

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
