//! Replay buffer push, replay of 1 000 frames, and a full registry publish,
//! beside a bare `VecDeque` push of the same frame as the anchor.

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use wsc_core::{ManualClock, MessageType, Timestamp, WebSocketMessage, WireFrame};
use wsc_reconnection::{BufferLimits, ReplayBuffer, SessionConfig, SessionRegistry};

fn frame() -> WebSocketMessage {
    WebSocketMessage::new(MessageType::AgentThinking, json!({"run_id": "run-1"}))
}

fn buffer(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconnection/buffer_push");
    group.throughput(Throughput::Elements(1));
    let now = Timestamp::from_unix_micros(1_700_000_000_000_000);
    let msg = frame();
    // A full buffer: every push also evicts one frame (the steady state).
    let mut b = ReplayBuffer::new(BufferLimits {
        max_frames: 1_000,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    });
    // The frame is serialized once, as a publish does before the push;
    // the push numbers it (its text gets the seq), buffers it, and evicts
    // and drops the oldest frame.
    let wire = WireFrame::encode(&msg);
    group.bench_function("wsc_replay_buffer", |bench| {
        bench.iter(|| black_box(b.push(&wire, now).seq))
    });
    let mut q: VecDeque<WebSocketMessage> = VecDeque::with_capacity(1_000);
    group.bench_function("vecdeque_push_pop", |bench| {
        bench.iter_batched(
            || msg.clone(),
            |m| {
                if q.len() == 1_000 {
                    q.pop_front();
                }
                q.push_back(m);
                black_box(q.len())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("reconnection/replay_1000");
    let mut b = ReplayBuffer::new(BufferLimits::default());
    let wire = WireFrame::encode(&frame());
    for _ in 0..1_000 {
        b.push(&wire, now);
    }
    group.bench_function("wsc_replay_after", |bench| {
        bench.iter(|| black_box(b.replay_after(black_box(0)).map(|v| v.len())))
    });
    group.finish();

    let mut group = c.benchmark_group("reconnection/registry_publish");
    group.throughput(Throughput::Elements(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let registry =
        SessionRegistry::with_clock(SessionConfig::default(), ManualClock::default().shared());
    let mut attached = rt.block_on(registry.open("user")).expect("open");
    group.bench_function("wsc_publish_and_deliver", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let seq = registry
                    .publish(&attached.session_id, frame())
                    .await
                    .expect("known");
                black_box(attached.frames.recv().await);
                seq
            })
        })
    });
    group.finish();
}

criterion_group!(benches, buffer);
criterion_main!(benches);
