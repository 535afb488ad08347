//! The legacy event-monitor behaviours, through the facade's legacy names.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use websocket_core::event_monitor::{
    AgentSession, ChatEventMonitor, EventMetrics, EventMonitorConfig, EventMonitorError,
    EventTracker, EventValidationError, HealthReport, HealthStatus, MissingCriticalEventError,
    WebSocketEventMonitor,
};
use websocket_core::time::{Clock, ManualClock, SharedClock};
use websocket_core::types::{MessageType, WebSocketMessage};

fn event(t: MessageType) -> WebSocketMessage {
    WebSocketMessage::new(
        t,
        json!({"run_id": "run-1", "agent_name": "triage", "tool_name": "search"}),
    )
}

fn monitor() -> (ChatEventMonitor, ManualClock) {
    let clock = ManualClock::default();
    let shared: SharedClock = clock.shared();
    (
        ChatEventMonitor::with_clock(EventMonitorConfig::default(), shared),
        clock,
    )
}

#[tokio::test]
async fn tracking_a_session_creates_a_tracker() {
    let (m, clock) = monitor();
    let session = AgentSession::new("user-1")
        .with_thread_id("thread-1")
        .with_run_id("run-1")
        .with_agent_name("triage");
    m.start_session_tracking("s1", session).await;
    assert_eq!(m.session_count(), 1);
    let t: EventTracker = m.tracker("s1").unwrap();
    assert_eq!(t.user_id, "user-1");
    assert_eq!(t.thread_id.as_deref(), Some("thread-1"));
    assert_eq!(t.agent_name.as_deref(), Some("triage"));
    assert_eq!(t.started_at, clock.now());
    assert!(t.events_received.is_empty() && !t.is_complete && !t.is_timeout);
}

#[tokio::test]
async fn recording_the_five_critical_events_completes_the_run() {
    let (m, _) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    for t in MessageType::CRITICAL_AGENT_EVENTS {
        m.record_event("s1", event(t)).await.unwrap();
    }
    let t = m.tracker("s1").unwrap();
    assert_eq!(t.events_received.len(), 5);
    assert_eq!(
        t.events_received
            .iter()
            .map(|e| e.message_type)
            .collect::<Vec<_>>(),
        MessageType::CRITICAL_AGENT_EVENTS.to_vec()
    );
    assert!(t.is_complete && t.reached_completion);
    assert_eq!(m.validate_session_completion("s1").await, Ok(true));
}

/// The legacy monitor keeps a run's whole events after it ended (the
/// legacy `events_received`); `keep_payloads_after_end: Some(false)` keeps
/// compact records instead.
#[tokio::test]
async fn an_ended_run_keeps_its_payloads_unless_told_not_to() {
    for keep in [None, Some(true), Some(false)] {
        let m = ChatEventMonitor::with_clock(
            EventMonitorConfig {
                keep_payloads_after_end: keep,
                ..EventMonitorConfig::default()
            },
            ManualClock::default().shared(),
        );
        m.start_session_tracking("s1", AgentSession::new("user-1"))
            .await;
        let sent: Vec<WebSocketMessage> = MessageType::CRITICAL_AGENT_EVENTS
            .into_iter()
            .map(event)
            .collect();
        for e in &sent {
            m.record_event("s1", e.clone()).await.unwrap();
        }
        let t = m.tracker("s1").unwrap();
        assert!(t.is_complete);
        if keep == Some(false) {
            assert!(t.payloads_dropped);
            assert!(t.events_received.iter().all(|e| e.payload == json!({})));
        } else {
            assert_eq!(m.config().keep_payloads_after_end, Some(true));
            assert!(!t.payloads_dropped);
            assert_eq!(t.events_received, sent, "keep {keep:?}");
        }
    }
}

#[tokio::test]
async fn missing_events_are_named() {
    let (m, _) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    for t in [
        MessageType::AgentStarted,
        MessageType::ToolExecuting,
        MessageType::AgentCompleted,
    ] {
        m.record_event("s1", event(t)).await.unwrap();
    }
    let err = m.validate_session_completion("s1").await.unwrap_err();
    match &err {
        EventValidationError::MissingCriticalEvents(MissingCriticalEventError { missing }) => {
            assert_eq!(
                missing,
                &[MessageType::AgentThinking, MessageType::ToolCompleted]
            );
        }
        other => panic!("expected missing events, got {other}"),
    }
    let text = err.to_string();
    assert_eq!(
        text,
        "missing critical events: AGENT_THINKING, TOOL_COMPLETED"
    );
}

