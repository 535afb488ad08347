//! EventMonitor behaviour: bounds, timeouts, health, the sweeper, concurrency.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use wsc_core::{Clock, ManualClock, MessageType as M, WebSocketMessage};
use wsc_event_monitor::{
    AgentSession, EventMonitor, EventMonitorConfig, EventMonitorError, EventValidationError,
    HealthStatus, MonitorEvent, ViolationKind,
};

fn msg(t: M) -> WebSocketMessage {
    WebSocketMessage::new(t, json!({}))
}

fn monitor(config: EventMonitorConfig) -> (Arc<EventMonitor>, ManualClock) {
    let clock = ManualClock::default();
    (
        Arc::new(EventMonitor::with_clock(config, clock.shared())),
        clock,
    )
}

async fn full_run(m: &EventMonitor, id: &str) {
    m.start_session_tracking(id, AgentSession::new("u"));
    for t in M::CRITICAL_AGENT_EVENTS {
        m.record_event(id, msg(t)).unwrap();
    }
}

#[tokio::test]
async fn unknown_run_records_nothing() {
    let (m, _) = monitor(EventMonitorConfig::default());
    let err = m.record_event("ghost", msg(M::AgentStarted));
    assert_eq!(err, Err(EventMonitorError::UnknownSession("ghost".into())));
    assert_eq!(m.session_count(), 0);
    assert!(m.tracker("ghost").is_none());
    assert_eq!(
        m.validate_session_completion("ghost"),
        Err(EventValidationError::UnknownSession("ghost".into()))
    );
    assert!(m.get_session_metrics("ghost").is_none());
    assert!(!m.mark_session_timeout("ghost"));
}

#[tokio::test]
async fn failed_runs_are_failed_not_complete() {
    let (m, _) = monitor(EventMonitorConfig::default());
    m.start_session_tracking("r", AgentSession::new("u"));
    m.record_event("r", msg(M::AgentStarted)).unwrap();
    m.record_event(
        "r",
        WebSocketMessage::new(M::Error, json!({"code": "internal", "message": "boom"})),
    )
    .unwrap();
    let t = m.tracker("r").unwrap();
    assert!(t.is_failed && !t.is_complete);
    assert_eq!(
        m.validate_session_completion("r"),
        Err(EventValidationError::RunFailed {
            session_id: "r".into(),
            reason: "boom".into()
        })
    );
}

#[tokio::test]
async fn per_run_cap_counts_but_does_not_store() {
    let (m, _) = monitor(EventMonitorConfig {
        max_events_per_run: 3,
        ..Default::default()
    });
    full_run(&m, "r").await;
    let t = m.tracker("r").unwrap();
    assert_eq!(t.events_received.len(), 3);
    assert_eq!(t.total_events, 5);
    assert!(t.events_truncated);
    // Unstored events were still checked: the run is complete and valid.
    assert_eq!(m.validate_session_completion("r"), Ok(true));
    assert_eq!(m.get_session_metrics("r").unwrap().total_events, 5);
}

#[tokio::test]
async fn eviction_takes_the_first_ended_run_then_the_least_active() {
    let (m, clock) = monitor(EventMonitorConfig {
        max_tracked_runs: 3,
        ..Default::default()
    });
    m.start_session_tracking("active-old", AgentSession::new("u"));
    clock.advance(Duration::from_secs(1));
    full_run(&m, "done-1").await;
    clock.advance(Duration::from_secs(1));
    full_run(&m, "done-2").await;
    clock.advance(Duration::from_secs(1));
    m.start_session_tracking("new-1", AgentSession::new("u"));
    assert_eq!(m.session_count(), 3);
    assert!(m.tracker("done-1").is_none(), "first ended run goes first");
    m.start_session_tracking("new-2", AgentSession::new("u"));
    assert!(m.tracker("done-2").is_none());
    // No ended run left: the least recently active goes.
    m.start_session_tracking("new-3", AgentSession::new("u"));
    assert!(m.tracker("active-old").is_none());
    assert!(m.tracker("new-3").is_some());
    assert_eq!(m.session_count(), 3);
    assert_eq!(m.check_health().evicted_runs, 3);
}

#[tokio::test]
async fn cleanup_removes_only_old_ended_runs() {
    let (m, clock) = monitor(EventMonitorConfig::default());
    full_run(&m, "old").await;
    m.start_session_tracking("running", AgentSession::new("u"));
    clock.advance(Duration::from_secs(120));
    full_run(&m, "young").await;
    assert_eq!(m.cleanup_completed_sessions(Duration::from_secs(60)), 1);
    assert!(m.tracker("old").is_none());
    assert!(m.tracker("young").is_some() && m.tracker("running").is_some());
    assert_eq!(m.cleanup_completed_sessions(Duration::ZERO), 1);
    assert_eq!(m.session_count(), 1);
}

