//! Scale curves for `cargo xtask bench`: time per operation and heap bytes
//! per key at 1 000, 100 000 and 1 000 000 users / runs / sessions, for the
//! rate limiter, the event monitor and the session registry (replay
//! buffers); and heap bytes per ended run kept by the event monitor at
//! 1 000 and 100 000 runs. Bytes are counted by a global allocator (the `cap` crate).
//! Prints one JSON object per line; `--quick` times fewer operations.
#![allow(missing_docs)]

use std::alloc::System;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cap::Cap;
use serde_json::json;
use websocket_core::events::{AgentSession, EventMonitor, EventMonitorConfig};
use websocket_core::rate_limit::{RateLimitConfig, WebSocketRateLimiter};
use websocket_core::resume::{BufferLimits, SessionConfig, SessionRegistry};
use websocket_core::wsc_core::{ManualClock, MessageType, WebSocketMessage};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

fn line(component: &str, n: usize, ns_per_op: f64, bytes_per_key: f64) {
    println!(
        "{}",
        json!({"component": component, "n": n, "ns_per_op": ns_per_op, "bytes_per_key": bytes_per_key})
    );
}

/// A cheap deterministic key order (so the timed loop touches keys spread
/// over the whole map, as real traffic does).
fn scatter(i: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761)) % n
}

fn limiter(rt: &tokio::runtime::Runtime, ops: usize) {
    let msg = WebSocketMessage::new(MessageType::Chat, json!({}));
    for n in SIZES {
        let ids: Vec<String> = (0..n).map(|i| format!("user-{i:07}")).collect();
        let clock = ManualClock::default();
        let before = ALLOCATOR.allocated();
        let limiter = WebSocketRateLimiter::with_clock(
            RateLimitConfig {
                max_tracked_users: n,
                max_messages_per_minute: 1_000_000,
                max_messages_per_hour: 1_000_000,
                ..Default::default()
            },
            clock.shared(),
        );
        for id in &ids {
            rt.block_on(limiter.record_message(id, &msg)).unwrap();
        }
        let bytes = (ALLOCATOR.allocated() - before) as f64 / n as f64;
        let start = Instant::now();
        for i in 0..ops {
            let id = &ids[scatter(i, n)];
            black_box(rt.block_on(limiter.record_message(id, &msg)).is_ok());
        }
        let ns = start.elapsed().as_nanos() as f64 / ops as f64;
        line("rate limiter: decision (2 windows)", n, ns, bytes);
    }
}

fn monitor(rt: &tokio::runtime::Runtime, ops: usize) {
    for n in SIZES {
        let ids: Vec<String> = (0..n).map(|i| format!("run-{i:07}")).collect();
        let clock = ManualClock::default();
        let before = ALLOCATOR.allocated();
        let monitor = EventMonitor::with_clock(
            EventMonitorConfig {
                max_tracked_runs: n,
                ..Default::default()
            },
            clock.shared(),
        );
        rt.block_on(async {
            for id in &ids {
                monitor.start_session_tracking(id, AgentSession::new("u"));
                let started = WebSocketMessage::new(MessageType::AgentStarted, json!({}));
                monitor.record_event(id, started).unwrap();
            }
        });
        let bytes = (ALLOCATOR.allocated() - before) as f64 / n as f64;
        let event = WebSocketMessage::new(MessageType::AgentThinking, json!({}));
        let start = Instant::now();
        rt.block_on(async {
            for i in 0..ops {
                let id = &ids[scatter(i, n)];
                black_box(monitor.record_event(id, event.clone()).is_ok());
            }
        });
        let ns = start.elapsed().as_nanos() as f64 / ops as f64;
        line("event monitor: record_event", n, ns, bytes);
    }
}

// The run the event monitor's memory test measures, shared with it.
#[path = "../../crates/event-monitor/tests/common/gateway_run.rs"]
mod gateway_run;

