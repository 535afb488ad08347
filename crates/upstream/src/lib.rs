//! # wsc-upstream
//!
//! Upstream agent backends for wsc: what a backend's stream means in wsc
//! lifecycle frames. [`AgUiMapper`] turns one run's AG-UI events (as a
//! Python, TypeScript or any AG-UI backend streams them over SSE) into the
//! frames the gateway numbers, buffers, validates and delivers, per the
//! mapping in the project's `docs/agents.md`: tool calls assembled from
//! their argument deltas and matched by `tool_call_id` (they may
//! interleave), text as response chunks, state and custom events as
//! progress, and exactly one terminal frame per run whatever the backend
//! does. [`WscMapper`] reads backends that already stream wsc frames; both
//! sit behind [`UpstreamMapper`], picked by [`AgentProtocol`].
//! [`StreamReader`] reads a backend's response body, chunk by chunk,
//! as Server-Sent Events or NDJSON. Both are pure (no I/O, no clock) and
//! bounded in memory per run.
//!
//! ## Example
//!
//! ```
//! use serde_json::json;
//! use wsc_core::MessageType;
//! use wsc_upstream::AgUiMapper;
//!
//! let mut run = AgUiMapper::new();
//! run.push(&json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"})).unwrap();
//! let frames = run
//!     .push(&json!({"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search"}))
//!     .unwrap();
//! assert!(frames.is_empty(), "a tool call shows once its arguments are complete");
//! run.push(&json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "{\"q\": \"rust\"}"})).unwrap();
//! let frames = run.push(&json!({"type": "TOOL_CALL_END", "toolCallId": "c1"})).unwrap();
//! assert_eq!(frames[0].message_type, MessageType::ToolExecuting);
//! assert_eq!(frames[0].payload["args"], json!({"q": "rust"}));
//!
//! // The stream stops without RUN_FINISHED: one agent_error ends the run.
//! let last = run.finish().unwrap();
//! assert_eq!(last.message_type, MessageType::AgentError);
//! assert_eq!(last.payload["code"], "upstream_error");
//! ```
#![forbid(unsafe_code)]

mod ag_ui;
mod protocol;
mod stream;

pub use ag_ui::{
    AgUiError, AgUiMapper, MAX_OPEN_TOOL_CALLS, MAX_RESULT_TEXT_BYTES, MAX_TOOL_ARGS_BYTES,
    MappedFrame,
};
pub use protocol::{AgentProtocol, UpstreamError, UpstreamMapper, WscMapper};
pub use stream::{DEFAULT_MAX_EVENT_BYTES, StreamError, StreamFormat, StreamReader};

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
