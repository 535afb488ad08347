//! Helpers shared by the gateway's socket-level test binaries: an
//! in-process gateway on a free loopback port, a tokio-tungstenite client,
//! raw HTTP, an SSE reader, and a proxy that cuts connections at random.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use wsc_core::{
    ConnectionEstablished, Frame, MessageType, StartAgent, WebSocketMessage, parse_server_frame,
    serialize,
};
use wsc_server::{Gateway, GatewayConfig};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) struct Running {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) gateway: Gateway,
    pub(crate) stop: Option<oneshot::Sender<()>>,
}

pub(crate) async fn start(config: GatewayConfig) -> Running {
    start_gateway(Gateway::new(config)).await
}

/// A gateway in `--auth jwt` (its secret the tests' own): any token a
/// client makes up is refused with 401.
pub(crate) async fn start_jwt() -> Running {
    start(GatewayConfig {
        auth: wsc_server::AuthMode::Jwt(
            wsc_server::JwtAuth::new("test-secret-of-thirty-two-bytes!").unwrap(),
        ),
        ..Default::default()
    })
    .await
}

/// A gateway on tokio's clock, for tests under paused time
/// (`#[tokio::test(start_paused = true)]`): heartbeats, TTLs and upkeep
/// follow the simulated time, sockets stay real.
#[allow(dead_code)]
pub(crate) async fn start_on_tokio_time(config: GatewayConfig) -> Running {
    let gateway = Gateway::builder(config)
        .clock(wsc_core::TokioClock::new().shared())
        .build()
        .await
        .expect("no redis");
    start_gateway(gateway).await
}

pub(crate) async fn start_gateway(gateway: Gateway) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let g = gateway.clone();
    tokio::spawn(async move {
        g.serve(listener, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        addr,
        gateway,
        stop: Some(stop),
    }
}

pub(crate) async fn connect(r: &Running, query: &str) -> (Ws, Value) {
    let (mut ws, _) = connect_async(format!("ws://{}/ws?{query}", r.addr))
        .await
        .unwrap();
    let hello = next_frame(&mut ws).await.expect("connection_established");
    // The wire JSON (what the tests inspect) is the protocol's typed frame.
    if let Err(e) = ConnectionEstablished::from_message(&hello) {
        panic!("not a connection_established frame: {e}: {hello:?}");
    }
    (ws, hello.payload)
}

/// A handshake's HTTP status (101 when upgraded) and whether the answer
/// carried `Retry-After`.
pub(crate) async fn handshake(r: &Running, query: &str) -> (u16, bool) {
    match connect_async(format!("ws://{}/ws?{query}", r.addr)).await {
        Ok(_) => (101, false),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            resp.headers().get("retry-after").is_some(),
        ),
        Err(e) => panic!("{e}"),
    }
}

