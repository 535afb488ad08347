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
                // Every request of the bench comes from one address (the
                // SSE path's thousands of POSTs among them).
                max_handshakes_per_ip: 0,
                max_messages_per_ip_per_minute: Some(0),
                ..Default::default()
            },
            http: wsc_server::HttpConfig {
                heartbeat_interval: Duration::from_secs(3600),
                ..Default::default()
            },
            // Thousands of AG-UI runs of one user, each kept a second.
            agents: wsc_server::AgentsConfig {
                run_retention: Duration::from_secs(1),
                max_ag_ui_runs_per_user: 1_000_000,
                max_ag_ui_runs: 1_000_000,
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
    let mut events = 0;
    read_sse(client, request, |text| {
        let event: Value = serde_json::from_str(text).expect("JSON");
        events += 1;
        if let (Some(l), Some(t)) = (
            latencies.as_deref_mut(),
            event["delta"].as_str().and_then(sent_at),
        ) {
            l.push(now_ns().saturating_sub(t));
        }
        event["type"] == "RUN_FINISHED"
    })
    .await;
    events
}

/// Sends `request` and hands the text of each SSE event of the answer to
/// `on_event`, until it returns true (the run's end) or the stream ends.
async fn read_sse(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
    mut on_event: impl FnMut(&str) -> bool,
) {
    let response = client.request(request).await.expect("an answer");
    assert!(
        response.status().is_success(),
        "refused: {}",
        response.status()
    );
    let mut body = response.into_body();
    let mut reader = StreamReader::new(StreamFormat::Sse);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("the stream").into_data() else {
            continue;
        };
        for text in reader.push(&data).expect("SSE") {
            if on_event(&text) {
                return;
            }
        }
    }
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

/// A `RunAgentInput` for run `run_id`.
fn run_input(run_id: &str, input: &str) -> Value {
    json!({"threadId": "t", "runId": run_id, "messages": [{"id": "q", "role": "user", "content": input}],
           "tools": [], "context": [], "state": {}, "forwardedProps": {}})
}

/// Starts run `run_id` over the AG-UI dialect and reads its event frames
/// (each parsed as JSON) to `RUN_FINISHED`; with `bytes`, adds each text
/// delta's frame length and counts the deltas. Returns the events read.
async fn ag_ui_ws_run(ws: &mut Ws, run_id: &str, bytes: Option<&mut DeltaBytes>) -> u64 {
    let start = json!({"type": "run_agent", "payload": {"input": run_input(run_id, "go")}});
    ws.send(Message::text(start.to_string()))
        .await
        .expect("send");
    read_ag_ui_frames(ws, run_id, bytes).await
}

/// The text deltas a client read: their frames' payload bytes, their
/// bytes on the wire, how many.
#[derive(Default)]
struct DeltaBytes {
    payload: u64,
    wire: u64,
    deltas: u64,
}

/// Reads run `run_id`'s AG-UI event frames to its end.
async fn read_ag_ui_frames(ws: &mut Ws, run_id: &str, mut bytes: Option<&mut DeltaBytes>) -> u64 {
    let mut events = 0;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => panic!("the gateway closed the connection after {events} events: {other:?}"),
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        if frame["run_id"] != run_id {
            panic!("not an event of {run_id}: {frame}");
        }
        events += 1;
        if let Some(bytes) = bytes.as_deref_mut()
            && frame["event"]["type"] == "TEXT_MESSAGE_CONTENT"
        {
            bytes.payload += text.len() as u64;
            bytes.wire += ws_wire_len(text.len());
            bytes.deltas += 1;
        }
        match frame["event"]["type"].as_str() {
            Some("RUN_FINISHED") => return events,
            Some("RUN_ERROR") => panic!("the run failed: {frame}"),
            _ => {}
        }
    }
}