/// Heap bytes per *ended* run: `n` demo runs recorded to their end (7
/// events each, shaped as the gateway records them) and kept, as the
/// gateway keeps ended runs until `completed_max_age`. Time is per event
/// recorded.
fn ended_runs(rt: &tokio::runtime::Runtime) {
    for n in [1_000, 100_000] {
        let ids: Vec<String> = (0..n).map(|i| format!("run-{i:07}")).collect();
        let clock = ManualClock::default();
        // Counted from before the messages are built: whatever of them the
        // monitor does not keep is freed by the end.
        let before = ALLOCATOR.allocated();
        let runs: Vec<Vec<WebSocketMessage>> =
            ids.iter().map(|id| gateway_run::gateway_run(id)).collect();
        let events: usize = runs.iter().map(Vec::len).sum();
        let monitor = EventMonitor::with_clock(
            EventMonitorConfig {
                max_tracked_runs: n,
                ..Default::default()
            },
            clock.shared(),
        );
        let start = Instant::now();
        rt.block_on(async {
            for (id, run) in ids.iter().zip(runs) {
                let session = AgentSession::new("user-0001")
                    .with_thread_id("thread-1")
                    .with_run_id(id.as_str())
                    .with_agent_name("demo");
                monitor.start_session_tracking(id, session);
                for event in run {
                    monitor.record_event(id, event).unwrap();
                }
            }
        });
        let ns = start.elapsed().as_nanos() as f64 / events as f64;
        assert_eq!(monitor.session_count(), n);
        let bytes = ALLOCATOR.allocated() as f64 - before as f64;
        line(
            "event monitor: ended run (7 events, kept)",
            n,
            ns,
            bytes / n as f64,
        );
    }
}

fn sessions(rt: &tokio::runtime::Runtime, ops: usize) {
    for n in SIZES {
        let clock = ManualClock::default();
        let before = ALLOCATOR.allocated();
        let registry = SessionRegistry::with_clock(
            SessionConfig {
                max_sessions: n,
                buffer: BufferLimits {
                    max_frames: 16,
                    ..Default::default()
                },
                ..Default::default()
            },
            clock.shared(),
        );
        let ids: Vec<String> = rt.block_on(async {
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let a = registry.open("u").await.unwrap();
                registry.detach(&a.session_id, a.attachment).await.unwrap();
                ids.push(a.session_id);
            }
            ids
        });
        // Ids are the caller's; the registry's bytes are the rest.
        let id_bytes: usize = ids.iter().map(|s| s.capacity()).sum::<usize>()
            + ids.capacity() * std::mem::size_of::<String>();
        let bytes = (ALLOCATOR.allocated() - before - id_bytes) as f64 / n as f64;
        let frame = WebSocketMessage::new(MessageType::AgentThinking, json!({"t": "x"}));
        let start = Instant::now();
        rt.block_on(async {
            for i in 0..ops {
                let id = &ids[scatter(i, n)];
                black_box(registry.publish(id, frame.clone()).await.is_ok());
            }
        });
        let ns = start.elapsed().as_nanos() as f64 / ops as f64;
        line(
            "session registry: publish (replay buffer push)",
            n,
            ns,
            bytes,
        );
        // Where the timed loop gave every session at least 16 frames (the
        // scattered order visits keys evenly), every buffer is full: a
        // session holding 16 small frames.
        if ops >= 16 * n {
            let full = (ALLOCATOR.allocated() - before - id_bytes) as f64 / n as f64;
            line("session registry: session holding 16 frames", n, ns, full);
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo bench` passes `--bench`; anything else is ignored.
    let ops = if quick { 200_000 } else { 1_000_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    limiter(&rt, ops);
    monitor(&rt, ops);
    ended_runs(&rt);
    sessions(&rt, ops);
    eprintln!(
        "scale curves in {:.1?}",
        Duration::from_secs_f64(started.elapsed().as_secs_f64())
    );
}
