//! # websocket-core
//!
//! The wsc facade. Code written against the old Python package
//! `netra_backend.app.websocket_core` finds the same module paths, type names
//! and method names here; new code can use the focused crates directly, which
//! the facade also re-exports whole.
//!
//! | module | from | what |
//! |---|---|---|
//! | [`types`] | `wsc-core` | `MessageType`, `WebSocketMessage`, the codec |
//! | [`time`] | `wsc-core` | `Timestamp`, `Clock`, `SystemClock`, `ManualClock` |
//! | [`event_monitor`] | `wsc-event-monitor` | `ChatEventMonitor`, run validation, health |
//! | [`rate_limiter`] | `wsc-rate-limiter` | `WebSocketRateLimiter`, `AdaptiveRateLimiter`, `RateLimiter` |
//! | [`performance_monitor_core`] | `wsc-perf-monitor` | `WebSocketPerformanceMonitor`, alerts, reports |
//! | [`reconnection_handler`] | `wsc-reconnection` | `WebSocketReconnectionHandler`, sessions, replay |
//!
//! The component crates are synchronous where nothing waits; the legacy
//! types here keep the legacy `async` methods as thin wrappers
//! ([`event_monitor::ChatEventMonitor`],
//! [`performance_monitor_core::WebSocketPerformanceMonitor`],
//! [`rate_limiter::WebSocketRateLimiter`],
//! [`rate_limiter::AdaptiveRateLimiter`], [`rate_limiter::check_rate_limit`],
//! [`reconnection_handler::WebSocketReconnectionHandler`]), and reach
//! everything else of the modern type through `Deref`.
//!
//! The component crates are also re-exported whole: [`wsc_core`],
//! [`events`] (= `wsc_event_monitor`), [`rate_limit`] (= `wsc_rate_limiter`),
//! [`perf`] (= `wsc_perf_monitor`) and [`resume`] (= `wsc_reconnection`).
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use websocket_core::time::{Clock, ManualClock};
//! use websocket_core::types::{parse_client_frame, serialize, MessageType, WebSocketMessage};
//!
//! let clock = ManualClock::default();
//! let msg = WebSocketMessage::new(MessageType::StartAgent, json!({"agent_name": "triage"}))
//!     .with_user_id("user-1")
//!     .with_timestamp(clock.now());
//!
//! // The wire value and the legacy name of a type.
//! assert_eq!(msg.message_type.as_str(), "start_agent");
//! assert_eq!(msg.message_type.legacy_name(), "START_AGENT");
//! // Legacy alias strings still parse.
//! assert_eq!("execute_agent".parse::<MessageType>(), Ok(MessageType::StartAgent));
//!
//! // Round trip through the codec.
//! assert_eq!(parse_client_frame(&serialize(&msg)), Ok(msg));
//!
//! // Time is injected; a ManualClock's sleep advances it at once.
//! let before = clock.now();
//! # tokio_test_block_on(async {
//! clock.sleep(Duration::from_secs(2)).await;
//! # });
//! assert_eq!(clock.now().duration_since(before), Duration::from_secs(2));
//! assert_eq!(clock.sleeps(), vec![Duration::from_secs(2)]);
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
#![forbid(unsafe_code)]

mod legacy_events;
mod legacy_limits;
mod legacy_perf;
mod legacy_reconnect;

pub use wsc_core;
pub use wsc_event_monitor as events;
pub use wsc_perf_monitor as perf;
pub use wsc_rate_limiter as rate_limit;
pub use wsc_reconnection as resume;

/// Message types, the message struct and the wire codec (legacy
/// `websocket_core.types`).
pub mod types {
    pub use wsc_core::{
        CloseCode, DEFAULT_MAX_FRAME_BYTES, Direction, ErrorCode, FrameError, MessageType,
        UnknownMessageType, WebSocketMessage, parse_client_frame, parse_client_frame_with_limit,
        parse_server_frame, serialize,
    };
}

/// Time: timestamps and injectable clocks.
pub mod time {
    pub use wsc_core::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
}

