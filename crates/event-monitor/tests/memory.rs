//! The event monitor's memory, measured by a counting allocator: bounded
//! whatever its runs carry (200 runs of 100 events with 10 KB payloads each,
//! 200 MB offered, against a 4 MiB budget of stored event bytes), and at
//! most 2 KiB per ended run of the gateway's shape.

use std::sync::Mutex;

use cap::Cap;
use serde_json::json;
use std::alloc::System;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts every thread: one measurement at a time.
static MEASURING: Mutex<()> = Mutex::new(());

const BUDGET: usize = 4 << 20;
const RUNS: usize = 200;

#[path = "common/gateway_run.rs"]
mod common;
use common::gateway_run;

/// Heap bytes per run the monitor keeps after recording `runs` whole
/// gateway runs.
fn bytes_per_ended_run(config: EventMonitorConfig, runs: usize) -> usize {
    let ids: Vec<String> = (0..runs).map(|i| format!("run-{i:07}")).collect();
    // Counted from before the messages are built: what the monitor does not
    // keep of them is freed by the end.
    let before = ALLOCATOR.allocated();
    let monitor = EventMonitor::new(EventMonitorConfig {
        max_tracked_runs: runs,
        ..config
    });
    for id in &ids {
        let session = AgentSession::new("user-0001")
            .with_thread_id("thread-1")
            .with_run_id(id.as_str())
            .with_agent_name("demo");
        monitor.start_session_tracking(id, session);
        for event in gateway_run(id) {
            monitor.record_event(id, event).unwrap();
        }
        assert!(monitor.tracker(id).unwrap().is_complete);
    }
    let bytes = ALLOCATOR.allocated() - before;
    drop(monitor);
    bytes / runs
}

#[test]
fn an_ended_run_costs_at_most_2_kib() {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let compact = bytes_per_ended_run(EventMonitorConfig::default(), 2_000);
    let whole = bytes_per_ended_run(
        EventMonitorConfig {
            keep_payloads_after_end: Some(true),
            ..EventMonitorConfig::default()
        },
        2_000,
    );
    eprintln!("an ended 7-event run: {compact} B compact, {whole} B with payloads");
    assert!(compact <= 2048, "{compact} bytes per ended run");
    assert!(whole > compact, "{whole} vs {compact}");
}

#[test]
fn stored_event_bytes_stay_within_the_budget() {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
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
