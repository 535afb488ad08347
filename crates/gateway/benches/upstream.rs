//! A real agent run through the gateway beside the same run read directly:
//! a local AG-UI upstream (axum, in this process) streams a run of 1 000
//! wsc frames' worth of events over SSE as fast as it can. The anchor is a
//! client reading that stream itself (the same hyper client and SSE reader
//! the gateway uses, each event parsed as JSON); ours is a WebSocket client
//! of an in-process gateway whose `HttpAgent` reads it, maps it, records
//! it in the event monitor, numbers and buffers it, and sends it. Both
//! client, upstream and gateway share one tokio runtime (2 workers).
//!
//! After criterion, both paths stream 10 paced runs (200 deltas, one a
//! millisecond) whose events carry the upstream's send time: the per-event
//! latency (upstream write to client read) of each, and what the gateway
//! adds at p50 and p99, printed and written as one JSON line on stdout for
//! `cargo xtask bench`.

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use wsc_server::{Gateway, GatewayConfig, HttpAgent, HttpAgentConfig};
use wsc_upstream::{StreamFormat, StreamReader};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Text deltas per run: with `agent_started`, `agent_thinking` (the message
/// start) and `agent_completed`, the client gets 1 000 frames.
const DELTAS: usize = 997;
/// Frames a run delivers to the WebSocket client.
const FRAMES: u64 = DELTAS as u64 + 3;
/// Text deltas of a paced run (one a millisecond), for the latency phase.
const PACED_DELTAS: usize = 200;

/// Nanoseconds since the first call: the clock both ends of a run read
/// (one process).
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One SSE event.
fn sse(event: &Value) -> Bytes {
    Bytes::from(format!("data: {event}\n\n"))
}

/// The upstream: each request gets a whole run, every text delta carrying
/// the time it was handed to the server (`"t<ns>"`).
async fn start_upstream() -> SocketAddr {
    let app = Router::new().route(
        "/run",
        post(|body: String| async move {
            let input: Value = serde_json::from_str(&body).unwrap_or_default();
            let run_id = input["runId"].as_str().unwrap_or("r").to_owned();
            let head = [
                json!({"type": "RUN_STARTED", "threadId": "t", "runId": run_id}),
                json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
            ];
            let tail = [
                json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
                json!({"type": "RUN_FINISHED", "threadId": "t", "runId": run_id}),
            ];
            // "paced": one delta a millisecond (the latency phase), else
            // as fast as the server takes them.
            let paced = input["messages"][0]["content"] == "paced";
            let count = if paced { PACED_DELTAS } else { DELTAS };
            let deltas = futures_util::stream::iter(0..count).then(move |_| async move {
                if paced {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                sse(&json!({
                    "type": "TEXT_MESSAGE_CONTENT",
                    "messageId": "m",
                    "delta": format!("t{} ", now_ns()),
                }))
            });
            let stream = futures_util::stream::iter(head.iter().map(sse).collect::<Vec<_>>())
                .chain(deltas)
                .chain(futures_util::stream::iter(
                    tail.iter().map(sse).collect::<Vec<_>>(),
                ))
                .map(Ok::<_, std::io::Error>);
            (
                [(header::CONTENT_TYPE, "text/event-stream")],
                Body::from_stream(stream),
            )
                .into_response()
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A gateway whose agent is the upstream.
async fn start_gateway(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let agent = HttpAgent::new(HttpAgentConfig::new(format!("http://{upstream}/run")));
    let gateway = Gateway::with_runner(
        GatewayConfig {
            // The bench measures the path, not the limit.
            limits: wsc_server::LimitsConfig {
                max_messages_per_minute: 0,
                max_messages_per_hour: 0,
                ..Default::default()
            },
            http: wsc_server::HttpConfig {
                heartbeat_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            ..Default::default()
        },
        Arc::new(agent),
    );
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    addr
}

/// The delta's send time, if the text carries one.
fn sent_at(delta: &str) -> Option<u64> {
    delta.trim().strip_prefix('t')?.parse().ok()
}

/// Reads one run straight from the upstream; the latency of each delta
/// into `latencies` when given. Returns the events read.
async fn direct_run(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    input: &str,
    mut latencies: Option<&mut Vec<u64>>,
) -> u64 {
    let body = json!({"runId": "direct", "messages": [{"role": "user", "content": input}]});
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request");
    let response = client.request(request).await.expect("the upstream answers");
    let mut body = response.into_body();
    let mut reader = StreamReader::new(StreamFormat::Sse);
    let mut events = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("the stream").into_data() else {
            continue;
        };
        for text in reader.push(&data).expect("SSE") {
            let event: Value = serde_json::from_str(&text).expect("JSON");
            events += 1;
            if let (Some(l), Some(t)) = (
                latencies.as_deref_mut(),
                event["delta"].as_str().and_then(sent_at),
            ) {
                l.push(now_ns().saturating_sub(t));
            }
            if event["type"] == "RUN_FINISHED" {
                return events;
            }
        }
    }
    events
}

/// Starts one run through the gateway and reads its frames to
/// `agent_completed`; the latency of each delta into `latencies` when
/// given. Returns the frames read.
async fn gateway_run(
    ws: &mut Ws,
    n: u64,
    input: &str,
    mut latencies: Option<&mut Vec<u64>>,
) -> u64 {
    let start =
        json!({"type": "start_agent", "payload": {"input": input}, "message_id": format!("s-{n}")});
    ws.send(Message::text(start.to_string()))
        .await
        .expect("send");
    let mut frames = 0;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => panic!("the gateway closed the connection after {frames} frames: {other:?}"),
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        frames += 1;
        if let (Some(l), Some(t)) = (
            latencies.as_deref_mut(),
            frame["payload"]["delta"].as_str().and_then(sent_at),
        ) {
            l.push(now_ns().saturating_sub(t));
        }
        match frame["type"].as_str() {
            Some("agent_completed") => return frames,
            Some("agent_error") => panic!("the run failed: {frame}"),
            _ => {}
        }
    }
}

async fn connect(gateway: SocketAddr) -> Ws {
    let (mut ws, _) = connect_async(format!("ws://{gateway}/ws?user_id=bench"))
        .await
        .expect("connect");
    let _hello = ws.next().await; // connection_established
    ws
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

fn bench(c: &mut Criterion) {
    let rt: Runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (upstream, gateway) = rt.block_on(async {
        let upstream = start_upstream().await;
        (upstream, start_gateway(upstream).await)
    });
    let url = format!("http://{upstream}/run");
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut ws = rt.block_on(connect(gateway));
    let mut runs = 0u64;
    // Both paths deliver whole runs before anything is measured.
    assert_eq!(
        rt.block_on(direct_run(&client, &url, "go", None)),
        DELTAS as u64 + 4
    );
    runs += 1;
    assert_eq!(rt.block_on(gateway_run(&mut ws, runs, "go", None)), FRAMES);

    let mut group = c.benchmark_group("gateway/upstream_run");
    group.throughput(Throughput::Elements(FRAMES));
    group.sample_size(20);
    group.bench_function("direct", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    direct_run(&client, &url, "go", None).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("through_gateway", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    runs += 1;
                    gateway_run(&mut ws, runs, "go", None).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    // Per-event latency, upstream write to client read, on paced runs (one
    // delta a millisecond: what the gateway adds, not a queue's length).
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..10 {
            direct_run(&client, &url, "paced", Some(&mut direct)).await;
            runs += 1;
            gateway_run(&mut ws, runs, "paced", Some(&mut through)).await;
        }
    });
    let (direct, through) = (sorted(direct), sorted(through));
    let q = |v: &[u64], p: f64| common::quantile(v, p);
    let (d50, d99, g50, g99) = (
        q(&direct, 0.5),
        q(&direct, 0.99),
        q(&through, 0.5),
        q(&through, 0.99),
    );
    eprintln!(
        "upstream run, per event: direct p50 {d50} ns p99 {d99} ns; through the gateway p50 {g50} ns p99 {g99} ns; \
         added p50 {} ns p99 {} ns",
        g50.saturating_sub(d50),
        g99.saturating_sub(d99)
    );
    println!(
        "{}",
        json!({
            "upstream_latency": true,
            "events": through.len(),
            "direct_p50_ns": d50, "direct_p99_ns": d99,
            "gateway_p50_ns": g50, "gateway_p99_ns": g99,
            "added_p50_ns": g50.saturating_sub(d50),
            "added_p99_ns": g99.saturating_sub(d99),
        })
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