#[tokio::test]
async fn timeouts_check_and_mark() {
    let (m, clock) = monitor(EventMonitorConfig::default());
    m.start_session_tracking("r", AgentSession::new("u"));
    m.record_event("r", msg(M::AgentStarted)).unwrap();
    assert!(!m.check_session_timeout("r", Duration::from_secs(30)));
    clock.advance(Duration::from_secs(31));
    assert!(m.check_session_timeout("r", Duration::from_secs(30)));
    assert!(!m.tracker("r").unwrap().is_timeout, "check does not mark");
    assert!(m.mark_session_timeout("r"));
    assert!(!m.mark_session_timeout("r"), "marked once");
    assert!(m.tracker("r").unwrap().is_timeout);
    // A completed run never times out.
    full_run(&m, "done").await;
    clock.advance(Duration::from_secs(3600));
    assert!(!m.check_session_timeout("done", Duration::from_secs(1)));
    assert!(!m.mark_session_timeout("done"));
}

#[tokio::test]
async fn health_rolls_up_stale_stuck_and_violations() {
    let (m, clock) = monitor(EventMonitorConfig::default());
    assert_eq!(m.check_health().status, HealthStatus::Healthy);

    full_run(&m, "ok").await;
    assert_eq!(m.check_health().status, HealthStatus::Healthy);

    // A stale run while another progresses: warning.
    m.start_session_tracking("slow", AgentSession::new("u"));
    m.record_event("slow", msg(M::AgentStarted)).unwrap();
    clock.advance(Duration::from_secs(31));
    m.start_session_tracking("fresh", AgentSession::new("u"));
    m.record_event("fresh", msg(M::AgentStarted)).unwrap();
    let h = m.check_health();
    assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
    assert_eq!(h.stale_runs, 1);
    // The 31 s gap shows in latency: avg/max/p95 over inter-event gaps.
    assert_eq!(h.latency.max_ms, 0.0);

    // A stuck tool: critical.
    m.record_event("fresh", msg(M::ToolExecuting)).unwrap();
    clock.advance(Duration::from_secs(20));
    m.record_event("fresh", msg(M::AgentThinking)).unwrap();
    clock.advance(Duration::from_secs(41));
    m.record_event("fresh", msg(M::AgentThinking)).unwrap();
    // "slow" is stale and "fresh" has a stuck tool; one run still progresses.
    m.start_session_tracking("steady", AgentSession::new("u"));
    m.record_event("steady", msg(M::AgentStarted)).unwrap();
    let h = m.check_health();
    assert_eq!(h.stuck_tools, 1);
    assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
    assert_eq!(h.latency.max_ms, 41_000.0);

    // Nothing progresses: failed.
    clock.advance(Duration::from_secs(31));
    let h = m.check_health();
    assert_eq!(h.status, HealthStatus::Failed, "{h:?}");
    assert!(!h.issues.is_empty());
}

#[tokio::test]
async fn recent_violations_warn_then_go_critical_then_age_out() {
    let (m, clock) = monitor(EventMonitorConfig::default());
    full_run(&m, "r").await;
    m.record_event("r", msg(M::AgentThinking)).unwrap();
    assert_eq!(m.check_health().status, HealthStatus::Warning);
    for _ in 0..9 {
        m.record_event("r", msg(M::AgentThinking)).unwrap();
    }
    assert_eq!(m.check_health().status, HealthStatus::Critical);
    clock.advance(Duration::from_secs(301));
    let h = m.check_health();
    assert_eq!(h.recent_silent_failures, 0);
    assert_eq!(h.total_silent_failures, 10);
    assert_eq!(h.status, HealthStatus::Healthy);
}

