//! Measured with a counting global allocator (the `cap` crate): idle bytes
//! per session with 100 000 sessions (each opened, attached and then
//! detached, with an empty replay buffer), and the registry's count of the
//! heap its buffered frames take against the allocator's.

use std::alloc::System;
use std::sync::Mutex;

use cap::Cap;
use serde_json::json;
use wsc_core::{ManualClock, MessageType, WebSocketMessage};
use wsc_reconnection::{BufferLimits, SessionConfig, SessionRegistry};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts every thread: one measurement at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// What the memory budget counts (`buffered_bytes`, the heap of the
/// buffered frames) is what the allocator sees, within 10 %, for small
/// frames (where the serialized size is a tenth of it) and large ones.
#[test]
fn the_buffer_budget_counts_the_heap_frames_take() {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, payload) in [
        ("small", json!({"run_id": "run-000001", "t": "x"})),
        (
            "4 KB",
            json!({"run_id": "run-000001", "delta": "x".repeat(4_000)}),
        ),
    ] {
        let clock = ManualClock::default();
        let registry = SessionRegistry::with_clock(
            SessionConfig {
                buffer: BufferLimits {
                    max_frames: 64,
                    max_bytes: 1 << 30,
                    ..Default::default()
                },
                ..Default::default()
            },
            clock.shared(),
        );
        let frame = WebSocketMessage::new(MessageType::AgentThinking, payload)
            .with_message_id("run-000001-7");
        rt.block_on(async {
            let mut ids = Vec::new();
            for _ in 0..200 {
                let a = registry.open("user-1").await.unwrap();
                registry.detach(&a.session_id, a.attachment).await.unwrap();
                ids.push(a.session_id);
            }
            let before = ALLOCATOR.allocated();
            let counted_before = registry.buffered_bytes().unwrap();
            // 48 frames each: the buffers' queues grow to 64 slots, as
            // they would for this many frames anyway.
            for id in &ids {
                for _ in 0..48 {
                    registry.publish(id, frame.clone()).await.unwrap();
                }
            }
            let grown = (ALLOCATOR.allocated() - before) as f64;
            let counted = (registry.buffered_bytes().unwrap() - counted_before) as f64;
            let frames = (ids.len() * 48) as f64;
            println!(
                "{name} frames: the allocator {:.0} B per frame, the count {:.0} B",
                grown / frames,
                counted / frames
            );
            assert!(
                counted >= grown * 0.9 && counted <= grown * 1.1,
                "{name}: counted {counted:.0} bytes, the allocator {grown:.0}"
            );
        });
    }
}

#[test]
fn idle_sessions_are_small() {
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    const SESSIONS: usize = 100_000;
    let clock = ManualClock::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let before = ALLOCATOR.allocated();
    let registry = SessionRegistry::with_clock(SessionConfig::default(), clock.shared());
    rt.block_on(async {
        for _ in 0..SESSIONS {
            let a = registry.open("user-123").await.unwrap();
            registry.detach(&a.session_id, a.attachment).await.unwrap();
        }
    });
    let after = ALLOCATOR.allocated();
    let per_session = (after - before) as f64 / SESSIONS as f64;
    println!("measured {per_session:.0} idle bytes per session");
    assert_eq!(rt.block_on(registry.session_count()).unwrap(), SESSIONS);
    assert!(
        per_session < 1_024.0,
        "{per_session:.0} bytes per idle session"
    );
}

/// A buffered frame costs its serialized size + at most 64 bytes of heap:
/// the text is kept once, as it goes on the wire (not as a parsed JSON
/// tree), shared by the live delivery and every replay. Measured over a
/// full 1 024-frame buffer (its queue has no spare slot), for frames of
/// several sizes, each numbered by the buffer.
#[test]
fn a_buffered_frame_costs_its_size_and_64_bytes() {
    use wsc_core::{Timestamp, WireFrame};
    use wsc_reconnection::ReplayBuffer;
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    const FRAMES: usize = 1_024;
    for payload in [
        json!({}),
        json!({"run_id": "run-000001", "agent_name": "a", "thought": "planning"}),
        json!({"run_id": "run-000001", "delta": "x".repeat(4_000)}),
        json!({"items": (0..100).map(|i| json!({"k": i})).collect::<Vec<_>>()}),
    ] {
        let message = WebSocketMessage::new(MessageType::AgentThinking, payload)
            .with_message_id("run-000001-7")
            .with_timestamp(Timestamp::from_unix_micros(1_700_000_000_000_000));
        let frame = WireFrame::encode(&message);
        let now = Timestamp::from_unix_micros(1_700_000_000_000_000);
        // The allocator counts every thread: the test harness's own
        // threads may allocate meanwhile (seen: 144 B of 4.3 MB, and once
        // 1 KB of 222 KB on a loaded machine), always adding to what it
        // saw. So the buffer's count must match the allocator's within
        // 0.1 % in one of three measurements: a wrong count never does.
        let mut measured = Vec::new();
        for _ in 0..3 {
            let before = ALLOCATOR.allocated();
            let mut buffer = ReplayBuffer::new(BufferLimits {
                max_frames: FRAMES,
                max_bytes: 1 << 30,
                ..Default::default()
            });
            let mut text = 0;
            for _ in 0..FRAMES {
                let out = buffer.push(&frame, now);
                text += out.frame.as_ref().map_or(0, WireFrame::len);
            }
            let grown = ALLOCATOR.allocated() - before;
            let counted = buffer.heap_bytes();
            assert_eq!(buffer.len(), FRAMES);
            drop(buffer);
            let overhead = (grown - text) as f64 / FRAMES as f64;
            measured.push((counted, grown, overhead));
            if (counted as f64 - grown as f64).abs() <= grown as f64 * 0.001 {
                break;
            }
        }
        let &(counted, grown, overhead) = measured.last().unwrap();
        println!(
            "a {}-byte frame: {overhead:.1} bytes of heap besides its text",
            frame.len()
        );
        assert!(
            overhead <= 64.0,
            "{overhead:.1} bytes per frame besides its text"
        );
        assert!(
            (counted as f64 - grown as f64).abs() <= grown as f64 * 0.001,
            "the buffer counts {counted} bytes, the allocator saw {grown}: {measured:?}"
        );
    }
}