/// Starts run `run_id` with `POST /ag-ui` and reads its SSE events (each
/// parsed as JSON, as the direct client does) to `RUN_FINISHED`.
async fn ag_ui_sse_run(
    client: &Client<HttpConnector, Full<Bytes>>,
    gateway: SocketAddr,
    run_id: &str,
) -> u64 {
    let request = hyper::Request::post(format!("http://{gateway}/ag-ui"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("x-wsc-user-id", "bench-sse")
        .body(Full::new(Bytes::from(run_input(run_id, "go").to_string())))
        .expect("a request");
    let mut events = 0;
    read_sse(client, request, |text| {
        let event: Value = serde_json::from_str(text).expect("JSON");
        events += 1;
        event["type"] == "RUN_FINISHED"
    })
    .await;
    events
}

/// The bytes the upstream writes per text delta, read off the raw socket of
/// one run: `(SSE text, on the wire)`, the SSE text being `data: E` and the
/// blank line, the wire adding the HTTP/1.1 chunk framing around it (the
/// chunk's size line and closing CRLF, shared by the events of a chunk).
async fn upstream_bytes_per_delta(upstream: SocketAddr) -> (f64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body =
        json!({"runId": "bytes", "messages": [{"role": "user", "content": "go"}]}).to_string();
    let mut socket = TcpStream::connect(upstream).await.expect("connect");
    let request = format!(
        "POST /run HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    socket.read_to_end(&mut raw).await.expect("read");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let (mut text, mut wire, mut deltas) = (0f64, 0f64, 0u64);
    let mut rest = &raw[head_end..];
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a size line");
        let size = usize::from_str_radix(&String::from_utf8_lossy(&rest[..line_end]), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        let data = &rest[line_end + 2..line_end + 2 + size];
        let framing = (line_end + 2 + 2) as f64;
        let chunk = String::from_utf8_lossy(data);
        let events: Vec<&str> = chunk.split_terminator("\n\n").collect();
        for event in &events {
            if event.contains("\"TEXT_MESSAGE_CONTENT\"") {
                let bytes = (event.len() + 2) as f64;
                text += bytes;
                wire += bytes + framing / events.len() as f64;
                deltas += 1;
            }
        }
        rest = &rest[line_end + 2 + size + 2..];
    }
    let deltas = deltas.max(1) as f64;
    (text / deltas, wire / deltas)
}

/// A WebSocket frame's size on the wire for a payload of `len` bytes sent
/// by a server (unmasked, no extension): the 2-byte header, plus the
/// extended length of RFC 6455 §5.2.
fn ws_wire_len(len: usize) -> u64 {
    let extended = match len {
        0..=125 => 0,
        126..=65_535 => 2,
        _ => 8,
    };
    (len + 2 + extended) as u64
}

async fn connect(gateway: SocketAddr) -> Ws {
    connect_with(gateway, "user_id=bench").await
}

async fn connect_with(gateway: SocketAddr, query: &str) -> Ws {
    let (mut ws, _) = connect_async(format!("ws://{gateway}/ws?{query}"))
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

    let mut agui_ws = rt.block_on(connect_with(gateway, "user_id=bench-ag-ui&protocol=ag-ui"));
    let mut agui_runs = 0u64;
    assert_eq!(
        rt.block_on(ag_ui_ws_run(&mut agui_ws, "warm-ws", None)),
        DELTAS as u64 + 4
    );
    assert_eq!(
        rt.block_on(ag_ui_sse_run(&client, gateway, "warm-sse")),
        DELTAS as u64 + 4
    );

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
    group.bench_function("ag_ui_websocket", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    agui_runs += 1;
                    let got = ag_ui_ws_run(&mut agui_ws, &format!("ws-{agui_runs}"), None).await;
                    assert_eq!(got, DELTAS as u64 + 4, "a whole run");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("ag_ui_sse", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    agui_runs += 1;
                    let got = ag_ui_sse_run(&client, gateway, &format!("sse-{agui_runs}")).await;
                    // A refusal (a body with no events) must not pass for
                    // a fast run.
                    assert_eq!(got, DELTAS as u64 + 4, "a whole run");
                }
                start.elapsed()
            })
        })
    });
    group.finish();

    ag_ui_costs(&rt, upstream, &url);

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

