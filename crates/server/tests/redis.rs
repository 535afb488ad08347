//! Two gateways sharing a real redis-server: resumes across gateways over
//! real sockets, limits and connection caps across both, and Redis killed
//! and restarted under load (fail-open keeps serving and loses nothing;
//! fail-closed refuses and recovers). Three gateways on a Redis Cluster:
//! resumes on each, a master killed under load (its replica takes over)
//! and slots moved under load.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use wsc_core::{MessageType, WebSocketMessage, parse_server_frame, serialize};
use wsc_loadgen::{DemoConfig, DemoProgress, run_demo};
use wsc_redis::testing::{RedisCluster, RedisServer, shared_url, unique_prefix};
use wsc_server::{Gateway, GatewayConfig, RedisFailurePolicy, RedisSettings, SimulatedAgent};

mod support;

/// The event monitors of in-process gateways, for `run_demo`'s second check.
fn monitors(gateways: &[Gateway]) -> Vec<Arc<wsc_event_monitor::EventMonitor>> {
    gateways.iter().map(|g| g.event_monitor().clone()).collect()
}

/// The demo's load in a task: 30 users, `runs` runs each, 30 % of
/// connections cut (resumed on any of `urls`), 40 ms between events.
fn demo_load(
    gateways: Vec<Gateway>,
    urls: Vec<String>,
    runs: usize,
    seed: u64,
) -> tokio::task::JoinHandle<wsc_loadgen::DemoReport> {
    demo_load_with(
        gateways,
        urls,
        runs,
        seed,
        DemoConfig::default().run_timeout,
    )
}

/// [`demo_load`], each run given `run_timeout` to complete.
fn demo_load_with(
    gateways: Vec<Gateway>,
    urls: Vec<String>,
    runs: usize,
    seed: u64,
    run_timeout: Duration,
) -> tokio::task::JoinHandle<wsc_loadgen::DemoReport> {
    tokio::spawn(async move {
        let config = DemoConfig {
            users: 30,
            runs,
            disconnect_rate: 0.3,
            step_delay: Duration::from_millis(40),
            flood_pings: 0,
            seed: Some(seed),
            run_timeout,
            ..Default::default()
        };
        run_demo(
            &monitors(&gateways),
            &urls,
            &config,
            Arc::new(DemoProgress::default()),
        )
        .await
    })
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Node {
    gateway: Gateway,
    addr: std::net::SocketAddr,
}

async fn node(config: GatewayConfig, redis: RedisSettings) -> Node {
    let gateway = Gateway::with_redis(config, Arc::new(SimulatedAgent), redis)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    Node { gateway, addr }
}

async fn pair(config: GatewayConfig, redis: RedisSettings) -> (Node, Node) {
    let a = node(config.clone(), redis.clone()).await;
    let b = node(config, redis).await;
    // Let both announcement listeners subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (a, b)
}

fn settings(url: &str, failure: RedisFailurePolicy) -> RedisSettings {
    RedisSettings {
        prefix: unique_prefix("gw"),
        failure,
        ..RedisSettings::new(url)
    }
}

async fn next_frame(ws: &mut Ws) -> WebSocketMessage {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap()
        {
            Message::Text(t) => return parse_server_frame(&t).unwrap(),
            _ => continue,
        }
    }
}

async fn connect(node: &Node, query: &str) -> (Ws, Value) {
    let (mut ws, _) = connect_async(format!("ws://{}/ws?{query}", node.addr))
        .await
        .unwrap();
    let hello = next_frame(&mut ws).await;
    assert_eq!(hello.message_type, MessageType::ConnectionEstablished);
    (ws, hello.payload)
}

