//! An ended run's events shrink to compact records; nothing observable
//! changes but the payloads. Property: for any sequence of events (in order
//! or not, errors, events after the end, timeouts, clock steps), a
//! compacting monitor and one that keeps payloads report the same
//! validation, timings, health and failures, the compacting one keeps no
//! more bytes, and each gives every byte back once its runs are removed.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use wsc_core::{ManualClock, MessageType as M, WebSocketMessage};
use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig, EventTracker};

#[derive(Clone, Debug)]
enum Step {
    /// Record an event of this type with a tool call id (maybe) and a
    /// payload of this many bytes, after this many ms.
    Event {
        run: u8,
        kind: M,
        call: Option<u8>,
        filler: usize,
        after_ms: u16,
    },
    /// Mark a run timed out.
    Timeout(u8),
}

fn kind() -> impl Strategy<Value = M> {
    prop::sample::select(vec![
        M::AgentStarted,
        M::AgentThinking,
        M::ToolExecuting,
        M::ToolCompleted,
        M::AgentCompleted,
        M::AgentError,
        M::AgentResponseChunk,
        M::ToolExecute,
    ])
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u8..3, kind(), prop::option::of(0u8..4), 0usize..300, 0u16..2_000).prop_map(
            |(run, kind, call, filler, after_ms)| Step::Event { run, kind, call, filler, after_ms }
        ),
        1 => (0u8..3).prop_map(Step::Timeout),
    ]
}

fn message(kind: M, call: Option<u8>, filler: usize) -> WebSocketMessage {
    let mut payload = json!({"run_id": "r", "text": "x".repeat(filler)});
    if let Some(c) = call {
        payload["tool_call_id"] = json!(format!("call-{c}"));
        payload["tool_name"] = json!("search");
    }
    WebSocketMessage::new(kind, payload).with_message_id(format!("m-{filler}"))
}

/// A tracker without what compaction is allowed to change.
fn comparable(mut t: EventTracker) -> EventTracker {
    t.events_received.clear();
    t.payloads_dropped = false;
    t
}

/// What a compact record keeps of a message: its type, and a tool event's
/// `tool_call_id`.
fn kept_of(m: &WebSocketMessage) -> (M, Option<String>) {
    let tool = matches!(
        m.message_type.canonical(),
        M::ToolExecuting | M::ToolCompleted
    );
    let id = m.payload_str("tool_call_id").filter(|_| tool);
    (m.message_type, id.map(str::to_owned))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn compaction_changes_nothing_but_payloads(steps in prop::collection::vec(step(), 1..60)) {
        let clock = ManualClock::default();
        let config = |keep| EventMonitorConfig {
            keep_payloads_after_end: keep,
            max_events_per_run: 20,
            ..EventMonitorConfig::default()
        };
        let compacting = EventMonitor::with_clock(config(None), clock.shared());
        let keeping = EventMonitor::with_clock(config(Some(true)), clock.shared());
        let ids = ["a", "b", "c"];
        for m in [&compacting, &keeping] {
            for id in ids {
                m.start_session_tracking(id, AgentSession::new("u"));
            }
        }
        for step in &steps {
            match step {
                Step::Event { run, kind, call, filler, after_ms } => {
                    clock.advance(Duration::from_millis(u64::from(*after_ms)));
                    let id = ids[usize::from(*run)];
                    for m in [&compacting, &keeping] {
                        m.record_event(id, message(*kind, *call, *filler)).unwrap();
                    }
                }
                Step::Timeout(run) => {
                    let id = ids[usize::from(*run)];
                    prop_assert_eq!(
                        compacting.mark_session_timeout(id),
                        keeping.mark_session_timeout(id)
                    );
                }
            }
        }
        for id in ids {
            let (c, k) = (compacting.tracker(id).unwrap(), keeping.tracker(id).unwrap());
            let ended = c.is_complete || c.reached_completion || c.is_failed || c.is_timeout;
            prop_assert_eq!(c.payloads_dropped, ended);
            prop_assert!(!k.payloads_dropped);
            if ended {
                let kept: Vec<_> = k.events_received.iter().map(kept_of).collect();
                let rebuilt: Vec<_> = c.events_received.iter().map(kept_of).collect();
                prop_assert_eq!(rebuilt, kept);
            } else {
                prop_assert_eq!(&c.events_received, &k.events_received);
            }
            prop_assert_eq!(comparable(c), comparable(k));
            prop_assert_eq!(
                compacting.validate_session_completion(id),
                keeping.validate_session_completion(id)
            );
            prop_assert_eq!(compacting.get_session_metrics(id), keeping.get_session_metrics(id));
        }
        prop_assert_eq!(compacting.check_health(), keeping.check_health());
        prop_assert_eq!(compacting.silent_failures(), keeping.silent_failures());
        prop_assert!(compacting.stored_bytes() <= keeping.stored_bytes());

        // Every byte goes back to the budget once the runs are removed.
        for m in [&compacting, &keeping] {
            for id in ids {
                m.mark_session_timeout(id);
            }
            prop_assert_eq!(m.cleanup_completed_sessions(Duration::ZERO), 3);
            prop_assert_eq!(m.stored_bytes(), 0);
        }
    }
}

#[test]
fn an_ended_run_keeps_records_and_gives_the_payload_bytes_back() {
    let clock = ManualClock::default();
    let monitor = EventMonitor::with_clock(EventMonitorConfig::default(), clock.shared());
    monitor.start_session_tracking("r", AgentSession::new("u"));
    let big = "x".repeat(4_000);
    let events = [
        (M::AgentStarted, json!({})),
        (M::AgentThinking, json!({"thought": big})),
        (M::ToolExecuting, json!({"tool_call_id": "c1", "args": big})),
        (
            M::ToolCompleted,
            json!({"tool_call_id": "c1", "result": big}),
        ),
        (M::AgentCompleted, json!({"result": big})),
    ];
    for (i, (t, payload)) in events.iter().enumerate() {
        if i == 4 {
            let t = monitor.tracker("r").unwrap();
            assert!(!t.payloads_dropped);
            assert!(
                monitor.stored_bytes() > 12_000,
                "{}",
                monitor.stored_bytes()
            );
            assert_eq!(t.events_received[3].payload["result"], json!(big));
        }
        monitor
            .record_event("r", WebSocketMessage::new(*t, payload.clone()))
            .unwrap();
    }
    let t = monitor.tracker("r").unwrap();
    assert!(t.is_complete && t.payloads_dropped);
    let rebuilt: Vec<_> = t
        .events_received
        .iter()
        .map(|m| (m.message_type, m.payload.clone()))
        .collect();
    assert_eq!(
        rebuilt,
        [
            (M::AgentStarted, json!({})),
            (M::AgentThinking, json!({})),
            (M::ToolExecuting, json!({"tool_call_id": "c1"})),
            (M::ToolCompleted, json!({"tool_call_id": "c1"})),
            (M::AgentCompleted, json!({})),
        ]
    );
    // Five 32-byte records and two 2-byte ids.
    assert_eq!(monitor.stored_bytes(), 5 * 32 + 2 * 2);
    // The sizes survive in the metrics.
    let metrics = monitor.get_session_metrics("r").unwrap();
    assert!(metrics.event_timings[4].approx_bytes > 4_000);
    // An event after the end is still stored (as a record) and a violation.
    monitor
        .record_event("r", WebSocketMessage::new(M::AgentThinking, json!({})))
        .unwrap();
    assert_eq!(monitor.tracker("r").unwrap().events_received.len(), 6);
    assert_eq!(monitor.stored_bytes(), 6 * 32 + 2 * 2);
}
