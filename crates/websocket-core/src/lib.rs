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
pub mod event_monitor {
    pub use wsc_event_monitor::{
        AgentSession, ChatEventMonitor, EventMetrics, EventMonitor, EventMonitorConfig,
        EventMonitorError, EventTiming, EventTracker, EventType, EventValidationError,
        HealthReport, HealthStatus, LatencySummary, MissingCriticalEventError, MonitorEvent,
        OrderViolation, SilentFailure, SweepReport, SweeperHandle, ViolationKind,
        WebSocketEventMonitor,
    };
}

/// Per-user message windows, connection caps and backoff (legacy
/// `websocket_core.rate_limiter`).
pub mod rate_limiter {
    pub use wsc_rate_limiter::{
        AdaptiveRateLimiter, CleanupHandle, ConnectionPermit, EndpointRateLimiter, FailurePolicy,
        LimitKind, MemoryStore, RateLimitConfig, RateLimitExceeded, RateLimitExceededException,
        RateLimitStore, StoreError, UserRateLimitState, WebSocketRateLimiter, WindowDecision,
        WindowLimit, WindowRequest, check_rate_limit, normalize_identifier,
    };

    /// Legacy name of [`EndpointRateLimiter`]: limits keyed by (user, endpoint).
    pub type RateLimiter = EndpointRateLimiter;
}

/// Per-connection latency, throughput, alerts and reports (legacy
/// `websocket_core.performance_monitor_core`).
pub mod performance_monitor_core {
    pub use wsc_perf_monitor::{
        AlertEvent, AlertSeverity, AlertType, ConnectionInfo, EvaluatorHandle,
        HISTOGRAM_RELATIVE_ERROR, LatencyMeasurement, PerformanceAlert, PerformanceMetrics,
        PerformanceMonitor, PerformanceMonitorConfig, PerformanceOutlier, PerformanceRating,
        PerformanceReport, PerformanceThresholds, ProcessSampler, ResourceSampler, ResourceUsage,
        SystemMetrics, ThroughputMetrics, WebSocketPerformanceMonitor,
    };
}

/// Reconnection with backoff, resumable sessions and replay (legacy
/// `websocket_core.reconnection_handler`).
pub mod reconnection_handler {
    pub use wsc_reconnection::{
        Attached, Backoff, BufferLimits, Jitter, MaxRetriesExceededException, MessageBuffer,
        NotResumedReason, OverflowPolicy, ReconnectTransport, ReconnectionConfig,
        ReconnectionError, ReconnectionMetrics, ReconnectionPhase, ReconnectionSession,
        ReconnectionState, ReplayBuffer, ResumeOutcome, ResumeRequest, SessionConfig,
        SessionRegistration, SessionRegistry, TransportError, WebSocketReconnectionHandler,
    };
}