async fn status(node: &Node, query: &str) -> u16 {
    match connect_async(format!("ws://{}/ws?{query}", node.addr)).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// Whether a handshake as `query` gets `want` within `tries` attempts
/// `every` apart.
async fn status_soon(node: &Node, query: &str, want: u16, tries: u32, every: Duration) -> bool {
    for _ in 0..tries {
        if status(node, query).await == want {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// The query resuming `hello`'s session for `user` after `last`.
fn resume_query(user: &str, hello: &Value, last: u64) -> String {
    format!(
        "user_id={user}&session_id={}&resume_token={}&last_seq={last}",
        hello["session_id"].as_str().unwrap(),
        hello["resume_token"].as_str().unwrap()
    )
}

/// Reads frames `last + 1 ..= total`, each once and in order; their types.
async fn read_through(ws: &mut Ws, last: &mut u64, total: u64) -> Vec<MessageType> {
    let mut types = Vec::new();
    while *last < total {
        let f = next_frame(ws).await;
        assert_eq!(
            f.seq,
            Some(*last + 1),
            "no gap, no duplicate across gateways"
        );
        *last += 1;
        types.push(f.message_type);
    }
    types
}

/// Starts a simulated run calling `tools`, `delay_ms` between events;
/// returns how many frames it sends.
async fn start_run(ws: &mut Ws, tools: &[&str], delay_ms: u64) -> u64 {
    let start = json!({"tools": tools, "step_delay_ms": delay_ms});
    send(ws, WebSocketMessage::new(MessageType::StartAgent, start)).await;
    3 + 2 * tools.len() as u64
}

async fn send(ws: &mut Ws, msg: WebSocketMessage) {
    ws.send(Message::text(serialize(&msg))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_dropped_on_one_gateway_resumes_on_the_other_with_exactly_what_it_missed() {
    let (a, b) = pair(
        GatewayConfig::default(),
        settings(&shared_url(), RedisFailurePolicy::FailOpen),
    )
    .await;
    let (mut ws, hello) = connect(&a, "user_id=ann").await;
    let total = start_run(
        &mut ws,
        &["search", "calculator", "browser", "code", "mail"],
        40,
    )
    .await;
    let mut last = 0;
    while last < 4 {
        let f = next_frame(&mut ws).await;
        assert_eq!(f.seq, Some(last + 1));
        last += 1;
    }
    drop(ws); // abrupt: no close handshake; the agent keeps running on A
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (mut ws, again) = connect(&b, &resume_query("ann", &hello, last)).await;
    assert_eq!(again["resumed"], true, "{again}");
    let types = read_through(&mut ws, &mut last, total).await;
    assert_eq!(types.last(), Some(&MessageType::AgentCompleted));
    assert!(b.gateway.stats().resumes >= 1);
    // And the run validated on the gateway it ran on.
    let run = a.gateway.event_monitor().session_count();
    assert_eq!(run, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_limits_and_the_connection_cap_hold_across_both_gateways() {
    let config = GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 10,
            max_connections_per_user: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let (a, b) = pair(
        config,
        settings(&shared_url(), RedisFailurePolicy::FailOpen),
    )
    .await;
    let (mut on_a, _) = connect(&a, "user_id=bo").await;
    let (mut on_b, _) = connect(&b, "user_id=bo").await;
    // The cap: two connections across both gateways.
    assert_eq!(status(&a, "user_id=bo").await, 429);
    assert_eq!(status(&b, "user_id=bo").await, 429);
    // Thirty pings alternating between the gateways: ten pongs in all.
    let (mut pongs, mut refused) = (0, 0);
    for i in 0..30 {
        let ws = if i % 2 == 0 { &mut on_a } else { &mut on_b };
        send(
            ws,
            WebSocketMessage::new(MessageType::Ping, json!({"i": i})),
        )
        .await;
        let reply = next_frame(ws).await;
        match reply.message_type {
            MessageType::Pong => pongs += 1,
            MessageType::Error => {
                assert_eq!(reply.payload["code"], "rate_limited");
                assert!(reply.payload["retry_after_ms"].as_u64().unwrap() > 0);
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((pongs, refused), (10, 20));
    // Closing one frees a place, on either gateway.
    on_a.close(None).await.unwrap();
    let recovered = status_soon(&b, "user_id=bo", 101, 100, Duration::from_millis(20)).await;
    assert!(recovered, "the place freed on A is usable on B");
}

async fn metric(node: &Node, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_loses_and_duplicates_nothing() {
    // A durable Redis (append-only file, synced on every write): a crash
    // loses nothing it acknowledged.
    let mut server = RedisServer::start_durable();
    let (a, b) = pair(
        GatewayConfig {
            limits: wsc_server::LimitsConfig {
                max_handshakes_per_ip: 0,
                max_messages_per_ip_per_minute: Some(0),
                ..Default::default()
            },
            ..Default::default()
        },
        settings(&server.url(), RedisFailurePolicy::FailOpen),
    )
    .await;
    let gateways = vec![a.gateway.clone(), b.gateway.clone()];
    let urls = vec![format!("ws://{}/ws", a.addr), format!("ws://{}/ws", b.addr)];
    let load = demo_load(gateways, urls, 6, 11);
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.restart();
    let report = tokio::time::timeout(Duration::from_secs(120), load)
        .await
        .expect("the load finishes")
        .unwrap();
    eprintln!("{}", report.to_table());
    assert!(report.passed(), "{}", report.to_table());
    assert!(
        report.resumes > 0 && report.resumes_on_other_gateway > 0,
        "{report:?}"
    );
    let errors = metric(&a, "wsc_gateway_redis_errors_total").await
        + metric(&b, "wsc_gateway_redis_errors_total").await;
    assert!(errors > 0.0, "the outage was noticed");
    assert_eq!(metric(&a, "wsc_gateway_redis_up").await, 1.0, "and is over");
    assert_eq!(metric(&a, "wsc_gateway_outbox_events").await, 0.0);
    assert_eq!(metric(&a, "wsc_gateway_outbox_dropped_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_while_redis_is_down_and_recovers() {
    let mut server = RedisServer::start();
    let a = node(
        GatewayConfig::default(),
        settings(&server.url(), RedisFailurePolicy::FailClosed),
    )
    .await;
    let (mut ws, _) = connect(&a, "user_id=cy").await;
    server.kill();
    // Frames are refused as rate limited (the store cannot decide) ...
    send(&mut ws, WebSocketMessage::new(MessageType::Ping, json!({}))).await;
    let reply = next_frame(&mut ws).await;
    assert_eq!(reply.message_type, MessageType::Error);
    assert_eq!(reply.payload["code"], "rate_limited", "{reply:?}");
    // ... and, once the health check has noticed, handshakes get 503.
    let refused = status_soon(&a, "user_id=dee", 503, 100, Duration::from_millis(50)).await;
    assert!(refused);
    server.restart();
    let back = status_soon(&a, "user_id=dee", 101, 100, Duration::from_millis(50)).await;
    assert!(back, "serving again once Redis is back");
}

/// A TCP proxy to `upstream` that holds back everything Redis sends by
/// `delay` (as set at the time it arrives): replies keep their order and
/// pipelined ones overlap, as from a busy Redis.
async fn delaying_proxy(
    upstream: std::net::SocketAddr,
    delay: Arc<std::sync::Mutex<Duration>>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let delay = delay.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                });
                let (tx, mut rx) =
                    tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    while let Some((due, bytes)) = rx.recv().await {
                        tokio::time::sleep_until(due).await;
                        if to_client.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match from_server.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let due = tokio::time::Instant::now()
                        + *delay.lock().unwrap_or_else(|p| p.into_inner());
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Issue 34: a Redis answering every command 1.2 s late — later than the
/// old fixed 1 s reply timeout, within the default `--redis-timeout` (2 s)
/// — is busy, not unreachable: five clients connecting at once each get
/// `connection_established` first, with a session in Redis (no fallback to
/// this gateway's memory), and the gateway stays on Redis with no call
/// timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_within_the_reply_timeout_is_busy_not_unreachable() {
    let server = RedisServer::start();
    let delay = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let upstream = server
        .url()
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = delaying_proxy(upstream, delay.clone()).await;
    let redis = settings(&format!("redis://{proxy}/"), RedisFailurePolicy::FailOpen);
    assert_eq!(redis.timeout, wsc_server::DEFAULT_REDIS_TIMEOUT);
    let a = node(GatewayConfig::default(), redis).await;
    *delay.lock().unwrap() = Duration::from_millis(1200);
    let queries: Vec<String> = (0..5).map(|i| format!("user_id=slow-{i}")).collect();
    let clients = futures_util::future::join_all(queries.iter().map(|q| connect(&a, q))).await;
    for (_, hello) in &clients {
        let session = hello["session_id"].as_str().unwrap();
        assert!(
            !session.starts_with("local-"),
            "a fallback session: {hello}"
        );
    }
    let stats = a.gateway.stats();
    assert_eq!(
        (stats.local_fallback_sessions, stats.redis_timeouts),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(metric(&a, "wsc_gateway_redis_up").await, 1.0);
}

/// Sends one inline command to the Redis at `url` and returns its reply
/// line.
async fn redis_command(url: &str, command: &str) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(format!("{command}\r\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    BufReader::new(socket).read_line(&mut line).await.unwrap();
    line
}

/// Issue 34: when the session store fails during a handshake (here: its
/// session keys refused by an ACL while the connection counts still
/// work), the client is refused before the upgrade with 503 `unavailable`
/// and `Retry-After` — never upgraded with an `internal` error as its
/// first frame — and resumes exactly once the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_store_cannot_give_is_refused_before_the_upgrade() {
    let server = RedisServer::start();
    let redis = settings(&server.url(), RedisFailurePolicy::FailOpen);
    let prefix = redis.prefix.clone();
    let a = node(GatewayConfig::default(), redis).await;
    let (mut ws, hello) = connect(&a, "user_id=ada").await;
    let last = start_run(&mut ws, &[], 0).await;
    let _ = read_through(&mut ws, &mut 0, last).await;
    drop(ws);
    let allow = format!("ACL SETUSER default resetkeys ~{prefix}conn:* ~{prefix}token-secret");
    assert_eq!(redis_command(&server.url(), &allow).await.trim(), "+OK");

    let query = resume_query("ada", &hello, last);
    let answer = match connect_async(format!("ws://{}/ws?{query}", a.addr)).await {
        Ok((mut ws, _)) => panic!("upgraded; first frame {:?}", next_frame(&mut ws).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().get("retry-after").is_some());
    let body = String::from_utf8_lossy(answer.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains("unavailable"), "{body}");

    assert_eq!(
        redis_command(&server.url(), "ACL SETUSER default allkeys")
            .await
            .trim(),
        "+OK"
    );
    let back = status_soon(&a, &query, 101, 100, Duration::from_millis(50)).await;
    assert!(back, "resumable once the store works again");
    let (_ws, again) = connect(&a, &resume_query("ada", &hello, last)).await;
    assert_eq!(again["resumed"], true, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_while_redis_is_down_resumes_only_on_its_gateway() {
    let mut server = RedisServer::start();
    let (a, b) = pair(
        GatewayConfig::default(),
        settings(&server.url(), RedisFailurePolicy::FailOpen),
    )
    .await;
    server.kill();
    for node in [&a, &b] {
        let mut down = false;
        for _ in 0..100 {
            if metric(node, "wsc_gateway_redis_up").await == 0.0 {
                down = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(down, "the outage is noticed");
    }
    // A new session while Redis is down lives in A's memory only.
    let (mut ws, hello) = connect(&a, "user_id=lena").await;
    let session = hello["session_id"].as_str().unwrap().to_owned();
    assert!(session.starts_with("local-"), "{session}");
    send(
        &mut ws,
        WebSocketMessage::new(
            MessageType::StartAgent,
            json!({"tools": ["search", "fetch"], "step_delay_ms": 60}),
        ),
    )
    .await;
    for seq in 1..=2 {
        assert_eq!(next_frame(&mut ws).await.seq, Some(seq));
    }
    drop(ws); // abrupt; the run goes on in A's memory
    let query = format!(
        "user_id=lena&session_id={session}&resume_token={}&last_seq=2",
        hello["resume_token"].as_str().unwrap()
    );
    // B cannot hold it, with Redis down or up: 503, try elsewhere — never
    // a fresh session that would silently lose the rest of the run.
    assert_eq!(status(&b, &query).await, 503);
    server.restart();
    assert!(status_soon(&b, "user_id=probe", 101, 100, Duration::from_millis(50)).await);
    assert_eq!(status(&b, &query).await, 503);
    // A resumes it with exactly the frames after seq 2.
    let (mut ws, again) = connect(&a, &query).await;
    assert_eq!(again["resumed"], true, "{again}");
    let mut seq = 2;
    loop {
        let frame = next_frame(&mut ws).await;
        seq += 1;
        assert_eq!(frame.seq, Some(seq), "no gap, no duplicate");
        if frame.message_type == MessageType::AgentCompleted {
            break;
        }
    }
    assert_eq!(seq, 7);
}

/// `POST /api/publish` on one gateway reaches the user's session held by
/// the other (through the shared store and its announcements), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_published_on_one_gateway_reaches_a_session_on_the_other() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = pair(
        GatewayConfig {
            http: wsc_server::HttpConfig {
                api_key: Some(wsc_server::ApiKey::new("k".repeat(32)).unwrap()),
                ..Default::default()
            },
            ..Default::default()
        },
        settings(&shared_url(), RedisFailurePolicy::FailOpen),
    )
    .await;
    let (mut ws, _) = connect(&b, "user_id=ray").await;
    let post = |body: &'static str| async move {
        let mut s = TcpStream::connect(a.addr).await.unwrap();
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    };
    let frame =
        r#"{"user_id": "ray", "type": "agent_progress", "payload": {"n": 1}, "message_id": "x1"}"#;
    let answer = post(frame).await;
    assert!(answer.ends_with(r#"{"sessions":1}"#), "{answer}");
    let got = next_frame(&mut ws).await;
    assert_eq!(
        (got.message_type, got.seq, got.message_id.as_deref()),
        (MessageType::AgentProgress, Some(1), Some("x1"))
    );
    let answer = post(frame).await;
    assert!(answer.ends_with(r#"{"sessions":0}"#), "a repeat: {answer}");
}

/// On a Redis Cluster (the one `cargo xtask ci` starts): a run on gateway
/// A, its client cut twice, resuming on B and then on C while the run goes
/// on on A (live frames reach B and C through the cluster's pub/sub): every
/// frame once, in order; and the message limit holds across the three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_client_resumes_on_every_other_gateway_of_three() {
    let Some(url) = wsc_redis::testing::cluster_url() else {
        eprintln!("no WSC_REDIS_CLUSTER_URL: run `cargo xtask ci` (or `cargo xtask cluster`)");
        return;
    };
    let config = GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 12,
            ..Default::default()
        },
        ..Default::default()
    };
    let redis = settings(&url, RedisFailurePolicy::FailOpen);
    let nodes = [
        node(config.clone(), redis.clone()).await,
        node(config.clone(), redis.clone()).await,
        node(config, redis).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut ws, hello) = connect(&nodes[0], "user_id=cy").await;
    let tools = ["search", "calculator", "browser", "code", "mail", "maps"];
    let total = start_run(&mut ws, &tools, 60).await;
    let mut last = 0;
    for (hop, node) in nodes.iter().enumerate().skip(1) {
        while last < 4 * hop as u64 {
            let f = next_frame(&mut ws).await;
            assert_eq!(f.seq, Some(last + 1), "in order, once");
            last += 1;
        }
        drop(ws); // abrupt; the run goes on on A
        let (again, welcome) = connect(node, &resume_query("cy", &hello, last)).await;
        assert_eq!(
            welcome["resumed"], true,
            "resumed on gateway {hop}: {welcome}"
        );
        ws = again;
    }
    let types = read_through(&mut ws, &mut last, total).await;
    assert_eq!(types.last(), Some(&MessageType::AgentCompleted));
    // The message limit counts across the three gateways on the cluster:
    // the start above was one message, so eleven more pings pass.
    let (mut pongs, mut refused) = (0, 0);
    let mut sockets = Vec::new();
    for node in &nodes {
        sockets.push(connect(node, "user_id=cy").await.0);
    }
    for i in 0..18 {
        let ws = &mut sockets[i % 3];
        send(
            ws,
            WebSocketMessage::new(MessageType::Ping, json!({"i": i})),
        )
        .await;
        match next_frame(ws).await.message_type {
            MessageType::Pong => pongs += 1,
            MessageType::Error => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (pongs, refused),
        (11, 7),
        "one window across three gateways"
    );
}

/// Three gateways on a Redis Cluster of their own under demo load (30
/// users, `runs` runs each); after 0.8 s, `during` does something to the
/// cluster (on a blocking thread). Returns the load's report once it is
/// over, and the cluster.
async fn cluster_under_load(
    runs: usize,
    during: impl FnOnce(&mut RedisCluster) + Send + 'static,
) -> (wsc_loadgen::DemoReport, RedisCluster) {
    let (report, cluster, _) = cluster_under_load_with(None, runs, during).await;
    (report, cluster)
}

/// [`cluster_under_load`] on a cluster with `node_timeout` (its
/// `cluster-node-timeout`; `None`: the tests' short one), each run given
/// the failover's time on top of the demo's run timeout; also returns the
/// gateways' counters, summed.
async fn cluster_under_load_with(
    node_timeout: Option<Duration>,
    runs: usize,
    during: impl FnOnce(&mut RedisCluster) + Send + 'static,
) -> (
    wsc_loadgen::DemoReport,
    RedisCluster,
    wsc_server::GatewayStats,
) {
    let cluster = tokio::task::spawn_blocking(move || match node_timeout {
        Some(timeout) => RedisCluster::start_with_node_timeout(timeout),
        None => RedisCluster::start(),
    })
    .await
    .unwrap();
    let config = GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            max_messages_per_ip_per_minute: Some(0),
            ..Default::default()
        },
        ..Default::default()
    };
    let redis = settings(&cluster.url(), RedisFailurePolicy::FailOpen);
    let nodes = [
        node(config.clone(), redis.clone()).await,
        node(config.clone(), redis.clone()).await,
        node(config, redis).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateways: Vec<Gateway> = nodes.iter().map(|n| n.gateway.clone()).collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("ws://{}/ws", n.addr))
        .collect();
    let run_timeout = DemoConfig::default().run_timeout + 2 * node_timeout.unwrap_or_default();
    let load = demo_load_with(gateways, urls, runs, 23, run_timeout);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        during(&mut cluster);
        cluster
    })
    .await
    .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(180), load)
        .await
        .expect("the load finishes")
        .unwrap();
    eprintln!("{}", report.to_table());
    let mut stats = wsc_server::GatewayStats::default();
    for n in &nodes {
        let s = n.gateway.stats();
        stats.sessions_moved += s.sessions_moved;
        stats.slow_clients += s.slow_clients;
    }
    (report, cluster, stats)
}

/// Nothing lost, nothing twice, every run checked.
fn assert_exact(report: &wsc_loadgen::DemoReport) {
    let table = report.to_table();
    assert_eq!(report.events_duplicated, 0, "{table}");
    assert_eq!(report.events_lost, 0, "nothing lost silently: {table}");
    assert_eq!(report.runs_failed_validation, 0, "{table}");
    assert!(report.runs_completed > 0, "{table}");
}

/// [`assert_exact`], and every run complete or its client told.
fn assert_complete_or_told(report: &wsc_loadgen::DemoReport) {
    assert_exact(report);
    assert_eq!(
        report.runs_completed + report.runs_told,
        report.runs,
        "every run complete or its client told: {}",
        report.to_table()
    );
}

/// The failover test: a master is killed under load, its replica takes
/// over. Every run is either complete, once and in order, or its client
/// was told (a refused resume) — both counted; nothing lost silently,
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_load_loses_nothing_silently() {
    let (report, cluster) = cluster_under_load(6, |cluster| {
        let master = cluster.masters()[0];
        cluster.kill(master);
        cluster.wait_ok();
        let masters = cluster.masters();
        assert!(
            masters.len() == 3 && !masters.contains(&master),
            "a replica took over from {master}: masters now {masters:?}"
        );
    })
    .await;
    assert_complete_or_told(&report);
    drop(cluster);
}

/// The failover test at Redis's default `cluster-node-timeout` (15 s):
/// the killed master's sessions cannot be reached for ~17 s. Every run
/// completes (late) or its client is told; nothing lost silently, and no
/// live connection is closed as if its session had moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_at_redis_default_node_timeout_loses_nothing_silently() {
    let (report, cluster, stats) =
        cluster_under_load_with(Some(Duration::from_secs(15)), 6, |cluster| {
            let master = cluster.masters()[0];
            cluster.kill(master);
            cluster.wait_ok();
        })
        .await;
    assert_complete_or_told(&report);
    // No connection was closed as moved (each resume went to another
    // gateway than its lost connection's) or as too slow.
    assert_eq!(
        (stats.sessions_moved, stats.slow_clients),
        (0, 0),
        "{stats:?}"
    );
    drop(cluster);
}

/// Slots moved from one master to another under load (`redis-cli --cluster
/// reshard`, keys migrated while the gateways use them, `ASK` and
/// `TRYAGAIN` followed): every run complete, once and in order; nobody
/// even needs to be told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resharding_under_load_loses_nothing() {
    // 5 000 of a master's 5 461 slots move while 30 users run 20 runs
    // each: about as long, so most sessions on that master move in use.
    let (report, cluster) = cluster_under_load(20, |cluster| {
        let masters = cluster.masters();
        cluster.reshard(masters[0], masters[1], 5000);
        cluster.wait_ok();
    })
    .await;
    assert_exact(&report);
    assert_eq!(report.runs_completed, report.runs, "{}", report.to_table());
    assert_eq!(report.resumes_refused, 0, "{}", report.to_table());
    drop(cluster);
}

/// An AG-UI run's input for the simulated agent: `tools` called,
/// `delay_ms` between events.
fn ag_ui_input(run_id: &str, tools: &[&str], delay_ms: u64) -> Value {
    json!({
        "threadId": "t", "runId": run_id,
        "messages": [{"id": "m1", "role": "user", "content": "hi"}],
        "tools": [], "context": [], "state": {},
        "forwardedProps": {"tools": tools, "step_delay_ms": delay_ms},
    })
}

const ANA: (&str, &str) = ("x-wsc-user-id", "ana");

/// A gateway on Redis in a runtime of its own (see `support::Doomed`).
fn doomed(config: GatewayConfig, redis: RedisSettings) -> support::Doomed {
    support::Doomed::start("127.0.0.1:0".parse().unwrap(), move || async move {
        Gateway::with_redis(config, Arc::new(SimulatedAgent), redis)
            .await
            .unwrap()
    })
}

/// The events' texts; asserts they are numbered `first`, `first + 1` …
fn numbered(messages: &[support::SseMessage], first: u64) -> Vec<String> {
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.id, first + i as u64, "numbered in order: {messages:?}");
    }
    messages.iter().map(|m| m.data.clone()).collect()
}

/// A whole AG-UI run: it passes AG-UI's rules and has ended.
fn assert_whole(events: &[String]) {
    let mut rules = wsc_event_monitor::AgUiRules::new();
    for e in events {
        rules.check(e).unwrap_or_else(|v| panic!("{e}: {v}"));
    }
    assert!(rules.is_ended(), "ended: {events:?}");
}

/// The AG-UI events a `/ws?protocol=ag-ui` connection gets of `run_id`
/// until its terminal one.
async fn ws_run_events(ws: &mut Ws, run_id: &str) -> Vec<String> {
    let mut events = Vec::new();
    loop {
        let (_, run, event) = next_ag_ui(ws).await;
        if run != run_id {
            continue;
        }
        let end = ["RUN_FINISHED", "RUN_ERROR"].contains(&event["type"].as_str().unwrap());
        events.push(event.to_string());
        if end {
            return events;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ag_ui_run_on_one_gateway_is_read_resumed_joined_and_cancelled_from_another() {
    for url in wsc_redis::testing::urls() {
        ag_ui_across_gateways(&url).await;
    }
}

async fn ag_ui_across_gateways(url: &str) {
    let (a, b) = pair(
        GatewayConfig::default(),
        settings(url, RedisFailurePolicy::FailOpen),
    )
    .await;
    let input = ag_ui_input("r1", &["search", "fetch", "read"], 20);
    // Started on A, cut after 3 events…
    let (status, mut rx, _) =
        support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(input.clone())).await;
    assert_eq!(status, 200);
    let head = support::sse_take(&mut rx, 3).await;
    drop(rx);
    // …resumed on B after the third: exactly the rest.
    let resume = [ANA, ("last-event-id", "3")];
    let (status, rx, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r1/events", &resume, None).await;
    assert_eq!(status, 200);
    let rest = support::sse_all(rx).await;
    let mut run = numbered(&head, 1);
    run.extend(numbered(&rest, 4));
    assert_whole(&run);
    // Read whole on B, and a repeated start on B streams the same run:
    // B starts nothing.
    let (_, rx, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r1/events", &[ANA], None).await;
    assert_eq!(numbered(&support::sse_all(rx).await, 1), run);
    let (status, rx, _) = support::sse(b.addr, "POST", "/ag-ui", &[ANA], Some(input)).await;
    assert_eq!(status, 200);
    assert_eq!(numbered(&support::sse_all(rx).await, 1), run);
    assert_eq!(b.gateway.event_monitor().session_count(), 0, "no run on B");
    // Another user's run is not found anywhere; a reader with it all gets
    // 204.
    let bob = [("x-wsc-user-id", "bob")];
    let (status, _, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r1/events", &bob, None).await;
    assert_eq!(status, 404);
    let last = run.len().to_string();
    let done = [ANA, ("last-event-id", last.as_str())];
    let (status, _, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r1/events", &done, None).await;
    assert_eq!(status, 204);
    // The WebSocket dialect on B joins it too.
    let (mut ws, _) = connect(&b, "user_id=ana&protocol=ag-ui").await;
    let join = json!({"type": "join_run", "payload": {"run_id": "r1"}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    let joined = ws_run_events(&mut ws, "r1").await;
    let as_values = |events: &[String]| -> Vec<Value> {
        events
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect()
    };
    assert_eq!(as_values(&joined), as_values(&run));

    // A long run on A, cancelled from B: every reader ends with the
    // cancelled RUN_FINISHED, on both gateways.
    let long = ag_ui_input("r2", &["a", "b", "c", "d", "e", "f"], 300);
    let (_, mut on_a, _) = support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(long)).await;
    let started = support::sse_take(&mut on_a, 2).await;
    let (_, on_b, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r2/events", &[ANA], None).await;
    let (status, _, _) = support::sse(b.addr, "POST", "/ag-ui/runs/r2/cancel", &[ANA], None).await;
    assert_eq!(status, 202);
    let mut seen_on_a = numbered(&started, 1);
    seen_on_a.extend(numbered(&support::sse_all(on_a).await, 3));
    let seen_on_b = numbered(&support::sse_all(on_b).await, 1);
    assert_eq!(seen_on_a, seen_on_b, "one run, read on both");
    assert_whole(&seen_on_b);
    let end: Value = serde_json::from_str(seen_on_b.last().unwrap()).unwrap();
    assert_eq!(end["type"], "RUN_FINISHED");
    assert_eq!(end["outcome"]["type"], "cancelled", "{end}");
    assert!(seen_on_b.len() < 20, "cancelled early: {seen_on_b:?}");
    let (status, _, _) = support::sse(b.addr, "POST", "/ag-ui/runs/r2/cancel", &[ANA], None).await;
    assert_eq!(status, 404, "ended");
    // A stop_agent on B's WebSocket reaches A's run as well.
    let third = ag_ui_input("r3", &["a", "b", "c", "d", "e", "f"], 300);
    let (_, mut on_a, _) = support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(third)).await;
    support::sse_take(&mut on_a, 1).await;
    let stop = json!({"type": "stop_agent", "payload": {"run_id": "r3"}});
    ws.send(Message::text(stop.to_string())).await.unwrap();
    let rest = support::sse_all(on_a).await;
    let end: Value = serde_json::from_str(&rest.last().unwrap().data).unwrap();
    assert_eq!(end["outcome"]["type"], "cancelled", "{end}");
    // The same start sent to both gateways at once: one run, both streams
    // the same.
    let runs_before =
        a.gateway.event_monitor().session_count() + b.gateway.event_monitor().session_count();
    let twice = ag_ui_input("r4", &["a"], 10);
    let (on_a, on_b) = tokio::join!(
        support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(twice.clone())),
        support::sse(b.addr, "POST", "/ag-ui", &[ANA], Some(twice)),
    );
    let (on_a, on_b) = tokio::join!(support::sse_all(on_a.1), support::sse_all(on_b.1));
    assert_eq!(numbered(&on_a, 1), numbered(&on_b, 1));
    assert_whole(&numbered(&on_a, 1));
    let runs_after =
        a.gateway.event_monitor().session_count() + b.gateway.event_monitor().session_count();
    assert_eq!(runs_after, runs_before + 1, "one run started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_read_only_elsewhere_is_no_orphan_and_its_gateway_dying_ends_it_for_every_reader() {
    let redis = settings(&shared_url(), RedisFailurePolicy::FailOpen);
    let mut config = GatewayConfig::default();
    config.agents.run_owner_lease = Duration::from_secs(2);
    config.agents.orphan_run_timeout = Duration::from_secs(1);
    let mut a = doomed(config.clone(), redis.clone());
    let b = node(config, redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let long = ag_ui_input("r9", &["a", "b", "c", "d", "e", "f", "g", "h"], 700);
    let (_, mut on_a, _) = support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(long)).await;
    support::sse_take(&mut on_a, 1).await;
    // Read on B only: A's orphan sweep (every 10 s, 1 s timeout) must see
    // B's reader.
    drop(on_a);
    let (_, mut on_b, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r9/events", &[ANA], None).await;
    let mut got = support::sse_take(&mut on_b, 18).await;
    let types = support::sse_types(&got);
    assert!(
        !types.contains(&"RUN_FINISHED".to_owned()),
        "not cancelled as unread while B reads it: {types:?}"
    );
    // A dies mid-run: within its lease, B's reader gets the run's end.
    a.kill();
    let started = std::time::Instant::now();
    got.extend(support::sse_all(on_b).await);
    assert!(started.elapsed() < Duration::from_secs(15));
    let events = numbered(&got, 1);
    let end: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(end["type"], "RUN_ERROR", "{end}");
    assert_eq!(end["code"], "gateway_lost", "{end}");
    // Every later reader gets the same end.
    let (_, rx, _) = support::sse(b.addr, "GET", "/ag-ui/runs/r9/events", &[ANA], None).await;
    assert_eq!(numbered(&support::sse_all(rx).await, 1), events);
}

/// With Redis Cluster's default `cluster-node-timeout` (15 s), the master
/// holding an AG-UI run's log is killed mid-run: the run goes on on its
/// gateway, and a reader on the other gateway gets exactly the same
/// events — the owner writes again what the failover lost, the reader
/// waits out the failover (well within the owner lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ag_ui_run_read_elsewhere_survives_a_failover_at_redis_default_node_timeout() {
    let mut cluster = tokio::task::spawn_blocking(|| {
        RedisCluster::start_with_node_timeout(Duration::from_secs(15))
    })
    .await
    .unwrap();
    let redis = settings(&cluster.url(), RedisFailurePolicy::FailOpen);
    let key = format!("{}agui:3:ana:rf", redis.prefix);
    let (a, b) = pair(GatewayConfig::default(), redis).await;
    let tools: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let tools: Vec<&str> = tools.iter().map(String::as_str).collect();
    let input = ag_ui_input("rf", &tools, 600);
    let (status, mut on_a, _) = support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(input)).await;
    assert_eq!(status, 200);
    let mut seen_on_a = support::sse_take(&mut on_a, 2).await;
    let (status, on_b, _) =
        support::sse(b.addr, "GET", "/ag-ui/runs/rf/events", &[ANA], None).await;
    assert_eq!(status, 200);
    let reader_b = tokio::spawn(support::sse_all(on_b));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let master = cluster.master_of(&key).expect("a master serves the run");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill(master);
        cluster.wait_ok();
        cluster
    });
    seen_on_a.extend(support::sse_all(on_a).await);
    let seen_on_b = reader_b.await.unwrap();
    let run = numbered(&seen_on_a, 1);
    assert_whole(&run);
    assert!(
        seen_on_b.iter().all(|m| m.event.is_none()),
        "no error: {seen_on_b:?}"
    );
    assert_eq!(numbered(&seen_on_b, 1), run, "the same run, exactly");
    drop(cluster.await.unwrap());
}

/// The next AG-UI frame of a `/ws?protocol=ag-ui` connection (control
/// frames skipped): its seq, its run and its event.
async fn next_ag_ui(ws: &mut Ws) -> (u64, String, Value) {
    loop {
        let text = match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap()
        {
            Message::Text(t) => t,
            _ => continue,
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(frame["type"], "error", "{frame}");
        if frame.get("event").is_some() {
            let run = frame["run_id"].as_str().unwrap().to_owned();
            return (frame["seq"].as_u64().unwrap(), run, frame["event"].clone());
        }
    }
}

/// A session follows a run through a gateway that dies: resumed on
/// another gateway, it gets the frames the dead one had published into it
/// (the replay), and its `join_run` again goes on after them — each event
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_gateway_died_resumes_elsewhere_and_its_run_goes_on_exactly_once() {
    let redis = settings(&shared_url(), RedisFailurePolicy::FailOpen);
    let a = node(GatewayConfig::default(), redis.clone()).await;
    let mut doomed = doomed(GatewayConfig::default(), redis);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let input = ag_ui_input("rw", &["a", "b", "c", "d", "e", "f"], 250);
    let (_, whole, _) = support::sse(a.addr, "POST", "/ag-ui", &[ANA], Some(input)).await;
    let whole = tokio::spawn(support::sse_all(whole));
    // A session on the doomed gateway follows the run.
    let (mut ws, _) = connect_async(format!(
        "ws://{}/ws?user_id=ana&protocol=ag-ui",
        doomed.addr
    ))
    .await
    .unwrap();
    let hello: Value = loop {
        if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
            break serde_json::from_str(&t).unwrap();
        }
    };
    let join = json!({"type": "join_run", "payload": {"run_id": "rw"}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    let mut got = Vec::new();
    let mut last_seq = 0;
    for _ in 0..4 {
        let (seq, _, event) = next_ag_ui(&mut ws).await;
        got.push(event);
        last_seq = seq;
    }
    // The client stops reading; the gateway copies more of the run into
    // the session, then dies.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    doomed.kill();
    drop(ws);
    let (mut ws, resumed) = connect(
        &a,
        &format!(
            "{}&protocol=ag-ui",
            resume_query("ana", &hello["payload"], last_seq)
        ),
    )
    .await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    let join = json!({"type": "join_run", "payload": {"run_id": "rw", "after": got.len()}});
    ws.send(Message::text(join.to_string())).await.unwrap();
    loop {
        let (seq, _, event) = next_ag_ui(&mut ws).await;
        assert_eq!(seq, last_seq + 1, "the session's frames, each once");
        last_seq = seq;
        let end = ["RUN_FINISHED", "RUN_ERROR"].contains(&event["type"].as_str().unwrap());
        got.push(event);
        if end {
            break;
        }
    }
    let whole: Vec<Value> = numbered(&whole.await.unwrap(), 1)
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(got, whole, "the run, each event once");
}

/// A WebSocket run whose gateway is SIGKILLed mid-run: the client resumes
/// on another gateway and is told — `agent_error {code: "gateway_lost"}`
/// for that run, once — within the dead gateway's lease (30 s, the
/// default), instead of waiting forever for events that will not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_gateway_died_is_told_to_its_client_on_the_gateway_it_resumed_on() {
    let redis = settings(&shared_url(), RedisFailurePolicy::FailOpen);
    let mut doomed = doomed(GatewayConfig::default(), redis.clone());
    let a = node(GatewayConfig::default(), redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut ws, _) = connect_async(format!("ws://{}/ws?user_id=lena", doomed.addr))
        .await
        .unwrap();
    let hello = next_frame(&mut ws).await.payload;
    start_run(&mut ws, &["a", "b", "c", "d", "e", "f", "g", "h"], 2_000).await;
    // The run's first events, then its gateway dies.
    let mut last = 0;
    let mut run_id = String::new();
    while last < 2 {
        let msg = next_frame(&mut ws).await;
        if let Some(id) = msg.payload["run_id"].as_str() {
            run_id = id.to_owned();
        }
        last = msg.seq.unwrap_or(last);
    }
    doomed.kill();
    drop(ws);
    let (mut ws, resumed) = connect(&a, &resume_query("lena", &hello, last)).await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let told = loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("told within the lease, not left waiting")
            .expect("open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let msg = parse_server_frame(&text).unwrap();
        if msg.message_type == MessageType::AgentError {
            break msg;
        }
        assert_ne!(
            msg.message_type,
            MessageType::AgentCompleted,
            "the run died"
        );
    };
    assert_eq!(told.payload["run_id"], run_id.as_str(), "{told:?}");
    assert_eq!(told.payload["code"], "gateway_lost", "{told:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "within a lease and a check"
    );
    assert_eq!(
        metric(&a, "wsc_gateway_runs_lost_with_gateway_total").await,
        1.0
    );
    // Once: nothing more on a later resume.
    let seq = told.seq.unwrap();
    drop(ws);
    let (_ws, again) = connect(&a, &resume_query("lena", &resumed, seq)).await;
    assert_eq!(again["resumed"], true, "{again}");
    assert_eq!(again["replayed"], 0, "{again}");
}