#[tokio::test]
async fn wrong_order_is_detected_and_still_stored() {
    let (m, _) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    for t in [
        MessageType::AgentStarted,
        MessageType::AgentThinking,
        MessageType::ToolCompleted, // before its tool_executing
        MessageType::ToolExecuting,
        MessageType::AgentCompleted,
    ] {
        m.record_event("s1", event(t)).await.unwrap();
    }
    assert_eq!(m.tracker("s1").unwrap().events_received.len(), 5);
    let err = m.validate_session_completion("s1").await.unwrap_err();
    assert!(matches!(err, EventValidationError::OrderViolation { .. }));
    assert!(err.to_string().contains("event order"), "{err}");
    assert!(!m.silent_failures().is_empty());
}

/// The legacy test reads: record a run that reached `agent_completed`
/// without every critical event, validate, and the tracker is not complete.
#[tokio::test]
async fn an_incomplete_run_is_not_complete() {
    let (m, _) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    for t in [
        MessageType::AgentStarted,
        MessageType::ToolExecuting,
        MessageType::ToolCompleted,
        MessageType::AgentCompleted, // agent_thinking never came
    ] {
        m.record_event("s1", event(t)).await.unwrap();
    }
    let before = m.tracker("s1").unwrap();
    assert!(!before.is_complete, "missing agent_thinking");
    assert!(before.reached_completion);
    let err = m.validate_session_completion("s1").await.unwrap_err();
    assert_eq!(err.to_string(), "missing critical events: AGENT_THINKING");
    let after = m.tracker("s1").unwrap();
    assert!(!after.is_complete && after.reached_completion);
    // The same error again: validation changed nothing.
    assert_eq!(m.validate_session_completion("s1").await, Err(err));
}

/// The legacy test reads: record a misordered run, validate, and the
/// tracker is not complete.
#[tokio::test]
async fn a_misordered_run_is_not_complete() {
    let (m, _) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    for t in [
        MessageType::AgentThinking, // before agent_started
        MessageType::AgentStarted,
        MessageType::ToolExecuting,
        MessageType::ToolCompleted,
        MessageType::AgentCompleted,
    ] {
        m.record_event("s1", event(t)).await.unwrap();
    }
    assert!(!m.tracker("s1").unwrap().is_complete);
    let err = m.validate_session_completion("s1").await.unwrap_err();
    assert!(matches!(err, EventValidationError::OrderViolation { .. }));
    let t = m.tracker("s1").unwrap();
    assert!(!t.is_complete && t.reached_completion);
    assert_eq!(m.validate_session_completion("s1").await, Err(err));

    // A run still going is not complete either; a valid one is.
    m.start_session_tracking("s2", AgentSession::new("user-1"))
        .await;
    m.record_event("s2", event(MessageType::AgentStarted))
        .await
        .unwrap();
    let t = m.tracker("s2").unwrap();
    assert!(!t.is_complete && !t.reached_completion);
}

