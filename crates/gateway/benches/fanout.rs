//! One run's frames fanned out to 100 readers: a backend publishes a run's
//! events to a user (`POST /api/publish`) who has 100 connections open,
//! and every connection receives every frame. The anchor: a bare
//! tokio-tungstenite broadcast server (this binary again, in its own
//! process) that sends each frame a publisher connection sends to every
//! other connection — the frame shared, never copied or parsed. Each
//! server's CPU time is read from /proc. Prints one JSON object per line:
//! frames delivered per second and server CPU per 1 000 delivered frames.
#![allow(missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const READERS: usize = 100;
const KEY: &str = "fanout-bench-key-0123456789abcdefghij";
/// Set to an address: the binary serves the broadcast anchor instead.
const BROADCAST_ENV: &str = "WSC_BENCH_BROADCAST";

fn main() {
    broadcast_if_asked();
    let quick = std::env::args().any(|a| a == "--quick");
    let frames = if quick { 100 } else { 500 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let readers = READERS.to_string();
    let gateway = common::Server::start_gateway(&[
        "--api-key",
        KEY,
        "--max-connections-per-user",
        &readers,
        "--max-sessions-per-user",
        &readers,
        "--max-messages-per-minute",
        "0",
        "--max-messages-per-hour",
        "0",
    ]);
    let url = format!("ws://{}/ws?user_id=fan", gateway.addr);
    rt.block_on(fan_out(
        &gateway,
        "wsc gateway (POST /api/publish to 100 connections)",
        &url,
        frames,
        |n| publish_over_http(&gateway.addr, n),
    ));
    drop(gateway);

    let anchor = start_broadcast();
    let url = format!("ws://{}/", anchor.addr);
    rt.block_on(fan_out(
        &anchor,
        "bare tokio-tungstenite broadcast (same frames)",
        &url,
        frames,
        |n| publish_over_websocket(&url, n),
    ));
}

/// Prints one result line: frames delivered per second and the server's
/// CPU per 1 000 delivered frames.
fn report(server: &str, delivered: u64, elapsed: f64, cpu: f64) {
    println!(
        "{}",
        json!({
            "server": server,
            "readers": READERS,
            "delivered": delivered,
            "per_second": delivered as f64 / elapsed,
            "cpu_ms_per_1000": cpu * 1e3 / (delivered as f64 / 1e3),
        })
    );
}

/// The payload of frame `n` of the run (about the size of an agent's
/// thinking event).
fn payload(n: usize) -> serde_json::Value {
    json!({"n": n, "thought": "comparing the two sources before answering", "step": "search"})
}

/// Opens the readers on `server`, runs `publish(frames)`, waits until
/// every reader got every frame, and reports the time from the first
/// publish to the last frame read and the server's CPU time meanwhile
/// (connecting the readers included).
async fn fan_out<F, Fut>(server: &common::Server, name: &str, url: &str, frames: usize, publish: F)
where
    F: FnOnce(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cpu0 = server.cpu_seconds();
    let mut ready = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        readers.push(tokio::spawn(async move {
            let mut got = 0usize;
            let mut tx = Some(tx);
            while got < frames {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        if !text.contains("\"connection_established\"") {
                            got += 1;
                        } else if let Some(tx) = tx.take() {
                            // Both servers say hello once the connection
                            // receives what is published.
                            let _ = tx.send(());
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("a reader's connection ended: {other:?}"),
                }
            }
            got as u64
        }));
    }
    for r in ready {
        let _ = r.await;
    }
    let started = Instant::now();
    publish(frames).await;
    let mut delivered = 0;
    for r in readers {
        delivered += r.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    report(name, delivered, elapsed, server.cpu_seconds() - cpu0);
}

/// Publishes `frames` frames of one run to user `fan` through the gateway's
/// publish API, one request after another on one kept-alive connection.
async fn publish_over_http(addr: &str, frames: usize) {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for n in 0..frames {
        let body = json!({
            "user_id": "fan",
            "type": "agent_thinking",
            "run_id": "run-fanout",
            "message_id": format!("run-fanout-{n}"),
            "payload": payload(n),
        })
        .to_string();
        let request = hyper::Request::post("/api/publish")
            .header("host", addr)
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(Full::new(hyper::body::Bytes::from(body)))
            .unwrap();
        sender
            .ready()
            .await
            .expect("the connection takes another request");
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let _ = response.into_body().collect().await;
        assert!(status.is_success(), "publish answered {status}");
    }
}

/// Sends `frames` frames on a WebSocket to the broadcast anchor (the same
/// frames the gateway sends: the run's event with its ids and seq).
async fn publish_over_websocket(url: &str, frames: usize) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for n in 0..frames {
        let mut body = payload(n);
        body["run_id"] = json!("run-fanout");
        let text = json!({
            "type": "agent_thinking",
            "payload": body,
            "timestamp": 1_700_000_000.5,
            "message_id": format!("run-fanout-{n}"),
            "user_id": "fan",
            "seq": n + 1,
        })
        .to_string();
        ws.send(Message::text(text)).await.unwrap();
    }
    // Close, and read until the server's close: a socket dropped with
    // unread data (its hello) is reset, and a reset could discard frames
    // the server has not read yet.
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
}

fn start_broadcast() -> common::Server {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let mut command = std::process::Command::new(exe);
    command.env(BROADCAST_ENV, "127.0.0.1:0");
    common::Server::spawn(command)
}

type Readers = Arc<Mutex<Vec<(u64, mpsc::UnboundedSender<Message>)>>>;

/// When `WSC_BENCH_BROADCAST` is set, serves the broadcast anchor on it
/// until killed, and never returns.
fn broadcast_if_asked() {
    let readers: Readers = Arc::default();
    common::serve_if_asked(BROADCAST_ENV, move |stream, id| {
        broadcast_connection(stream, id, readers.clone())
    });
}

/// One connection of the anchor: a reader of every other connection's
/// frames, and a publisher of its own (each sent to every other one).
async fn broadcast_connection(stream: tokio::net::TcpStream, id: u64, readers: Readers) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let _ = tx.send(Message::text(
        r#"{"type":"connection_established","payload":{}}"#,
    ));
    readers.lock().unwrap().push((id, tx));
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        if msg.is_text() {
            for (other, tx) in readers.lock().unwrap().iter() {
                if *other != id {
                    let _ = tx.send(msg.clone());
                }
            }
        }
    }
    readers.lock().unwrap().retain(|(other, _)| *other != id);
    writer.abort();
}