/// Reads until the server's close frame and returns its code.
pub(crate) async fn close_code(ws: &mut Ws) -> CloseCode {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

pub(crate) async fn next_frame(ws: &mut Ws) -> Option<WebSocketMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("frame in time")?
        {
            Ok(Message::Text(t)) => return Some(parse_server_frame(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Sends a `ping` and checks that the next frame is its `pong`.
pub(crate) async fn ping_pong(ws: &mut Ws) {
    send(ws, &WebSocketMessage::new(MessageType::Ping, json!({}))).await;
    assert_eq!(
        next_frame(ws).await.expect("a pong").message_type,
        MessageType::Pong
    );
}

pub(crate) async fn send(ws: &mut Ws, msg: &WebSocketMessage) {
    ws.send(Message::text(serialize(msg))).await.unwrap();
}

pub(crate) async fn http_get(r: &Running, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with(r, path, "").await;
    (status, body)
}

/// A GET with extra header lines (each ending in `\r\n`); the status, the
/// response head and the body.
pub(crate) async fn http_get_with(r: &Running, path: &str, extra: &str) -> (u16, String, String) {
    http_request(
        r,
        &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await
}

/// Sends one raw HTTP/1.1 request (asking to close); the status, the
/// response head and the body.
async fn http_request(r: &Running, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((buf.as_str(), ""));
    (status, head.to_owned(), body.to_owned())
}

/// Whether `session` is recorded detached within about two seconds.
pub(crate) async fn detached_soon(r: &Running, session: &str) -> bool {
    for _ in 0..100 {
        let record = r
            .gateway
            .sessions()
            .session(session)
            .await
            .unwrap()
            .expect("kept");
        if record.detached_at.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Sends a raw WebSocket handshake with `path_and_query` and `extra`
/// headers; returns the status line and body the gateway answered with, or
/// an empty string if it closed the connection without an answer.
pub(crate) async fn raw_handshake(r: &Running, path_and_query: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    // The server may answer and close before reading everything we send.
    let _ = s.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

pub(crate) fn start_agent(tools: &[&str], delay_ms: u64) -> WebSocketMessage {
    StartAgent {
        input: Some("find it".into()),
        agent_name: Some("triage".into()),
        tools: Some(tools.iter().map(|t| (*t).to_owned()).collect()),
        step_delay_ms: Some(delay_ms),
        thread_id: None,
    }
    .to_message()
}

/// Parses a Prometheus text exposition with a real parser; the returned
/// function gives a sample's value by name (a histogram's: its count).
pub(crate) fn metric_values(body: &str) -> impl Fn(&str) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition");
    move |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(b) => b
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(f64::NAN, |b| b.count),
                _ => f64::NAN,
            })
    }
}

/// A POST with a JSON body and extra header lines; the status and body.
pub(crate) async fn http_post(r: &Running, path: &str, extra: &str, body: &str) -> (u16, String) {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = http_request(r, &request).await;
    (status, body)
}

/// The Python of the cross-language tests: `WSC_PYTHON`, else the venv
/// `cargo xtask ci` prepares in `target/pyenv` (with `websockets` and the
/// example agents' packages).
pub(crate) fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("WSC_PYTHON") {
        return std::path::PathBuf::from(p);
    }
    let venv =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the cross-language tests: run `cargo xtask ci` (it prepares target/pyenv) or set WSC_PYTHON"
    );
    venv
}

/// A gateway running its runs on `runner`, on `clock`, serving on a free
/// port.
pub(crate) async fn start_with_runner(
    config: GatewayConfig,
    runner: std::sync::Arc<dyn wsc_server::AgentRunner>,
    clock: wsc_core::SharedClock,
) -> Running {
    let gateway = Gateway::builder(config)
        .runner(runner)
        .clock(clock)
        .build()
        .await
        .expect("no redis");
    start_gateway(gateway).await
}

/// Reads one run's frames up to its terminal frame, checking every frame
/// arrives once, in order (seq one more than the last).
pub(crate) async fn read_run(ws: &mut Ws, last_seq: &mut u64) -> (String, Vec<WebSocketMessage>) {
    let mut frames = Vec::new();
    loop {
        let f = next_frame(ws).await.expect("the run's frames");
        let Some(seq) = f.seq else { continue };
        assert_eq!(seq, *last_seq + 1, "no gap, no duplicate: {f:?}");
        *last_seq = seq;
        let end = matches!(
            f.message_type,
            MessageType::AgentCompleted | MessageType::AgentError
        );
        frames.push(f);
        if end {
            let run_id = frames[0].payload["run_id"].as_str().unwrap().to_owned();
            return (run_id, frames);
        }
    }
}

/// A run's events as the gateway holds them (`GET /ag-ui/runs/{runId}/events`
/// straight from the gateway): the reference a reader's events must equal.
pub(crate) async fn ag_ui_run_log(
    addr: std::net::SocketAddr,
    user: &str,
    run_id: &str,
) -> Vec<Value> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<axum::body::Bytes>>();
    let request = hyper::Request::get(format!("http://{addr}/ag-ui/runs/{run_id}/events"))
        .header("x-wsc-user-id", user)
        .body(http_body_util::Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200, "{user} {run_id}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// The AG-UI event types of a run of the simulated agent (one tool, the
/// answer in three parts).
pub(crate) const SIMULATED_AG_UI_RUN: [&str; 16] = [
    "RUN_STARTED",
    "REASONING_START",
    "REASONING_MESSAGE_START",
    "REASONING_MESSAGE_CONTENT",
    "REASONING_MESSAGE_END",
    "REASONING_END",
    "TOOL_CALL_START",
    "TOOL_CALL_ARGS",
    "TOOL_CALL_END",
    "TOOL_CALL_RESULT",
    "TEXT_MESSAGE_START",
    "TEXT_MESSAGE_CONTENT",
    "TEXT_MESSAGE_CONTENT",
    "TEXT_MESSAGE_CONTENT",
    "TEXT_MESSAGE_END",
    "RUN_FINISHED",
];

// ---- A loopback proxy that cuts connections (chaos.rs, typescript.rs) ----

/// What the proxy did.
#[derive(Default)]
pub(crate) struct ProxyStats {
    pub(crate) connections: AtomicU64,
    /// Connections that carried at least one agent run (others were
    /// refused, e.g. 503 while Redis restarted, or closed idle).
    pub(crate) with_runs: AtomicU64,
    pub(crate) cut: AtomicU64,
}

/// Where a marked connection is cut.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// At the n-th frame after `agent_started` (1..=5: never after
    /// `agent_completed`, so no start of a later run is in flight),
    /// keeping this share of that frame.
    MidRun(u32, f64),
    /// After this many bytes from the server past the HTTP head: during
    /// `connection_established`, in a run, or between runs while the next
    /// `start_agent` is on its way (then it is lost with the connection).
    Anywhere(usize),
    /// Right after the k-th `agent_completed`, when the client sends its
    /// next `start_agent`: that start is swallowed and the connection cut.
    AfterRun(u32),
}

/// Starts a proxy to `upstream` on a free port; each connection is marked
/// for a cut with probability `cut_rate`, mid-run or (`anywhere`) at any
/// byte.
pub(crate) async fn chaos_proxy(
    upstream: SocketAddr,
    cut_rate: f64,
    seed: u64,
    anywhere: bool,
) -> (SocketAddr, Arc<ProxyStats>) {
    proxy(upstream, cut_rate, seed, anywhere, false).await
}

/// A proxy for any protocol over HTTP (SSE, not only WebSocket): each
/// connection is marked for a cut with probability `cut_rate`, at a
/// random byte of what the server sends past its first response head.
pub(crate) async fn byte_cutting_proxy(
    upstream: SocketAddr,
    cut_rate: f64,
    seed: u64,
) -> (SocketAddr, Arc<ProxyStats>) {
    proxy(upstream, cut_rate, seed, true, true).await
}

async fn proxy(
    upstream: SocketAddr,
    cut_rate: f64,
    seed: u64,
    anywhere: bool,
    only_bytes: bool,
) -> (SocketAddr, Arc<ProxyStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(ProxyStats::default());
    let s = stats.clone();
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            s.connections.fetch_add(1, Ordering::Relaxed);
            let plan = rng.random_bool(cut_rate).then(|| {
                if only_bytes || (anywhere && rng.random_bool(0.7)) {
                    // A run is about 2 KB on the wire; a connection carries
                    // up to ten.
                    Cut::Anywhere(rng.random_range(1..=8_000))
                } else if anywhere {
                    Cut::AfterRun(rng.random_range(1..=3u32))
                } else {
                    Cut::MidRun(rng.random_range(1..=5u32), rng.random_range(0.0..1.0f64))
                }
            });
            // Bytes only: a connection not marked is relayed as bytes too
            // (a cut point it never reaches), not parsed as WebSocket.
            let plan = plan.or(only_bytes.then_some(Cut::Anywhere(usize::MAX)));
            tokio::spawn(relay(client, server, plan, s.clone()));
        }
    });
    (addr, stats)
}

