//! A slow reader of large events, against the gateway binary: an AG-UI
//! backend streams ~900 KB text deltas to a client that never reads. The
//! gateway drops the client as too slow (its session stays resumable), and
//! what it held for it stays within the send queue's byte bound — measured
//! as the process's peak resident memory, not guessed.

use std::convert::Infallible;
use std::process::Stdio;
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{MessageType, WebSocketMessage, parse_server_frame, serialize};

mod support;
use support::*;

/// Text deltas per run, and their size.
const DELTAS: usize = 120;
const DELTA_BYTES: usize = 900_000;

/// An AG-UI backend: every run is one assistant message of `DELTAS` large
/// deltas, made as they are sent (the backend holds one at a time).
async fn backend() -> String {
    async fn run(body: Bytes) -> axum::response::Response {
        let input: Value = serde_json::from_slice(&body).unwrap_or_default();
        let (thread, run) = (input["threadId"].clone(), input["runId"].clone());
        let event = move |n: usize| -> Value {
            match n {
                0 => json!({"type": "RUN_STARTED", "threadId": thread, "runId": run}),
                1 => json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
                n if n < DELTAS + 2 => json!({
                    "type": "TEXT_MESSAGE_CONTENT",
                    "messageId": "m",
                    "delta": "x".repeat(DELTA_BYTES),
                }),
                n if n == DELTAS + 2 => json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
                _ => json!({"type": "RUN_FINISHED", "threadId": thread, "runId": run}),
            }
        };
        let events = futures_util::stream::iter(0..DELTAS + 4)
            .map(move |n| Ok::<_, Infallible>(Bytes::from(format!("data: {}\n\n", event(n)))));
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(events))
            .unwrap()
    }
    let app = axum::Router::new().route("/", axum::routing::post(run));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The value of an unlabelled sample in the gateway's `/metrics`.
async fn metric(addr: &str, name: &str) -> u64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut text)
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_never_reads_large_events_pins_at_most_its_queue() {
    let agent = backend().await;
    let mut child = spawn_serve(
        &[
            "--bind",
            "127.0.0.1:0",
            "--agent-url",
            &agent,
            "--agent-protocol",
            "ag-ui",
        ],
        &[],
        Stdio::null(),
    );
    let addr = listening_address(&first_line(&mut child).await.expect("it serves"));
    let pid = child.id().unwrap();
    let before = status_kib(pid, "VmRSS:");

    // A client with a small receive buffer that stops reading after hello.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/ws?user_id=sloth"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let hello = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break parse_server_frame(&t).unwrap();
        }
    };
    assert_eq!(hello.message_type, MessageType::ConnectionEstablished);
    let start = WebSocketMessage::new(MessageType::StartAgent, json!({"input": "write a lot"}));
    ws.send(Message::text(serialize(&start))).await.unwrap();

    // Dropped as too slow, and the run streams on into its session's
    // replay buffer until it ends.
    let mut dropped = false;
    let mut ended = false;
    for _ in 0..600 {
        dropped = dropped || metric(&addr, "wsc_gateway_slow_clients_total").await >= 1;
        ended = metric(&addr, "wsc_gateway_runs_in_flight").await == 0
            && metric(&addr, "wsc_gateway_runs_total").await >= 1;
        if dropped && ended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dropped, "a client that never reads is dropped");
    assert!(ended, "the run ended");

    // 108 MB went through; the gateway's peak stayed within the send
    // queue's 4 MiB plus what one event in flight costs (copies of one
    // delta while it is checked, mapped, serialized and buffered).
    let peak = status_kib(pid, "VmHWM:");
    let grew_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mib < 48,
        "the gateway's peak RSS grew {grew_mib} MiB for one slow reader ({before} KiB before, {peak} KiB peak)"
    );
    drop(ws);
    let _ = terminate(&mut child, Duration::from_secs(10)).await;
}