/// Agent-run event tracking and validation (legacy
/// `websocket_core.event_monitor`).
///
/// What a legacy caller sees: [`EventTracker::is_complete`](crate::event_monitor::EventTracker::is_complete) means
/// *validated* complete — the run ended with `agent_completed` **and**
/// every critical event arrived in an order that broke no rule. A run that
/// reached `agent_completed` but misses critical events, or broke the
/// order, is not complete, before and after
/// [`validate_session_completion`](crate::event_monitor::ChatEventMonitor::validate_session_completion)
/// (which returns the same error each time and changes nothing).
/// [`EventTracker::reached_completion`](crate::event_monitor::EventTracker::reached_completion) says only that `agent_completed`
/// arrived.
///
/// ```
/// use serde_json::json;
/// use websocket_core::event_monitor::{AgentSession, ChatEventMonitor, EventMonitorConfig};
/// use websocket_core::types::{MessageType, WebSocketMessage};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let monitor = ChatEventMonitor::new(EventMonitorConfig::default());
/// monitor.start_session_tracking("run-1", AgentSession::new("alice")).await;
/// for t in [MessageType::AgentStarted, MessageType::AgentCompleted] {
///     monitor.record_event("run-1", WebSocketMessage::new(t, json!({}))).await.unwrap();
/// }
/// let tracker = monitor.tracker("run-1").unwrap();
/// assert!(tracker.reached_completion && !tracker.is_complete);
/// assert!(monitor.validate_session_completion("run-1").await.is_err());
/// assert!(!monitor.tracker("run-1").unwrap().is_complete);
/// # });
/// ```
pub mod event_monitor {
    pub use crate::legacy_events::{ChatEventMonitor, WebSocketEventMonitor};
    pub use wsc_event_monitor::{
        AgentSession, EventMetrics, EventMonitor, EventMonitorConfig, EventMonitorError,
        EventTiming, EventTracker, EventType, EventValidationError, HealthReport, HealthStatus,
        LatencySummary, MissingCriticalEventError, MonitorEvent, OrderViolation, SilentFailure,
        SweepReport, SweeperHandle, ViolationKind,
    };
}

/// Per-user message windows, connection caps and backoff (legacy
/// `websocket_core.rate_limiter`).
pub mod rate_limiter {
    pub use crate::legacy_limits::{AdaptiveRateLimiter, WebSocketRateLimiter, check_rate_limit};
    pub use wsc_rate_limiter::{
        CleanupHandle, ConnectionPermit, EndpointRateLimiter, FailurePolicy, LimitKind,
        MemoryStore, RateLimitConfig, RateLimitExceeded, RateLimitExceededException,
        RateLimitStore, StoreError, UserRateLimitState, WindowDecision, WindowLimit, WindowRequest,
        normalize_identifier,
    };

    /// Legacy name of [`EndpointRateLimiter`]: limits keyed by (user, endpoint).
    pub type RateLimiter = EndpointRateLimiter;
}

/// Per-connection latency, throughput, alerts and reports (legacy
/// `websocket_core.performance_monitor_core`).
pub mod performance_monitor_core {
    pub use crate::legacy_perf::WebSocketPerformanceMonitor;
    pub use wsc_perf_monitor::{
        AlertEvent, AlertSeverity, AlertType, ConnectionInfo, EvaluatorHandle,
        HISTOGRAM_RELATIVE_ERROR, LatencyMeasurement, MonitorCollector, PerformanceAlert,
        PerformanceMetrics, PerformanceMonitorConfig, PerformanceOutlier, PerformanceRating,
        PerformanceReport, PerformanceThresholds, ProcessCollector, ProcessSampler,
        ResourceSampler, ResourceUsage, SystemMetrics, ThroughputMetrics,
    };

    /// Legacy name of [`WebSocketPerformanceMonitor`] (the synchronous
    /// monitor is `websocket_core::perf::PerformanceMonitor`).
    pub type PerformanceMonitor = WebSocketPerformanceMonitor;
}

/// Reconnection with backoff, resumable sessions and replay (legacy
/// `websocket_core.reconnection_handler`).
///
/// What a legacy caller sees:
/// - **A lost connection means reconnecting.** After
///   [`handle_connection_lost`](crate::reconnection_handler::WebSocketReconnectionHandler::handle_connection_lost)
///   the session is inactive and its
///   [`ReconnectionState`](crate::reconnection_handler::ReconnectionState) has
///   `is_reconnecting == true`, `retry_count == 0`, `lost_reason ==
///   Some(reason)`, `failed_permanently == false` and `reconnected_at ==
///   None`. It stays reconnecting until a success, or until the last try of
///   [`attempt_reconnection`](crate::resume::WebSocketReconnectionHandler::attempt_reconnection)
///   fails (then `failed_permanently`). A loss does not count as an
///   attempt: the `attempt_reconnection` that follows runs; a second one
///   while the first is in flight returns `Ok(false)` without touching the
///   transport.
/// - **[`handle_successful_reconnection`](crate::resume::WebSocketReconnectionHandler::handle_successful_reconnection)
///   is a success** like a successful retry: the session gets the new
///   `connection_id`, is active, `reconnected_at` is now,
///   `reconnection_count` grows by one, `total_downtime` by the time since
///   the loss, the metrics count the reconnection, and the state leaves
///   reconnecting; then the buffered frames are replayed.
pub mod reconnection_handler {
    pub use crate::legacy_reconnect::WebSocketReconnectionHandler;
    pub use wsc_reconnection::{
        Attached, Backoff, BufferLimits, Jitter, MaxRetriesExceededException, MessageBuffer,
        NotResumedReason, OverflowPolicy, ReconnectTransport, ReconnectionConfig,
        ReconnectionError, ReconnectionMetrics, ReconnectionPhase, ReconnectionSession,
        ReconnectionState, ReplayBuffer, ResumeOutcome, ResumeRequest, SessionConfig,
        SessionRegistration, SessionRegistry, TransportError,
    };
}

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