/// Relays one connection. Client to server is copied as it comes; server
/// to client is parsed into WebSocket frames (the server's are unmasked)
/// so a cut can land mid-run.
async fn relay(client: TcpStream, server: TcpStream, plan: Option<Cut>, stats: Arc<ProxyStats>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when a cut begins: what the client sends from then on is
    // swallowed, as frames in flight are when a connection dies.
    let dying = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swallow = dying.clone();
    let upstream = tokio::spawn(async move {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if swallow.load(Ordering::Relaxed) {
                continue;
            }
            if server_write.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        (client_read, server_write)
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut head_done = false;
    let mut in_run_frames: Option<u32> = None;
    let mut saw_run = false;
    let mut forwarded = 0usize;
    let mut runs_seen = 0u32;
    let cut = 'relay: loop {
        let n = match server_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break 'relay false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if client_write.write_all(&buf[..end + 4]).await.is_err() {
                break 'relay false;
            }
            buf.drain(..end + 4);
            head_done = true;
        }
        if let Some(Cut::Anywhere(at)) = plan {
            // Forward what fits before the cut point, then cut.
            let mut room = at.saturating_sub(forwarded);
            // Never inside a later response's head on a kept-alive
            // connection (a browser reads a torn head as a failed CORS
            // check, not a cut): after it.
            if let Some(start) = find(&buf[..room.min(buf.len())], b"HTTP/1.1 ") {
                match find(&buf[start..], b"\r\n\r\n") {
                    Some(end) if start + end + 4 > room => room = start + end + 4,
                    None => room = usize::MAX,
                    _ => {}
                }
            }
            if buf.len() >= room {
                // The client gets the bytes before the cut and may answer
                // them (a `start_agent` after `agent_completed`): its
                // answer is lost with the connection.
                dying.store(true, Ordering::Relaxed);
                let _ = client_write.write_all(&buf[..room]).await;
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                break 'relay true;
            }
            forwarded += buf.len();
            if client_write.write_all(&buf).await.is_err() {
                break 'relay false;
            }
            buf.clear();
            continue;
        }
        while let Some(len) = frame_len(&buf) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let text = String::from_utf8_lossy(&frame);
            // The wsc protocol's run frames, or the AG-UI dialect's.
            if text.contains(r#""type":"agent_started""#)
                || text.contains(r#""type":"RUN_STARTED""#)
            {
                if !saw_run {
                    saw_run = true;
                    stats.with_runs.fetch_add(1, Ordering::Relaxed);
                }
                in_run_frames = Some(0);
            } else if let Some(k) = in_run_frames.as_mut() {
                *k += 1;
                if let Some(Cut::MidRun(at, keep)) = plan
                    && *k == at
                {
                    let part = ((frame.len() as f64) * keep) as usize;
                    let _ = client_write.write_all(&frame[..part]).await;
                    break 'relay true;
                }
            }
            let completed = text.contains(r#""type":"agent_completed""#)
                || text.contains(r#""type":"RUN_FINISHED""#);
            if completed {
                in_run_frames = None;
                runs_seen += 1;
            }
            if client_write.write_all(&frame).await.is_err() {
                break 'relay false;
            }
            if completed && matches!(plan, Some(Cut::AfterRun(k)) if k == runs_seen) {
                dying.store(true, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                break 'relay true;
            }
        }
    };
    if cut {
        stats.cut.fetch_add(1, Ordering::Relaxed);
        // A reset, not a goodbye: both sides see the connection die.
        let _ = client_write.as_ref().set_zero_linger();
        let _ = server_read.as_ref().set_zero_linger();
    }
    upstream.abort();
    // The halves close when dropped here and in the aborted copy task.
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The length of the first complete WebSocket frame in `buf`, if any.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let b1 = *buf.get(1)?;
    let masked = b1 & 0x80 != 0;
    let (header, len) = match b1 & 0x7f {
        126 => (
            4,
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        ),
        127 => (10, u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)),
        n => (2, u64::from(n)),
    };
    let total = header + if masked { 4 } else { 0 } + usize::try_from(len).ok()?;
    (buf.len() >= total).then_some(total)
}

/// One SSE message: its `id` (0 if none), its `event` name, its data.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SseMessage {
    pub(crate) id: u64,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Sends a request and returns the status and the SSE messages as they
/// arrive (the channel closes at the end of the response).
pub(crate) async fn sse(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<SseMessage>,
    String,
) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<axum::body::Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or_else(axum::body::Bytes::new, |b| {
        axum::body::Bytes::from(b.to_string())
    });
    let response = client
        .request(request.body(http_body_util::Full::new(body)).unwrap())
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = response.into_body();
    tokio::spawn(async move {
        let mut buffer = String::new();
        while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
            if tx.is_closed() {
                // The reader has gone: so does the connection.
                return;
            }
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.push_str(std::str::from_utf8(&data).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut message = SseMessage {
                    id: 0,
                    event: None,
                    data: String::new(),
                };
                let mut lines = Vec::new();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        message.id = id.parse().unwrap();
                    } else if let Some(event) = line.strip_prefix("event: ") {
                        message.event = Some(event.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        lines.push(data);
                    }
                }
                if lines.is_empty() {
                    // A comment (the keep-alive).
                    continue;
                }
                message.data = lines.join("\n");
                if tx.send(message).is_err() {
                    return;
                }
            }
        }
    });
    (status, rx, content_type)
}

