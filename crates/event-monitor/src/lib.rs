//! # wsc-event-monitor
//!
//! Tracks every agent run streamed over a WebSocket and proves it delivered
//! its lifecycle events (`agent_started`, `agent_thinking`, `tool_executing`,
//! `tool_completed`, `agent_completed`) completely and in order.
//!
//! **Status:** the crate is being built; this release exposes no API yet.
//! The public shape to come:
//!
//! - `EventMonitor` (legacy names `ChatEventMonitor`, `WebSocketEventMonitor`),
//!   one tracker per run keyed by session/run id in a `DashMap`, with
//!   `new(config)` and `with_clock(config, clock)`;
//! - live order checking (start first, thinking and tools inside the run, each
//!   `tool_completed` matching an open `tool_executing`, completion last) with
//!   violations kept as bounded "silent failures";
//! - `validate_session_completion`, per-run timing metrics, timeouts, stale
//!   runs, stuck tools, cleanup, and `check_health` rolling all of it up into
//!   `HealthStatus` healthy / warning / critical / failed;
//! - one `thiserror` error enum for the crate.
#![forbid(unsafe_code)]
