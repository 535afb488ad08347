//! Hostile clients over real sockets: slow and silent handshakes, oversized
//! request heads, a ping flood. (A client that never reads is in
//! `gateway.rs`; connection churn has its own binary, `churn.rs`, because
//! it counts allocations.)

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{MessageType, WebSocketMessage, parse_server_frame, serialize};
use wsc_server::GatewayConfig;

mod support;
use support::*;

/// Waits until the server closes `s` (EOF or reset), writing `drip` one
/// byte at a time every 50 ms meanwhile if given; returns how long after
/// `started` (taken before connecting) that was, or `None` if the server
/// kept it open for 10 s.
async fn time_until_closed(
    mut s: TcpStream,
    started: Instant,
    drip: Option<&[u8]>,
) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let mut next = 0;
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(bytes) = drip {
            let byte = [bytes[next % bytes.len()]];
            next += 1;
            if s.write_all(&byte).await.is_err() {
                return Some(started.elapsed());
            }
        }
        // An answer (a 408, say) before the close is fine; keep reading.
        let read = tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            return Some(started.elapsed());
        }
    }
    None
}

/// Whether a gateway counter reaches `want` within about two seconds.
async fn stat_soon(r: &Running, pick: fn(&wsc_server::GatewayStats) -> u64, want: u64) -> bool {
    for _ in 0..100 {
        if pick(&r.gateway.stats()) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn slow_and_silent_request_heads_are_closed_on_every_route_while_others_are_served() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            ..Default::default()
        },
        http: wsc_server::HttpConfig {
            handshake_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..60 {
        // Before connecting: the server's deadline cannot start earlier.
        let started = Instant::now();
        let s = TcpStream::connect(r.addr).await.unwrap();
        attackers.spawn(async move {
            if i % 2 == 0 {
                // Slowloris: a request line, then a header a byte at a time
                // — on every route, not only the WebSocket's.
                let line = [
                    "GET /ws?user_id=slow",
                    "POST /api/publish",
                    "POST /ag-ui",
                    "GET /health",
                    "GET /ag-ui/runs/r/events",
                ][(i / 2) % 5];
                let mut s = s;
                s.write_all(format!("{line} HTTP/1.1\r\nHost: x\r\n").as_bytes())
                    .await
                    .unwrap();
                time_until_closed(s, started, Some(b"X-Slow: aaaaaaaa\r\n")).await
            } else {
                // Connects and says nothing.
                time_until_closed(s, started, None).await
            }
        });
    }
    // Meanwhile an ordinary client is served.
    let (mut ws, hello) = connect(&r, "user_id=ok").await;
    assert_eq!(hello["resumed"], false);
    ping_pong(&mut ws).await;
    let mut closed = 0;
    while let Some(done) = attackers.join_next().await {
        let took = done
            .unwrap()
            .expect("the gateway kept a slow handshake open for 10 s");
        // Not before the 300 ms deadline (no upper bound but the 10 s
        // give-up: this machine is shared and noisy).
        assert!(took >= Duration::from_millis(300), "closed early: {took:?}");
        closed += 1;
    }
    assert_eq!(closed, 60);
    // Counted for the operator (`/metrics` too).
    assert!(
        stat_soon(&r, |s| s.head_timeouts, 60).await,
        "{:?}",
        r.gateway.stats()
    );
    // The established WebSocket is not subject to the head deadline.
    ping_pong(&mut ws).await;
}

#[tokio::test]
async fn oversized_and_overfull_request_heads_are_refused_with_431() {
    let r = start(GatewayConfig {
        http: wsc_server::HttpConfig {
            max_header_bytes: 8 * 1024,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // One 20 KB header.
    let big = format!("X-Pad: {}\r\n", "x".repeat(20_000));
    let answer = raw_handshake(&r, "/ws?user_id=eve", &big).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    // Many small headers: over the count limit although under the size.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw_handshake(&r, "/ws?user_id=eve", &many).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    // A head just under the limit is fine.
    let fits = format!("X-Pad: {}\r\n", "x".repeat(6_000));
    let answer = raw_handshake(&r, "/ws?user_id=fits", &fits).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer:.200}");
    // And the gateway still serves everyone else.
    let (_ws, hello) = connect(&r, "user_id=ok").await;
    assert_eq!(hello["resumed"], false);
    assert!(stat_soon(&r, |s| s.heads_too_large, 2).await);
    let (_, metrics) = http_get(&r, "/metrics").await;
    assert!(
        metrics.contains("wsc_gateway_http_heads_too_large_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_ping_flood_is_rate_limited_and_others_stay_served() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 100,
            ..Default::default()
        },
        sessions: wsc_server::SessionsConfig {
            outbound_queue: 4096,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (flood, _) = connect(&r, "user_id=flooder").await;
    let (mut sink, mut stream) = flood.split();
    const PINGS: u64 = 2_000;
    let writer = tokio::spawn(async move {
        let ping = serialize(&WebSocketMessage::new(MessageType::Ping, json!({})));
        for _ in 0..PINGS {
            sink.send(Message::text(ping.clone())).await.unwrap();
        }
        sink
    });
    let reader = tokio::spawn(async move {
        let (mut pongs, mut limited) = (0u64, 0u64);
        while pongs + limited < PINGS {
            let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("an answer to every ping");
            let Some(Ok(Message::Text(t))) = next else {
                panic!("the flooder's connection ended: {next:?}")
            };
            let frame = parse_server_frame(&t).unwrap();
            match frame.message_type {
                MessageType::Pong => pongs += 1,
                MessageType::Error if frame.payload["code"] == "rate_limited" => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        (pongs, limited)
    });
    // During the flood another user runs an agent and gets every event.
    let (mut ws, _) = connect(&r, "user_id=bystander").await;
    send(&mut ws, &start_agent(&["search"], 0)).await;
    let mut seqs = Vec::new();
    loop {
        let frame = next_frame(&mut ws).await.expect("the bystander's run");
        seqs.push(frame.seq.unwrap());
        if frame.message_type == MessageType::AgentCompleted {
            break;
        }
    }
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    ping_pong(&mut ws).await;

    let (pongs, limited) = reader.await.unwrap();
    let _sink = writer.await.unwrap();
    // Exactly the window's worth answered; every other ping refused.
    assert_eq!((pongs, limited), (100, PINGS - 100));
    assert_eq!(r.gateway.stats().rate_limited, PINGS - 100);
}

/// Issue 19, finding 4: a start repeated after the event monitor evicted
/// its run (other users' runs filled it) still starts nothing: the session
/// remembers its start keys itself.
#[tokio::test]
async fn a_start_repeated_after_the_monitor_evicted_its_run_starts_nothing() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            ..Default::default()
        },
        agents: wsc_server::AgentsConfig {
            max_tracked_runs: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut ws, _) = connect(&r, "user_id=rita").await;
    let start = start_agent(&[], 0).with_message_id("start-1");
    send(&mut ws, &start).await;
    let (run_id, frames) = read_run(&mut ws, &mut 0).await;
    assert_eq!(frames.len(), 3, "{frames:?}");
    // Others' runs push it out of the monitor.
    let (mut other, _) = connect(&r, "user_id=olga").await;
    let mut seq = 0;
    for _ in 0..5 {
        send(&mut other, &start_agent(&[], 0)).await;
        read_run(&mut other, &mut seq).await;
    }
    assert!(!r.gateway.event_monitor().is_tracking(&run_id), "evicted");
    send(&mut ws, &start).await;
    // Nothing arrives for the repeat: the next frame answers a ping.
    ping_pong(&mut ws).await;
    let stats = r.gateway.stats();
    assert_eq!((stats.runs, stats.repeated_starts), (6, 1));
}

/// A WebSocket upgrade request with `query`: the status and `Retry-After`
/// (seconds), if any.
async fn upgrade_status(r: &Running, query: &str) -> (u16, Option<u64>) {
    let (status, head, _) = http_get_with(
        r,
        &format!("/ws?{query}"),
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    )
    .await;
    let retry = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    (status, retry)
}

/// Issue 19, finding 3: malformed resume queries put their IP in backoff,
/// but what it sends while blocked does not extend the block: the first
/// `Retry-After` is the truth, and then a good handshake succeeds. Paused
/// time.
#[tokio::test(start_paused = true)]
async fn a_blocked_ip_does_not_extend_its_own_block() {
    let r = start_on_tokio_time(GatewayConfig::default()).await;
    let bad = "user_id=mal&session_id=s&resume_token=t&last_seq=not-a-number";
    // Five failures (the threshold) block the IP for the base backoff.
    for _ in 0..5 {
        assert_eq!(upgrade_status(&r, bad).await.0, 400);
    }
    let (status, retry) = upgrade_status(&r, bad).await;
    assert_eq!((status, retry), (429, Some(1)));
    // Fourteen more in the blocked second change nothing.
    for _ in 0..14 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, retry) = upgrade_status(&r, bad).await;
        assert_eq!((status, retry), (429, Some(1)), "Retry-After stays true");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = handshake(&r, "user_id=honest").await;
    assert_eq!(status, 101, "free when Retry-After said");
}

/// Issue 19, finding 8: a user id with a newline or a terminal escape (a
/// forged log line) is refused with 400 before anything is logged;
/// printable ids, any script, are welcome.
#[tokio::test]
async fn user_ids_with_control_characters_are_refused() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    for bad in [
        "eve%0A2026-11-29T00:00:00Z%20INFO%20admin%20logged%20in",
        "eve%0Dx",
        "eve%1B%5B31mred",
        "eve%00",
        "eve%7F",
    ] {
        let (status, _) = upgrade_status(&r, &format!("user_id={bad}")).await;
        assert_eq!(status, 400, "{bad}");
        r.gateway
            .rate_limiter()
            .record_handshake_success("127.0.0.1".parse().unwrap());
    }
    for good in ["%C3%A9lodie", "%E5%B1%B1%E7%94%B0", "a%20b"] {
        assert_eq!(
            handshake(&r, &format!("user_id={good}")).await.0,
            101,
            "{good}"
        );
    }
}

/// Issue 19, finding 10: one parse for every input. A repeated query
/// parameter is refused (400), not "the last one wins"; a frame repeating a
/// key is refused (`invalid_message`, connection kept) rather than started
/// as the second `type`; an integer beyond 64 bits is refused rather than
/// echoed back as a float.
#[tokio::test]
async fn ambiguous_input_is_refused_not_guessed() {
    let r = start(GatewayConfig::default()).await;
    let (status, _) = upgrade_status(&r, "user_id=alice&user_id=bob").await;
    assert_eq!(status, 400);
    let (status, _) = upgrade_status(&r, "token=a&user_id=x&token=b").await;
    assert_eq!(status, 400);
    let (mut ws, _) = connect(&r, "user_id=alice").await;
    for (frame, says) in [
        (r#"{"type":"ping","type":"start_agent"}"#, "appears twice"),
        (
            r#"{"type":"ping","payload":{"n":18446744073709551616}}"#,
            "64 bits",
        ),
    ] {
        ws.send(Message::text(frame)).await.unwrap();
        let reply = next_frame(&mut ws).await.unwrap();
        assert_eq!(reply.message_type, MessageType::Error, "{frame}");
        assert_eq!(reply.payload["code"], "invalid_message");
        assert!(
            reply.payload["message"].as_str().unwrap().contains(says),
            "{reply:?}"
        );
    }
    // The largest u64 comes back exactly.
    ws.send(Message::text(
        r#"{"type":"ping","payload":{"n":18446744073709551615}}"#,
    ))
    .await
    .unwrap();
    let pong = next_frame(&mut ws).await.unwrap();
    assert_eq!(pong.payload["n"].as_u64(), Some(u64::MAX));
    assert_eq!(r.gateway.stats().runs, 0, "nothing started");
}

/// One client frame as bytes: FIN, RSV bits, opcode, masked or not.
fn ws_frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Connects with a hand-written upgrade, sends `bytes`, and reads the
/// server's frames until its close: the close code (1005 for a close
/// without one, 1006 for none at all).
async fn close_code_after(r: &Running, user: &str, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let request = format!(
        "GET /ws?user_id={user} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed during the handshake");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    buf.drain(..head_end);
    s.write_all(bytes).await.unwrap();
    let read = async {
        loop {
            // A whole server frame in `buf`? (Servers do not mask.)
            if buf.len() >= 2 {
                let opcode = buf[0] & 0x0F;
                let (len, at) = match buf[1] & 0x7F {
                    126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                    127 if buf.len() >= 10 => (
                        u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if at > 0 && buf.len() >= at + len {
                    if opcode == 0x8 {
                        return if len >= 2 {
                            u16::from_be_bytes([buf[at], buf[at + 1]])
                        } else {
                            1005
                        };
                    }
                    buf.drain(..at + len);
                    continue;
                }
            }
            match s.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return 1006,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or(1006)
}

/// Issue 19, finding 9: every protocol violation is answered with its RFC
/// 6455 close code, never an empty close (1005) or a reset (1006).
#[tokio::test]
async fn protocol_violations_close_with_their_rfc_6455_code() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let ping = br#"{"type":"ping"}"#;
    // A 10 MB frame's header: over the transport's limit before any byte
    // of it arrives.
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(10u64 << 20).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    for (what, bytes, code) in [
        (
            "an unmasked frame",
            ws_frame(true, 0, 0x1, false, ping),
            1002,
        ),
        (
            "reserved bits",
            ws_frame(true, 0b100, 0x1, true, ping),
            1002,
        ),
        (
            "an unknown opcode",
            ws_frame(true, 0, 0x3, true, ping),
            1002,
        ),
        (
            "a continuation with nothing to continue",
            ws_frame(true, 0, 0x0, true, ping),
            1002,
        ),
        (
            "a control frame over 125 bytes",
            ws_frame(true, 0, 0x9, true, &[7; 126]),
            1002,
        ),
        (
            "a fragmented control frame",
            ws_frame(false, 0, 0x9, true, b"x"),
            1002,
        ),
        (
            "text that is not UTF-8",
            ws_frame(true, 0, 0x1, true, &[0xFF, 0xFE, 0x22]),
            1007,
        ),
        ("a frame over the size limit", huge, 1009),
    ] {
        let got = close_code_after(&r, "proto", &bytes).await;
        assert_eq!(got, code, "{what}");
    }
}

async fn health(r: &Running) -> (u16, serde_json::Value) {
    let (status, body) = http_get(r, "/health").await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Issue 19, finding 6: a client cannot flip `/health` by running slow
/// agents. Four runs of 32 tools pausing 70 s between events (under the
/// old rules: p95 inter-event latency critical, tools "stuck", every run
/// stale, so `failed`) leave the gateway healthy, and so do they once past
/// the run timeout (counted, not paged for). Paused time.
#[tokio::test(start_paused = true)]
async fn slow_but_progressing_runs_keep_the_gateway_healthy() {
    let r = start_on_tokio_time(GatewayConfig {
        agents: wsc_server::AgentsConfig {
            run_timeout: Duration::from_secs(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let tools: Vec<String> = (0..32).map(|i| format!("tool-{i}")).collect();
    let mut clients = Vec::new();
    for i in 0..4 {
        let (mut ws, _) = connect(&r, &format!("user_id=slow-{i}")).await;
        let tools: Vec<&str> = tools.iter().map(String::as_str).collect();
        send(&mut ws, &start_agent(&tools, 70_000)).await;
        clients.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(150)).await;
    let (status, v) = health(&r).await;
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("healthy")),
        "{v}"
    );
    assert_eq!(v["active_runs"], 4, "{v}");
    // Past the run timeout (and the next 5 s sweep): timed out, counted —
    // but four users' runs are not the gateway's health (issue 32, finding
    // 10: they used to make it critical); a share of many users' runs is.
    tokio::time::sleep(Duration::from_secs(170)).await;
    let (status, v) = health(&r).await;
    assert_eq!(
        (v["active_runs"].as_u64(), v["runs"].as_u64()),
        (Some(0), Some(4)),
        "ended: {v}"
    );
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("healthy")),
        "{v}"
    );
    drop(clients);
}

/// Connects from a chosen loopback source address (127.0.0.x), so one test
/// can be several IPs.
async fn connect_from(r: &Running, source: &str, query: &str) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(r.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{}/ws?{query}", r.addr),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let hello = next_frame(&mut ws).await.unwrap();
    assert_eq!(hello.message_type, MessageType::ConnectionEstablished);
    ws
}

/// Sends a ping; whether a pong came back (else the refusal's limit).
async fn ping_answer(ws: &mut Ws) -> Result<(), String> {
    send(ws, &WebSocketMessage::new(MessageType::Ping, json!({}))).await;
    let reply = next_frame(ws).await.unwrap();
    match reply.message_type {
        MessageType::Pong => Ok(()),
        _ => Err(reply.payload["message"].as_str().unwrap_or("").to_owned()),
    }
}

/// Issue 19, finding 11: in dev mode one address cannot multiply its frame
/// budget by inventing user ids: ten users from one IP share twice one
/// user's minute; another address is not affected.
#[tokio::test]
async fn one_ip_shares_a_frame_budget_across_its_users() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 10,
            max_handshakes_per_ip: 0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(connect_from(&r, "127.0.0.1", &format!("user_id=sock-{i}")).await);
    }
    let (mut pongs, mut ip_refusals) = (0, 0);
    for _ in 0..5 {
        for ws in &mut users {
            match ping_answer(ws).await {
                Ok(()) => pongs += 1,
                Err(m) if m.contains("all its users") => ip_refusals += 1,
                Err(m) => panic!("an unexpected refusal: {m}"),
            }
        }
    }
    assert_eq!(
        (pongs, ip_refusals),
        (20, 30),
        "2 x 10 per minute for the IP"
    );
    // Another address, a user of its own: served.
    let mut other = connect_from(&r, "127.0.0.2", "user_id=elsewhere").await;
    assert_eq!(ping_answer(&mut other).await, Ok(()));
}

/// Issue 19, finding 2: a start whose `thread_id` is 60 KB (it would be
/// copied into every event and kept by the event monitor) is refused,
/// wherever the id sits; the connection stays usable and nothing runs.
#[tokio::test]
async fn oversized_ids_cannot_amplify_into_every_event() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=amp").await;
    let big = "t".repeat(60_000);
    let tools = vec!["a"; 32];
    let in_payload = WebSocketMessage::new(
        MessageType::StartAgent,
        json!({"thread_id": big, "tools": tools}),
    );
    let mut on_frame = WebSocketMessage::new(MessageType::StartAgent, json!({"tools": tools}));
    on_frame.thread_id = Some(big.clone());
    for start in [in_payload, on_frame] {
        send(&mut ws, &start).await;
        let reply = next_frame(&mut ws).await.unwrap();
        assert_eq!(reply.message_type, MessageType::Error);
        assert_eq!(reply.payload["code"], "invalid_message");
        assert!(
            reply.payload["message"]
                .as_str()
                .unwrap()
                .contains("thread_id")
        );
    }
    ping_pong(&mut ws).await;
    assert_eq!(r.gateway.stats().runs, 0);
    assert_eq!(r.gateway.event_monitor().session_count(), 0);
}

/// Issue 19, finding 1: abandoned sessions cannot lock anyone out. With a
/// 30-session table filled by 30 users who connected and left, an honest
/// user still connects (the session detached longest ago is reclaimed and
/// its resume is `expired`); one user id cannot hold more than twice its
/// connection cap.
#[tokio::test]
async fn abandoned_sessions_cannot_lock_out_an_honest_user() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            max_messages_per_ip_per_minute: Some(0),
            ..Default::default()
        },
        sessions: wsc_server::SessionsConfig {
            max_sessions: 30,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut first = None;
    for i in 0..30 {
        let (ws, hello) = connect(&r, &format!("user_id=flood-{i}")).await;
        let session = hello["session_id"].as_str().unwrap().to_owned();
        drop(ws);
        assert!(detached_soon(&r, &session).await);
        if i == 0 {
            first = Some((session, hello["resume_token"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(r.gateway.sessions().session_count().await.unwrap(), 30);
    let (_honest, hello) = connect(&r, "user_id=honest").await;
    assert_eq!(hello["resumed"], false, "{hello}");
    let (session, token) = first.unwrap();
    let (_ws, h) = connect(
        &r,
        &format!("user_id=flood-0&session_id={session}&resume_token={token}&last_seq=0"),
    )
    .await;
    assert_eq!(h["reason"], "expired", "{h}");

    // One user id, fifteen abandoned sessions: it keeps at most 2 x 5.
    for _ in 0..15 {
        let (ws, hello) = connect(&r, "user_id=mallory").await;
        let session = hello["session_id"].as_str().unwrap().to_owned();
        drop(ws);
        assert!(detached_soon(&r, &session).await);
    }
    let held = r
        .gateway
        .sessions()
        .sessions_of_user("mallory")
        .await
        .unwrap();
    assert_eq!(held.len(), 10);
}

/// Connects with an `X-Forwarded-For` header, as a reverse proxy would.
async fn connect_forwarded(r: &Running, forwarded_for: &str, user: &str) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws?user_id={user}", r.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    next_frame(&mut ws).await.unwrap();
    ws
}

/// Issue 19, finding 3 (behind a proxy): with the proxy trusted, per-IP
/// limits count the clients it names, so one noisy client behind it does
/// not use up everyone's budget; without trust the header is ignored (a
/// client cannot pick its own address).
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_ip_budget() {
    let config = |trusted: bool| GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 5,
            max_handshakes_per_ip: 0,
            ..Default::default()
        },
        http: wsc_server::HttpConfig {
            trusted_proxies: if trusted {
                vec!["127.0.0.0/8".parse().unwrap()]
            } else {
                Vec::new()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let r = start(config(true)).await;
    // The noisy client (two user ids) spends its IP's 10 frames.
    let mut a1 = connect_forwarded(&r, "1.1.1.1, 203.0.113.1", "a1").await;
    let mut a2 = connect_forwarded(&r, "203.0.113.1", "a2").await;
    for _ in 0..5 {
        assert_eq!(ping_answer(&mut a1).await, Ok(()));
        assert_eq!(ping_answer(&mut a2).await, Ok(()));
    }
    let mut a3 = connect_forwarded(&r, "203.0.113.1", "a3").await;
    assert!(
        ping_answer(&mut a3)
            .await
            .unwrap_err()
            .contains("203.0.113.1")
    );
    // Another client behind the same proxy is served.
    let mut b = connect_forwarded(&r, "203.0.113.2", "b").await;
    assert_eq!(ping_answer(&mut b).await, Ok(()));

    // Not trusted: everyone is the proxy's address, whatever they claim.
    let r = start(config(false)).await;
    let mut spoof = Vec::new();
    for i in 0..3 {
        spoof.push(connect_forwarded(&r, &format!("198.51.100.{i}"), &format!("s{i}")).await);
    }
    let mut served = 0;
    for _ in 0..5 {
        for ws in &mut spoof {
            served += usize::from(ping_answer(ws).await.is_ok());
        }
    }
    assert_eq!(served, 10, "one IP's budget for all three");
}

/// Issue 34: at its connection cap (`max_connections`) the gateway refuses
/// one more client before anything is opened for it — a WebSocket upgrade
/// and an AG-UI SSE stream alike — with 503 `at_capacity` and a
/// `Retry-After` of 1 to 5 s, while `/health` (a warning naming the cap)
/// and `/metrics` keep answering; a connection that closes frees its place.
#[tokio::test]
async fn at_its_connection_cap_the_gateway_refuses_with_retry_after_and_stays_answerable() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_connections: Some(2),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut a, _) = connect(&r, "user_id=a").await;
    let (_b, _) = connect(&r, "user_id=b").await;
    assert_eq!(r.gateway.connections(), (2, 2));

    let (status, retry) = upgrade_status(&r, "user_id=c").await;
    assert_eq!(status, 503);
    assert!(retry.is_some_and(|s| (1..=5).contains(&s)), "{retry:?}");
    let answer = raw_handshake(&r, "/ws?user_id=c", "").await;
    assert!(
        answer.contains("503") && answer.contains("at_capacity"),
        "{answer}"
    );
    let input = json!({"threadId": "t", "runId": "r1", "messages": [], "tools": [],
        "context": [], "state": {}, "forwardedProps": {}});
    let (status, body) = http_post(&r, "/ag-ui", "X-Wsc-User-Id: d\r\n", &input.to_string()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("at_capacity"), "{body}");

    let (code, h) = health(&r).await;
    assert_eq!(code, 200);
    assert_eq!(h["status"], "warning", "{h}");
    assert_eq!(
        (
            h["open_connections"].as_u64(),
            h["max_connections"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert!(h["issues"].to_string().contains("connection cap"), "{h}");
    let (code, metrics) = http_get(&r, "/metrics").await;
    assert_eq!(code, 200);
    let value = metric_values(&metrics);
    assert_eq!(value("wsc_gateway_refused_at_capacity_total"), Some(3.0));
    assert_eq!(value("wsc_gateway_max_connections"), Some(2.0));
    assert_eq!(r.gateway.stats().at_capacity, 3);

    // A connection closes: its place is free again.
    a.close(None).await.unwrap();
    let mut freed = false;
    for _ in 0..100 {
        if r.gateway.connections().0 == 1 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the closed connection's place is given back");
    let (_c, hello) = connect(&r, "user_id=c").await;
    assert!(hello["session_id"].is_string());
    let (_, h) = health(&r).await;
    assert_eq!(h["open_connections"].as_u64(), Some(2));
}
