//! # wsc-event-monitor
//!
//! Tracks every agent run streamed over a WebSocket and proves it delivered
//! its lifecycle events completely and in order, so that nothing goes
//! silently missing.
//!
//! An [`EventMonitor`] keeps one tracker per run. Its methods are
//! synchronous (none waits on anything); the facade crate `websocket-core`
//! wraps it as the legacy, async `ChatEventMonitor`. Each recorded event
//! is checked live against the order rules; a broken rule is kept as a
//! "silent failure" and published to [`subscribe`](EventMonitor::subscribe)rs.
//!
//! ## Order rules
//!
//! 1. `agent_started` is the first event of a run; a second one is a violation.
//! 2. `agent_thinking` and tool events only come between start and completion.
//! 3. Every `tool_completed` closes an open `tool_executing`: the one with the
//!    same `payload.tool_call_id` if the completion has one, else the one with
//!    the same `payload.tool_name`, else the oldest open one.
//! 4. `agent_completed` is last, no tool may still be open, nothing follows.
//! 5. `error` / `agent_error` ends the run as failed.
//!
//! The legacy synonyms `agent_start`, `tool_execute`, `tool_complete` and
//! `agent_complete` count as the events they stand for. A run that never
//! ends is marked timed out by [`sweep`](EventMonitor::sweep) (or the
//! background [`spawn_sweeper`](EventMonitor::spawn_sweeper)).
//! [`check_health`](EventMonitor::check_health) rolls stale runs, stuck
//! tools, violations and inter-event latency up into a [`HealthStatus`].
//!
//! ## AG-UI's rules
//!
//! Beside the legacy order rules, [`AgUiRules`] checks an AG-UI run's
//! events (AG-UI 1.0's 31 types, [`AgUiEventType`]) as `@ag-ui/client`
//! verifies them; each broken rule is an [`AgUiViolation`].
//!
//! ## Bounds
//!
//! At most `max_tracked_runs` runs (the run that ended first is evicted,
//! else the least recently active), `max_events_per_run` stored events and
//! violations per run (later ones are counted and checked, not stored), and
//! `max_silent_failures` kept failures. See [`EventMonitorConfig`].
//!
//! ## Example
//!
//! ```
//! use serde_json::json;
//! use wsc_core::{ManualClock, MessageType, WebSocketMessage};
//! use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig, EventValidationError};
//!
//! let clock = ManualClock::default();
//! let monitor = EventMonitor::with_clock(EventMonitorConfig::default(), clock.shared());
//! monitor.start_session_tracking("run-1", AgentSession::new("user-1"));
//!
//! for t in [MessageType::AgentStarted, MessageType::AgentThinking, MessageType::ToolExecuting] {
//!     let msg = WebSocketMessage::new(t, json!({"tool_name": "search"}));
//!     monitor.record_event("run-1", msg)?;
//! }
//! // Two critical events never arrived.
//! let err = monitor.validate_session_completion("run-1").unwrap_err();
//! assert_eq!(err.to_string(), "missing critical events: TOOL_COMPLETED, AGENT_COMPLETED");
//!
//! for t in [MessageType::ToolCompleted, MessageType::AgentCompleted] {
//!     let msg = WebSocketMessage::new(t, json!({"tool_name": "search"}));
//!     monitor.record_event("run-1", msg)?;
//! }
//! assert_eq!(monitor.validate_session_completion("run-1"), Ok(true));
//!
//! // An event after completion is a violation, recorded live.
//! monitor.record_event("run-1", WebSocketMessage::new(MessageType::AgentThinking, json!({})))?;
//! assert!(matches!(
//!     monitor.validate_session_completion("run-1"),
//!     Err(EventValidationError::OrderViolation { .. })
//! ));
//! assert_eq!(monitor.silent_failures().len(), 1);
//! # Ok::<(), wsc_event_monitor::EventMonitorError>(())
//! ```
#![forbid(unsafe_code)]

mod ag_ui;
mod config;
mod error;
mod monitor;
mod report;
mod run;

pub use ag_ui::{
    AgUiChecked, AgUiEventType, AgUiOpen, AgUiRules, AgUiViolation, MAX_OPEN_PER_KIND,
};
pub use config::{AgentSession, EventMonitorConfig, HealthScope};
pub use error::{
    EventMonitorError, EventValidationError, MissingCriticalEventError, OrderViolation,
    SilentFailure, ViolationKind,
};
pub use monitor::{EventMonitor, SweeperHandle};
pub use report::{
    EventMetrics, EventTiming, EventTracker, HealthReport, HealthStatus, LatencySummary,
    MonitorEvent, SweepReport,
};
pub use run::EventType;

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