/// What an AG-UI event costs the gateway, measured on the release
/// gateway in its own process (its CPU time from `/proc`) in front of this
/// process's upstream: CPU per passed-through event over the AG-UI dialect
/// and over the wsc protocol (the same runs, mapped to lifecycle frames;
/// each the median of 5 rounds of 20 runs),
/// CPU per delivered event with ten readers of each run, and the wire
/// bytes per text delta beside the upstream's SSE bytes. One JSON line
/// (`"ag_ui": true`) for `cargo xtask bench`.
fn ag_ui_costs(rt: &Runtime, upstream: SocketAddr, url: &str) {
    const RUNS: u64 = 20;
    const ROUNDS: u64 = 5;
    let events = RUNS * (DELTAS as u64 + 4);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let server = common::Server::start_gateway(&[
        "--agent-url",
        url,
        "--max-messages-per-minute",
        "0",
        "--max-messages-per-hour",
        "0",
        "--run-retention",
        "1",
        // Ten readers of one user.
        "--max-connections-per-user",
        "20",
    ]);
    let addr: SocketAddr = server.addr.parse().expect("the gateway's address");
    let (ws_cpu, legacy_cpu, fanout_cpu, bytes) = rt.block_on(async {
        let mut ws = connect_with(addr, "user_id=cost&protocol=ag-ui").await;
        ag_ui_ws_run(&mut ws, "cost-warm", None).await;
        // Each measure is the median of ROUNDS rounds of RUNS runs: the
        // CPU a round takes varies with how the machine schedules it.
        let mut bytes = DeltaBytes::default();
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            // A user of its own per round (a user holds 100 AG-UI runs).
            if round > 0 {
                ws = connect_with(addr, &format!("user_id=cost{round}&protocol=ag-ui")).await;
            }
            let before = server.cpu_seconds();
            for n in 0..RUNS {
                let run_id = format!("cost-{round}-{n}");
                ag_ui_ws_run(&mut ws, &run_id, Some(&mut bytes)).await;
            }
            rounds.push(server.cpu_seconds() - before);
        }
        let ws_cpu = median(rounds);
        // The same runs in the wsc protocol.
        let mut legacy = connect(addr).await;
        gateway_run(&mut legacy, 0, "go", None).await;
        let mut rounds = Vec::new();
        for round in 0..ROUNDS {
            let before = server.cpu_seconds();
            for n in 1..=RUNS {
                gateway_run(&mut legacy, round * RUNS + n, "go", None).await;
            }
            rounds.push(server.cpu_seconds() - before);
        }
        let legacy_cpu = median(rounds);
        // Ten readers of each run: one runs it, nine join it.
        let mut readers = Vec::new();
        for _ in 0..10 {
            readers.push(connect_with(addr, "user_id=fan&protocol=ag-ui").await);
        }
        let before = server.cpu_seconds();
        for n in 0..RUNS / 4 {
            let run_id = format!("fan-{n}");
            let start =
                json!({"type": "run_agent", "payload": {"input": run_input(&run_id, "go")}});
            readers[0]
                .send(Message::text(start.to_string()))
                .await
                .expect("send");
            // The run exists once its first event is out: then they join.
            let first = readers[0].next().await;
            assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
            for reader in &mut readers[1..] {
                let join = json!({"type": "join_run", "payload": {"run_id": run_id}});
                reader
                    .send(Message::text(join.to_string()))
                    .await
                    .expect("send");
            }
            let mut reads = Vec::new();
            for (i, reader) in readers.iter_mut().enumerate() {
                let run_id = run_id.clone();
                reads.push(async move {
                    let got = read_ag_ui_frames(reader, &run_id, None).await;
                    if i == 0 { got + 1 } else { got }
                });
            }
            for got in futures_util::future::join_all(reads).await {
                assert_eq!(got, DELTAS as u64 + 4);
            }
        }
        let fanout_cpu = server.cpu_seconds() - before;
        (ws_cpu, legacy_cpu, fanout_cpu, bytes)
    });
    let deltas = bytes.deltas.max(1) as f64;
    let (ws_bytes, ws_wire) = (bytes.payload as f64 / deltas, bytes.wire as f64 / deltas);
    let (sse_bytes, sse_wire) = rt.block_on(upstream_bytes_per_delta(upstream));
    let us = |cpu: f64, n: u64| cpu * 1e6 / n as f64;
    let (ws_us, legacy_us) = (us(ws_cpu, events), us(legacy_cpu, events));
    let fanout_us = us(fanout_cpu, (RUNS / 4) * 10 * (DELTAS as u64 + 4));
    // The mean length of the run ids above ("cost-0-0" … "cost-4-19").
    let run_id_len = (0..ROUNDS)
        .flat_map(|round| (0..RUNS).map(move |n| format!("cost-{round}-{n}").len() as f64))
        .sum::<f64>()
        / (ROUNDS * RUNS) as f64;
    eprintln!(
        "AG-UI out: gateway CPU per event {ws_us:.2} µs (wsc protocol {legacy_us:.2} µs), \
         per delivered event with 10 readers {fanout_us:.2} µs; bytes per text delta: \
         payload {ws_bytes:.1} (upstream SSE text {sse_bytes:.1}, allowed {:.1}), \
         on the wire {ws_wire:.1} (upstream {sse_wire:.1}, allowed {:.1})",
        sse_bytes + 24.0 + run_id_len,
        sse_wire + 24.0 + run_id_len,
    );
    println!(
        "{}",
        json!({
            "ag_ui": true,
            "events": events,
            "cpu_us_per_event_ag_ui": ws_us,
            "cpu_us_per_event_wsc": legacy_us,
            "cpu_us_per_delivered_event_10_readers": fanout_us,
            "ws_bytes_per_delta": ws_bytes,
            "sse_bytes_per_delta": sse_bytes,
            "ws_wire_bytes_per_delta": ws_wire,
            "sse_wire_bytes_per_delta": sse_wire,
            "run_id_len": run_id_len,
        })
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