/// Every message until the stream ends (a minute at most).
pub(crate) async fn sse_all(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<SseMessage>,
) -> Vec<SseMessage> {
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the stream ends")
    {
        out.push(m);
    }
    out
}

/// The next `n` messages.
pub(crate) async fn sse_take(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<SseMessage>,
    n: usize,
) -> Vec<SseMessage> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a message in time")
            .expect("the stream is still open");
        out.push(m);
    }
    out
}

pub(crate) fn sse_types(messages: &[SseMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(&m.data).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A gateway in a runtime of its own, so it can die at once as a killed
/// process does (its tasks stop mid-run, its sockets close, nothing is
/// written on the way out).
pub(crate) struct Doomed {
    pub(crate) addr: SocketAddr,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Doomed {
    /// Makes the gateway with `make` and serves it on `bind` (port 0: any).
    pub(crate) fn start<F, Fut>(bind: SocketAddr, make: F) -> Doomed
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Gateway>,
    {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, killed) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let gateway = make().await;
                // A killed gateway's runtime drops its listener in the
                // background: the port it held may take a moment to free.
                let mut tries = 0;
                let listener = loop {
                    match TcpListener::bind(bind).await {
                        Ok(listener) => break listener,
                        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                            tries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("bind {bind}: {e}"),
                    }
                };
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
                let _ = killed.await;
            });
            // Every task of the gateway stops where it is.
            runtime.shutdown_background();
        });
        Doomed {
            addr: addr_rx.recv().unwrap(),
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Kills it.
    pub(crate) fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Doomed {
    fn drop(&mut self) {
        self.kill();
    }
}
