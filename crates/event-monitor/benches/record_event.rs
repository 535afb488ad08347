//! `record_event` at 1, 1 000 and 100 000 live runs, beside a bare DashMap
//! push (look up the run, store the message) as the anchor; and
//! `validate_session_completion` for a 100-event run.
//!
//! Every timed event is an `agent_thinking` into a started run, so each one
//! is checked and stored. Runs are restarted (untimed) before they reach the
//! per-run storage cap of 16, which keeps memory bounded at 100 000 runs.

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use serde_json::json;
use wsc_core::{Clock, ManualClock, MessageType, Timestamp, WebSocketMessage};
use wsc_event_monitor::{AgentSession, EventMonitor, EventMonitorConfig};

const CAP: usize = 16;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("run-{i:08}")).collect()
}

/// Runs `iters` operations round-robin over `runs` keys, calling `reset`
/// (untimed) whenever another round would pass the per-run cap.
fn timed_rounds(
    iters: u64,
    runs: usize,
    mut reset: impl FnMut(),
    mut op: impl FnMut(usize),
) -> Duration {
    let budget = (runs * (CAP - 1)) as u64;
    let mut used = budget; // force a reset first
    let mut left = iters;
    let mut total = Duration::ZERO;
    let mut cursor = 0usize;
    while left > 0 {
        if used >= budget {
            reset();
            used = 0;
        }
        let chunk = left.min(budget - used);
        let start = Instant::now();
        for _ in 0..chunk {
            op(cursor);
            cursor += 1;
            if cursor == runs {
                cursor = 0;
            }
        }
        total += start.elapsed();
        used += chunk;
        left -= chunk;
    }
    total
}

fn record_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_monitor/record_event");
    group.throughput(Throughput::Elements(1));
    let thinking = WebSocketMessage::new(MessageType::AgentThinking, json!({}));
    for runs in [1usize, 1_000, 100_000] {
        let keys = ids(runs);
        let clock = ManualClock::default();
        let config = EventMonitorConfig {
            max_tracked_runs: runs,
            max_events_per_run: CAP,
            ..Default::default()
        };
        let monitor = EventMonitor::with_clock(config, clock.shared());
        group.bench_with_input(BenchmarkId::new("wsc", runs), &runs, |b, &runs| {
            b.iter_custom(|iters| {
                timed_rounds(
                    iters,
                    runs,
                    || {
                        for k in &keys {
                            monitor.start_session_tracking(k, AgentSession::new("u"));
                            let start = WebSocketMessage::new(MessageType::AgentStarted, json!({}));
                            monitor.record_event(k, start).expect("tracked");
                        }
                    },
                    |i| {
                        let r = monitor.record_event(&keys[i], thinking.clone());
                        black_box(r).expect("tracked");
                    },
                )
            })
        });
        assert!(
            monitor.silent_failures().is_empty(),
            "bench runs must be valid"
        );
        drop(monitor);

        // Anchor: the least a tracker must do — find the run, store the event.
        let bare: DashMap<String, Vec<(Timestamp, WebSocketMessage)>> = DashMap::new();
        group.bench_with_input(BenchmarkId::new("dashmap_push", runs), &runs, |b, &runs| {
            b.iter_custom(|iters| {
                timed_rounds(
                    iters,
                    runs,
                    || {
                        for k in &keys {
                            bare.insert(k.clone(), Vec::new());
                        }
                    },
                    |i| {
                        let now = clock.now();
                        let mut v = bare.get_mut(keys[i].as_str()).expect("present");
                        v.push((now, thinking.clone()));
                        black_box(v.len());
                    },
                )
            })
        });
    }
    group.finish();
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_monitor/validate_100_events");
    let monitor = EventMonitor::with_clock(
        EventMonitorConfig::default(),
        ManualClock::default().shared(),
    );
    monitor.start_session_tracking("run", AgentSession::new("u"));
    let mut events = vec![
        WebSocketMessage::new(MessageType::AgentStarted, json!({})),
        WebSocketMessage::new(MessageType::AgentThinking, json!({})),
    ];
    for call in 0..48 {
        let p = json!({"tool_call_id": format!("call-{call}"), "tool_name": "search"});
        events.push(WebSocketMessage::new(MessageType::ToolExecuting, p.clone()));
        events.push(WebSocketMessage::new(MessageType::ToolCompleted, p));
    }
    events.push(WebSocketMessage::new(MessageType::AgentThinking, json!({})));
    events.push(WebSocketMessage::new(
        MessageType::AgentCompleted,
        json!({}),
    ));
    assert_eq!(events.len(), 100);
    for e in events {
        monitor.record_event("run", e).expect("tracked");
    }
    group.bench_function("wsc", |b| {
        b.iter(|| black_box(monitor.validate_session_completion(black_box("run"))))
    });
    group.finish();
}

criterion_group!(benches, record_event, validate);
criterion_main!(benches);
