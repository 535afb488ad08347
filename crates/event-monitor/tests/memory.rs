//! The event monitor's memory is bounded whatever its runs carry: 200 runs
//! of 100 events with 10 KB payloads each (200 MB offered) against a
//! 4 MiB budget of stored event bytes, measured by a counting allocator.

use cap::Cap;
use serde_json::json;
use std::alloc::System;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const BUDGET: usize = 4 << 20;
const RUNS: usize = 200;

#[test]
fn stored_event_bytes_stay_within_the_budget() {
    let monitor = EventMonitor::new(EventMonitorConfig {
        max_stored_bytes: BUDGET,
        max_stored_bytes_per_run: 256 << 10,
        ..EventMonitorConfig::default()
    });
    let chunk = "x".repeat(10_000);
    let before = ALLOCATOR.allocated();
    for r in 0..RUNS {
        let id = format!("run-{r}");
        monitor.start_session_tracking(&id, AgentSession::new("u"));
        monitor
            .record_event(
                &id,
                WebSocketMessage::new(MessageType::AgentStarted, json!({})),
            )
            .unwrap();
        for _ in 0..99 {
            let event = WebSocketMessage::new(
                MessageType::AgentResponseChunk,
                json!({"delta": chunk.clone()}),
            );
            monitor.record_event(&id, event).unwrap();
        }
    }
    let grown = ALLOCATOR.allocated().saturating_sub(before);
    assert!(
        monitor.stored_bytes() <= BUDGET,
        "{}",
        monitor.stored_bytes()
    );
    // The budget, plus each run's own bookkeeping (a few KiB at most:
    // the run, its key, its event list's spare capacity).
    let bound = BUDGET + BUDGET / 2 + RUNS * 4096;
    eprintln!(
        "offered {} MB; heap grew {} KiB; stored estimate {} KiB; bound {} KiB",
        RUNS * 100 * 10_000 / 1_000_000,
        grown / 1024,
        monitor.stored_bytes() / 1024,
        bound / 1024
    );
    assert!(grown <= bound, "heap grew {grown} bytes, bound {bound}");
    // Every event was still counted and checked.
    let tracker = monitor.tracker("run-199").unwrap();
    assert_eq!(tracker.total_events, 100);
    assert!(tracker.events_truncated);
    assert_eq!(monitor.check_health().total_silent_failures, 0);
}