#[tokio::test]
async fn timings_are_in_order_with_latencies() {
    let (m, clock) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    for (i, t) in MessageType::CRITICAL_AGENT_EVENTS.into_iter().enumerate() {
        clock.advance(Duration::from_millis(10 * (i as u64 + 1)));
        m.record_event("s1", event(t)).await.unwrap();
    }
    let metrics: EventMetrics = m.get_session_metrics("s1").await.unwrap();
    assert_eq!(metrics.session_id, "s1");
    assert_eq!(metrics.total_events, 5);
    assert_eq!(metrics.session_duration_ms, 150.0);
    let types: Vec<_> = metrics.event_timings.iter().map(|e| e.event_type).collect();
    assert_eq!(types, MessageType::CRITICAL_AGENT_EVENTS.to_vec());
    assert!(
        metrics
            .event_timings
            .windows(2)
            .all(|w| w[0].timestamp < w[1].timestamp)
    );
    let latencies: Vec<_> = metrics.event_timings.iter().map(|e| e.latency_ms).collect();
    assert_eq!(
        latencies,
        [None, Some(20.0), Some(30.0), Some(40.0), Some(50.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_concurrent_sessions_stay_separate() {
    let m = Arc::new(WebSocketEventMonitor::new(EventMonitorConfig::default()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("s{i}");
            m.start_session_tracking(&id, AgentSession::new(format!("user-{i}")))
                .await;
            let events: &[MessageType] = if i == 1 {
                &[MessageType::AgentStarted, MessageType::AgentThinking]
            } else {
                &MessageType::CRITICAL_AGENT_EVENTS
            };
            for t in events {
                m.record_event(&id, event(*t)).await.unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(m.session_count(), 3);
    assert_eq!(m.validate_session_completion("s0").await, Ok(true));
    assert!(m.validate_session_completion("s1").await.is_err());
    assert_eq!(m.validate_session_completion("s2").await, Ok(true));
    assert_eq!(m.tracker("s1").unwrap().user_id, "user-1");
}

#[tokio::test]
async fn cleanup_removes_completed_sessions() {
    let (m, clock) = monitor();
    for id in ["done", "running"] {
        m.start_session_tracking(id, AgentSession::new("user-1"))
            .await;
    }
    for t in MessageType::CRITICAL_AGENT_EVENTS {
        m.record_event("done", event(t)).await.unwrap();
    }
    m.record_event("running", event(MessageType::AgentStarted))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        m.cleanup_completed_sessions(Duration::from_secs(1)).await,
        1
    );
    assert_eq!(m.session_count(), 1);
    assert!(m.tracker("running").is_some());
}

#[tokio::test]
async fn timeout_is_checked_and_marked() {
    let (m, clock) = monitor();
    m.start_session_tracking("s1", AgentSession::new("user-1"))
        .await;
    m.record_event("s1", event(MessageType::AgentStarted))
        .await
        .unwrap();
    assert!(!m.check_session_timeout("s1", Duration::from_secs(30)).await);
    clock.advance(Duration::from_secs(45));
    assert!(m.check_session_timeout("s1", Duration::from_secs(30)).await);
    assert!(m.mark_session_timeout("s1").await);
    assert!(m.tracker("s1").unwrap().is_timeout);
}

#[tokio::test]
async fn health_of_an_empty_monitor_is_healthy() {
    let (m, _) = monitor();
    let report: HealthReport = m.check_health().await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(report.status.as_str(), "healthy");
}

#[tokio::test]
async fn unknown_session_is_an_error() {
    let (m, _) = monitor();
    let err = m
        .record_event("nope", event(MessageType::AgentStarted))
        .await;
    assert!(matches!(err, Err(EventMonitorError::UnknownSession(id)) if id == "nope"));
}

/// The legacy package's signatures, called as legacy code calls them.
#[allow(dead_code, clippy::type_complexity)]
fn contract_compiles(m: &ChatEventMonitor) {
    let _: fn(EventMonitorConfig) -> ChatEventMonitor = ChatEventMonitor::new;
    let _: fn(EventMonitorConfig, SharedClock) -> ChatEventMonitor = ChatEventMonitor::with_clock;
    let _: &EventMonitorConfig = m.config();
    let _: usize = m.session_count();
    let _: Option<EventTracker> = m.tracker("s");
    let EventMonitorConfig {
        track_critical_events: _,
        validate_event_order: _,
        metrics_enabled: _,
        auto_cleanup_enabled: _,
        ..
    } = EventMonitorConfig::default();
    fn is_send<T: Send>(_: &T) {}
    is_send(&m.start_session_tracking("s", AgentSession::new("u")));
    is_send(&m.record_event("s", event(MessageType::Ping)));
    is_send(&m.validate_session_completion("s"));
    is_send(&m.get_session_metrics("s"));
    is_send(&m.cleanup_completed_sessions(Duration::ZERO));
    is_send(&m.check_session_timeout("s", Duration::ZERO));
    is_send(&m.mark_session_timeout("s"));
    is_send(&m.check_health());
    fn shareable<T: Send + Sync>() {}
    shareable::<ChatEventMonitor>();
}