#[tokio::test]
async fn silent_failures_are_bounded_and_published() {
    let (m, _) = monitor(EventMonitorConfig {
        max_silent_failures: 4,
        ..Default::default()
    });
    let mut rx = m.subscribe();
    m.start_session_tracking("r", AgentSession::new("u"));
    for _ in 0..6 {
        m.record_event("r", msg(M::AgentThinking)).unwrap();
    }
    let kept = m.silent_failures();
    assert_eq!(kept.len(), 4);
    assert_eq!(kept[0].violation.index, 2, "oldest dropped first");
    assert!(kept[0].reason().contains("before agent_started"));
    match rx.try_recv().unwrap() {
        MonitorEvent::Violation(f) => {
            assert_eq!(f.session_id, "r");
            assert_eq!(f.violation.kind, ViolationKind::EventBeforeStart);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn sweep_times_out_evicts_and_reports_health_changes() {
    let (m, clock) = monitor(EventMonitorConfig {
        run_timeout: Duration::from_secs(60),
        completed_max_age: Duration::from_secs(120),
        ..Default::default()
    });
    let mut rx = m.subscribe();
    m.start_session_tracking("hung", AgentSession::new("u"));
    m.record_event("hung", msg(M::AgentStarted)).unwrap();
    clock.advance(Duration::from_secs(61));
    let report = m.sweep();
    assert_eq!(report.timed_out, 1);
    assert!(m.tracker("hung").unwrap().is_timeout);
    assert_eq!(
        rx.try_recv().unwrap(),
        MonitorEvent::RunTimedOut {
            session_id: "hung".into()
        }
    );
    assert_eq!(
        rx.try_recv().unwrap(),
        MonitorEvent::HealthChanged {
            previous: HealthStatus::Healthy,
            current: report.health
        }
    );
    clock.advance(Duration::from_secs(121));
    let report = m.sweep();
    assert_eq!(report.removed, 1);
    assert_eq!(m.session_count(), 0);
    assert_eq!(report.health, HealthStatus::Healthy);
}

#[tokio::test]
async fn background_sweeper_runs_on_the_injected_clock() {
    let (m, clock) = monitor(EventMonitorConfig {
        run_timeout: Duration::from_secs(60),
        sweep_interval: Duration::from_secs(5),
        ..Default::default()
    });
    let mut rx = m.subscribe();
    m.start_session_tracking("hung", AgentSession::new("u"));
    let start = clock.now();
    let sweeper = m.spawn_sweeper();
    // The ManualClock's sleep advances time, so the sweeper reaches the
    // timeout without any real waiting.
    let event = loop {
        match rx.recv().await.unwrap() {
            e @ MonitorEvent::RunTimedOut { .. } => break e,
            _ => continue,
        }
    };
    sweeper.stop().await;
    assert_eq!(
        event,
        MonitorEvent::RunTimedOut {
            session_id: "hung".into()
        }
    );
    let waited = clock.now().duration_since(start);
    assert!(waited > Duration::from_secs(60), "{waited:?}");
    assert!(clock.sleeps().iter().all(|d| *d == Duration::from_secs(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_do_not_interfere() {
    let (m, _) = monitor(EventMonitorConfig::default());
    let mut tasks = Vec::new();
    for i in 0..32 {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("run-{i}");
            m.start_session_tracking(&id, AgentSession::new(format!("u{i}")));
            m.record_event(&id, msg(M::AgentStarted)).unwrap();
            for k in 0..50 {
                let p = json!({"tool_call_id": format!("c{k}"), "tool_name": "search"});
                m.record_event(&id, WebSocketMessage::new(M::AgentThinking, json!({})))
                    .unwrap();
                m.record_event(&id, WebSocketMessage::new(M::ToolExecuting, p.clone()))
                    .unwrap();
                tokio::task::yield_now().await;
                m.record_event(&id, WebSocketMessage::new(M::ToolCompleted, p))
                    .unwrap();
            }
            m.record_event(&id, msg(M::AgentCompleted)).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..32 {
        let id = format!("run-{i}");
        assert_eq!(m.validate_session_completion(&id), Ok(true), "{id}");
        assert_eq!(m.tracker(&id).unwrap().total_events, 152);
    }
    assert!(m.silent_failures().is_empty());
}

#[test]
fn a_cancelled_run_is_counted_apart_and_keeps_the_monitor_healthy() {
    let (m, _) = monitor(EventMonitorConfig::default());
    for i in 0..4 {
        let id = format!("r{i}");
        m.start_session_tracking(&id, AgentSession::new("u"));
        m.record_event(&id, WebSocketMessage::new(M::AgentStarted, json!({})))
            .unwrap();
        m.record_event(
            &id,
            WebSocketMessage::new(
                M::AgentError,
                json!({"code": "cancelled", "message": "stopped"}),
            ),
        )
        .unwrap();
    }
    let health = m.check_health();
    assert_eq!((health.cancelled_runs, health.failed_runs), (4, 0));
    assert_eq!(health.status, HealthStatus::Healthy, "{:?}", health.issues);
    let t = m.tracker("r0").unwrap();
    assert!(t.is_failed && t.is_cancelled && !t.is_complete);
    assert_eq!(
        m.validate_session_completion("r0"),
        Err(EventValidationError::Cancelled {
            session_id: "r0".into()
        })
    );
    // Any other error is a failure.
    m.start_session_tracking("f", AgentSession::new("u"));
    m.record_event(
        "f",
        WebSocketMessage::new(M::AgentError, json!({"code": "upstream_error"})),
    )
    .unwrap();
    assert_eq!(m.check_health().failed_runs, 1);
    assert!(!m.tracker("f").unwrap().is_cancelled);
}

/// One user's runs timing out (however many) leave a Delivery-scoped
/// monitor healthy; the same share over many runs of many users degrades
/// it: 5 % a warning, 25 % critical.
#[test]
fn only_a_share_of_many_users_runs_timing_out_degrades_health() {
    let (m, clock) = monitor(EventMonitorConfig {
        health_scope: wsc_event_monitor::HealthScope::Delivery,
        run_timeout: Duration::from_secs(300),
        completed_max_age: Duration::from_secs(3_600),
        ..EventMonitorConfig::default()
    });
    let start = |id: &str, user: &str| {
        m.start_session_tracking(id, AgentSession::new(user));
        m.record_event(id, msg(M::AgentStarted)).unwrap();
    };
    let complete = |id: &str| {
        for t in [
            M::AgentThinking,
            M::ToolExecuting,
            M::ToolCompleted,
            M::AgentCompleted,
        ] {
            m.record_event(id, msg(t)).unwrap();
        }
    };
    // Past the run timeout, then the monitor's health.
    let timed_out = || {
        clock.advance(Duration::from_secs(301));
        m.sweep();
        m.check_health()
    };
    // One user's four slow runs, among 60 completed runs of others.
    for i in 0..4 {
        start(&format!("slow-{i}"), "one-user");
    }
    for i in 0..60 {
        start(&format!("ok-{i}"), &format!("u{}", i % 12));
        complete(&format!("ok-{i}"));
    }
    let h = timed_out();
    assert_eq!((h.timed_out_runs, h.timed_out_users), (4, 1), "{h:?}");
    assert_eq!(h.status, HealthStatus::Healthy, "one user: {h:?}");
    // Five more users' runs time out: 9 of 69 ended (13 %), a warning.
    for i in 0..5 {
        start(&format!("late-{i}"), &format!("late-user-{i}"));
    }
    let h = timed_out();
    assert_eq!((h.timed_out_runs, h.timed_out_users), (9, 6), "{h:?}");
    assert_eq!(h.status, HealthStatus::Warning, "{h:?}");
    // A quarter of the ended runs: critical.
    for i in 0..15 {
        start(&format!("later-{i}"), &format!("later-user-{i}"));
    }
    let h = timed_out();
    assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
}

/// `HealthScope::Delivery`: pacing (stale runs, stuck tools, long gaps,
/// nothing progressing) and agent errors are counted but do not change the
/// status; order violations and runs past `run_timeout` do.
#[test]
fn the_delivery_scope_judges_violations_and_timeouts_only() {
    let (m, clock) = monitor(EventMonitorConfig {
        health_scope: wsc_event_monitor::HealthScope::Delivery,
        run_timeout: Duration::from_secs(600),
        // The share rule on a handful of runs (see the test before).
        health_min_runs: 2,
        health_min_users: 1,
        ..EventMonitorConfig::default()
    });
    // Every pacing rule broken at once, and an agent error.
    for id in ["a", "b"] {
        m.start_session_tracking(id, AgentSession::new("u"));
        m.record_event(id, msg(M::AgentStarted)).unwrap();
        m.record_event(id, msg(M::ToolExecuting)).unwrap();
    }
    m.start_session_tracking("err", AgentSession::new("u"));
    m.record_event("err", msg(M::AgentStarted)).unwrap();
    m.record_event("err", msg(M::AgentError)).unwrap();
    clock.advance(Duration::from_secs(120));
    m.record_event("a", msg(M::AgentThinking)).unwrap();
    let h = m.check_health();
    assert_eq!(
        (h.stale_runs, h.stuck_tools, h.failed_runs),
        (1, 2, 1),
        "{h:?}"
    );
    assert!(h.latency.p95_ms > 5_000.0, "{h:?}");
    assert_eq!(h.status, HealthStatus::Healthy, "{h:?}");
    // The same under the default scope: failed.
    let (all, all_clock) = monitor(EventMonitorConfig::default());
    for id in ["a", "b"] {
        all.start_session_tracking(id, AgentSession::new("u"));
        all.record_event(id, msg(M::AgentStarted)).unwrap();
        all.record_event(id, msg(M::ToolExecuting)).unwrap();
    }
    all_clock.advance(Duration::from_secs(120));
    assert_eq!(all.check_health().status, HealthStatus::Failed);
    // An order violation: a warning.
    m.record_event("err", msg(M::AgentThinking)).unwrap();
    assert_eq!(m.check_health().status, HealthStatus::Warning);
    // Runs past the run timeout: 2 of the 3 ended runs timed out.
    clock.advance(Duration::from_secs(600));
    m.sweep();
    let h = m.check_health();
    assert_eq!(h.timed_out_runs, 2, "{h:?}");
    assert_eq!(h.status, HealthStatus::Critical, "{h:?}");
    assert!(
        h.issues.iter().any(|i| i.contains("still running after")),
        "{h:?}"
    );
}
