//! `WebSocketMessage::heap_bytes` against a counting allocator: for frames
//! built by `json!`, parsed from the wire and cloned, small and large, the
//! estimate is within 15 % of what the allocator counts.

use std::alloc::System;
use std::sync::Mutex;

use cap::Cap;
use serde_json::{Value, json};
use wsc_core::{MessageType, WebSocketMessage, parse_client_frame};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The allocator counts every thread: one measurement at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// Heap bytes the messages `make` builds hold, per message, by the
/// allocator and by `heap_bytes`.
fn measured(make: impl Fn(usize) -> WebSocketMessage) -> (f64, f64) {
    const N: usize = 2_000;
    let _one = MEASURING.lock().unwrap_or_else(|p| p.into_inner());
    let mut held = Vec::with_capacity(N);
    let before = ALLOCATOR.allocated();
    for i in 0..N {
        held.push(make(i));
    }
    let counted = (ALLOCATOR.allocated() - before) as f64 / N as f64;
    let estimated = held.iter().map(WebSocketMessage::heap_bytes).sum::<usize>() as f64 / N as f64;
    (counted, estimated)
}

fn close(name: &str, measured: (f64, f64)) {
    within(name, measured, 0.85, 1.15);
}

fn within(name: &str, (counted, estimated): (f64, f64), low: f64, high: f64) {
    println!("{name}: allocator {counted:.0} B, estimate {estimated:.0} B");
    assert!(
        estimated >= counted * low && estimated <= counted * high,
        "{name}: the estimate says {estimated:.0} bytes, the allocator {counted:.0}"
    );
}

fn frame(i: usize, payload: Value) -> WebSocketMessage {
    let mut m = WebSocketMessage::new(MessageType::AgentThinking, payload)
        .with_message_id(format!("run-{i:06}-3"));
    m.thread_id = Some("thread-1".to_owned());
    m
}

#[test]
fn a_small_frame() {
    close(
        "one-key payload",
        measured(|i| frame(i, json!({"t": i.to_string()}))),
    );
}

#[test]
fn a_gateway_frame() {
    close(
        "tool_completed as the gateway sends it",
        measured(|i| {
            frame(
                i,
                json!({"run_id": format!("run-{i:06}"), "agent_name": "demo", "tool_name": "search",
                       "tool_call_id": format!("run-{i:06}-call-0"), "result": "search done"}),
            )
        }),
    );
}

#[test]
fn a_parsed_frame() {
    close(
        "parsed from the wire",
        measured(|i| {
            let text = format!(
                r#"{{"type":"user_message","payload":{{"content":"hello {i}","attachments":[1,2,3],"meta":{{"a":"x","b":"y"}}}},"message_id":"m-{i}"}}"#
            );
            parse_client_frame(&text).unwrap()
        }),
    );
}

/// A large object's nodes are 6 to 11 entries full, by the order it was
/// filled in: the estimate (8) stays within 15 % below and 50 % above.
#[test]
fn a_large_object_and_a_long_string() {
    within(
        "100 keys, built at once",
        measured(|i| {
            let map: serde_json::Map<String, Value> = (0..100)
                .map(|k| (format!("key-{k:03}"), json!(k + i)))
                .collect();
            frame(i, Value::Object(map))
        }),
        0.85,
        1.5,
    );
    for (order, step) in [("in key order", 1), ("scattered", 37)] {
        within(
            &format!("100 keys inserted {order}"),
            measured(|i| {
                let mut map = serde_json::Map::new();
                for k in 0..100usize {
                    map.insert(format!("key-{:03}", (k * step) % 100), json!(k + i));
                }
                frame(i, Value::Object(map))
            }),
            0.85,
            1.5,
        );
    }
    close(
        "4 KB of text",
        measured(|i| frame(i, json!({"delta": "x".repeat(4_000 + i % 7)}))),
    );
}

#[test]
fn a_clone_holds_what_the_original_does() {
    let original = frame(1, json!({"a": [1, 2, {"b": "c"}], "d": "e"}));
    close("cloned", measured(|_| original.clone()));
}
