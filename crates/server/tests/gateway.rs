//! The gateway over real sockets: an in-process gateway on a free loopback
//! port, driven by a tokio-tungstenite client and raw HTTP.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsc_core::{MessageType, WebSocketMessage, parse_server_frame};
use wsc_server::{Gateway, GatewayConfig};

mod support;
use support::*;

#[tokio::test]
async fn a_run_arrives_in_order_numbered_and_validated() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, hello) = connect(&r, "user_id=alice").await;
    assert_eq!(hello["resumed"], false);
    assert_eq!(hello["replayed"], 0);
    assert!(hello["resume_token"].as_str().unwrap().contains('.'));
    assert_eq!(hello["session_id"].as_str().unwrap().len(), 32);
    send(&mut ws, &start_agent(&["search", "fetch"], 0)).await;
    let mut frames = Vec::new();
    while frames.len() < 7 {
        frames.push(next_frame(&mut ws).await.unwrap());
    }
    let types: Vec<MessageType> = frames.iter().map(|f| f.message_type).collect();
    use MessageType as M;
    assert_eq!(
        types,
        [
            M::AgentStarted,
            M::AgentThinking,
            M::ToolExecuting,
            M::ToolCompleted,
            M::ToolExecuting,
            M::ToolCompleted,
            M::AgentCompleted
        ]
    );
    assert_eq!(
        frames.iter().map(|f| f.seq.unwrap()).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    assert!(
        frames
            .iter()
            .all(|f| f.timestamp.is_some() && f.message_id.is_some())
    );
    let run_id = frames[0].payload["run_id"].as_str().unwrap().to_owned();
    assert_eq!(frames[2].payload["tool_name"], "search");
    assert_eq!(
        r.gateway
            .event_monitor()
            .validate_session_completion(&run_id),
        Ok(true)
    );
}

#[tokio::test]
async fn resume_after_an_abrupt_drop_loses_nothing() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, hello) = connect(&r, "user_id=bob").await;
    send(&mut ws, &start_agent(&["a", "b", "c"], 25)).await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(next_frame(&mut ws).await.unwrap().seq.unwrap());
    }
    drop(ws); // no close handshake
    let (session, token) = (
        hello["session_id"].as_str().unwrap(),
        hello["resume_token"].as_str().unwrap(),
    );
    let (mut ws, hello) = connect(
        &r,
        &format!("user_id=bob&session_id={session}&resume_token={token}&last_seq=3"),
    )
    .await;
    assert_eq!(hello["resumed"], true, "{hello}");
    assert_eq!(hello["session_id"], session);
    while seqs.last() != Some(&9) {
        seqs.push(next_frame(&mut ws).await.unwrap().seq.unwrap());
    }
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    assert_eq!(r.gateway.stats().resumes, 1);
}

#[tokio::test]
async fn refused_resumes_say_why_and_start_fresh() {
    let r = start(GatewayConfig::default()).await;
    let (_ws, hello) = connect(&r, "user_id=carol").await;
    let session = hello["session_id"].as_str().unwrap();
    let (_ws2, h) = connect(
        &r,
        &format!("user_id=carol&session_id={session}&resume_token=1.00&last_seq=0"),
    )
    .await;
    assert_eq!(
        (h["resumed"].clone(), h["reason"].clone()),
        (json!(false), json!("unauthorized"))
    );
    assert_ne!(h["session_id"], hello["session_id"]);
    let (_ws3, h) = connect(
        &r,
        &format!(
            "user_id=carol&session_id={}&resume_token=x&last_seq=0",
            "f".repeat(32)
        ),
    )
    .await;
    assert_eq!(h["reason"], "unknown_session");
}

#[tokio::test]
async fn bad_frames_get_error_codes_and_the_connection_stays_open() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=dave").await;
    for (frame, code) in [
        (Message::text("{nope"), "invalid_json"),
        (Message::text("[1]"), "invalid_message"),
        (Message::text(r#"{"type": "warp"}"#), "unknown_type"),
        (
            Message::text(r#"{"type": "agent_completed"}"#),
            "not_allowed",
        ),
        (
            Message::text(r#"{"type": "ping", "payload": 3}"#),
            "invalid_message",
        ),
        (Message::binary(vec![1u8, 2, 3]), "invalid_message"),
    ] {
        ws.send(frame).await.unwrap();
        let reply = next_frame(&mut ws).await.unwrap();
        assert_eq!(reply.message_type, MessageType::Error);
        assert_eq!(reply.payload["code"], code);
        assert!(reply.seq.is_none());
    }
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::Ping, json!({"n": 7})),
    )
    .await;
    let pong = next_frame(&mut ws).await.unwrap();
    assert_eq!(
        (pong.message_type, pong.payload.clone()),
        (MessageType::Pong, json!({"n": 7}))
    );
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi"}))
            .with_message_id("m-1"),
    )
    .await;
    let ack = next_frame(&mut ws).await.unwrap();
    assert_eq!(
        (ack.message_type, ack.payload["message_id"].clone()),
        (MessageType::Ack, json!("m-1"))
    );
}

#[tokio::test]
async fn oversize_frames_close_with_1009() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_frame_bytes: 1024,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut ws, _) = connect(&r, "user_id=erin").await;
    let big = json!({"type": "chat", "payload": {"content": "x".repeat(2_000)}}).to_string();
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
}

#[tokio::test]
async fn frames_over_the_limit_are_rate_limited_with_a_retry() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut ws, _) = connect(&r, "user_id=frank").await;
    for _ in 0..3 {
        ping_pong(&mut ws).await;
    }
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::Ping, json!({})).with_message_id("p4"),
    )
    .await;
    let reply = next_frame(&mut ws).await.unwrap();
    assert_eq!(reply.payload["code"], "rate_limited");
    assert_eq!(reply.payload["ref_message_id"], "p4");
    let retry = reply.payload["retry_after_ms"].as_u64().unwrap();
    assert!(retry > 0 && retry <= 61_000, "{retry}");
    assert_eq!(r.gateway.stats().rate_limited, 1);
}

/// A user over its message limit can still cancel its run and ack: the
/// message windows never refuse `stop_agent` or `ack`; their own budget
/// per connection does, past 20 a second.
#[tokio::test(start_paused = true)]
async fn a_user_over_its_message_limit_can_still_stop_its_runs() {
    let r = start_on_tokio_time(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 2,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut ws, _) = connect(&r, "user_id=olga").await;
    send(
        &mut ws,
        &start_agent(&["search"], 5_000).with_message_id("s1"),
    )
    .await;
    let started = loop {
        let f = next_frame(&mut ws).await.unwrap();
        if f.message_type == MessageType::AgentStarted {
            break f;
        }
    };
    let run_id = started.payload["run_id"].as_str().unwrap().to_owned();
    // The minute's budget is spent: a ping is refused.
    ping_pong(&mut ws).await;
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::Ping, json!({})),
    )
    .await;
    let refused = loop {
        let f = next_frame(&mut ws).await.unwrap();
        if f.message_type == MessageType::Error {
            break f;
        }
    };
    assert_eq!(refused.payload["code"], "rate_limited");
    // An ack still goes, and the stop ends the run.
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::Ack, json!({"seq": 1})),
    )
    .await;
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::StopAgent, json!({"run_id": run_id})),
    )
    .await;
    let end = loop {
        let f = next_frame(&mut ws).await.unwrap();
        assert_ne!(f.message_type, MessageType::Error, "{f:?}");
        if f.message_type == MessageType::AgentError {
            break f;
        }
    };
    assert_eq!(end.payload["code"], "cancelled", "{end:?}");
}

/// Control frames have a budget of their own per connection: 20 a second
/// (60 sent at once span at most two windows: 21 in one of them).
#[tokio::test]
async fn a_flood_of_control_frames_is_refused_past_its_own_budget() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=flo").await;
    for _ in 0..60 {
        send(
            &mut ws,
            &WebSocketMessage::new(MessageType::Ack, json!({"seq": 1})),
        )
        .await;
    }
    let flood = next_frame(&mut ws).await.unwrap();
    assert_eq!(flood.payload["code"], "rate_limited", "{flood:?}");
    assert!(flood.payload["retry_after_ms"].as_u64().unwrap() <= 1_000);
}

#[tokio::test]
async fn the_connection_cap_refuses_with_429_then_recovers() {
    let r = start(GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_connections_per_user: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut first, _) = connect(&r, "user_id=gina").await;
    assert_eq!(handshake(&r, "user_id=gina").await, (429, true));
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let mut ok = false;
    for _ in 0..100 {
        if handshake(&r, "user_id=gina").await.0 == 101 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot was released after the close");
}

#[tokio::test]
async fn missing_credentials_are_401() {
    let r = start(GatewayConfig::default()).await;
    assert_eq!(handshake(&r, "").await.0, 401);
}

#[tokio::test]
async fn health_and_metrics() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=hank").await;
    send(&mut ws, &start_agent(&["search"], 0)).await;
    for _ in 0..5 {
        next_frame(&mut ws).await.unwrap();
    }
    let (status, body) = http_get(&r, "/health").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["runs"], 1);
    let (status, body) = http_get(&r, "/metrics").await;
    assert_eq!(status, 200);
    let value = metric_values(&body);
    assert_eq!(value("wsc_gateway_runs_total"), Some(1.0));
    assert_eq!(value("wsc_messages_processed_total"), Some(1.0));
    assert!(value("wsc_gateway_frames_sent_total").unwrap() >= 5.0);
    let (status, body) = http_get(&r, "/api/stats").await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["gateway"]["runs"], 1);
}

#[tokio::test]
async fn shutdown_closes_with_1001_and_keeps_the_session() {
    let mut r = start(GatewayConfig::default()).await;
    let (mut ws, hello) = connect(&r, "user_id=ivy").await;
    r.stop.take().unwrap().send(()).unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Away);
    // The session outlives the connection, detached and resumable.
    let session = hello["session_id"].as_str().unwrap();
    assert!(detached_soon(&r, session).await);
}

#[tokio::test]
async fn jwt_auth_accepts_good_tokens_only() {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let secret = "test-secret-of-thirty-two-bytes!";
    let r = start(GatewayConfig {
        auth: wsc_server::AuthMode::Jwt(
            wsc_server::JwtAuth::new(secret)
                .unwrap()
                .with_audience("chat")
                .with_issuer("https://auth.example"),
        ),
        ..Default::default()
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = |key: &str, claims: serde_json::Value| {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let claims = |sub: &str, exp: u64| json!({"sub": sub, "exp": exp, "aud": "chat", "iss": "https://auth.example"});
    let token = |key: &str, exp: u64| signed(key, claims("jwt-user", exp));
    let status = |query: String| {
        let r = &r;
        async move {
            let status = handshake(r, &query).await.0;
            // Many refusals from one address: keep it out of backoff.
            r.gateway
                .rate_limiter()
                .record_handshake_success("127.0.0.1".parse().unwrap());
            status
        }
    };
    // alg "none": header {"alg":"none"}, no signature.
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&claims("jwt-user", now + 600).to_string())
    );
    assert_eq!(status(format!("token={none}")).await, 401);
    assert_eq!(
        status(format!("token={}", token("wrong-key", now + 600))).await,
        401
    );
    assert_eq!(
        status(format!("token={}", token(secret, now - 600))).await,
        401
    );
    // Expired 30 s ago: past the 5 s leeway (the library's default is 60).
    assert_eq!(
        status(format!("token={}", token(secret, now - 30))).await,
        401,
        "expired"
    );
    // Not valid before a minute from now.
    let mut early = claims("jwt-user", now + 600);
    early["nbf"] = json!(now + 60);
    assert_eq!(
        status(format!("token={}", signed(secret, early))).await,
        401,
        "nbf"
    );
    // `sub` empty, too long, not printable, or missing.
    for sub in [String::new(), "x".repeat(2_800), "eve\nINFO forged".into()] {
        assert_eq!(
            status(format!("token={}", signed(secret, claims(&sub, now + 600)))).await,
            401,
            "sub {sub:.20?}"
        );
    }
    let mut no_sub = claims("x", now + 600);
    no_sub.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        status(format!("token={}", signed(secret, no_sub))).await,
        401
    );
    // Another audience or issuer, or none.
    for (field, value) in [("aud", json!("billing")), ("iss", json!("https://evil"))] {
        let mut other = claims("jwt-user", now + 600);
        other[field] = value;
        assert_eq!(
            status(format!("token={}", signed(secret, other))).await,
            401,
            "{field}"
        );
        let mut missing = claims("jwt-user", now + 600);
        missing.as_object_mut().unwrap().remove(field);
        assert_eq!(
            status(format!("token={}", signed(secret, missing))).await,
            401,
            "no {field}"
        );
    }
    assert_eq!(
        status("user_id=someone".into()).await,
        401,
        "dev credentials are not accepted in jwt mode"
    );
    let (_ws, hello) = connect(&r, &format!("token={}", token(secret, now + 600))).await;
    assert_eq!(hello["resumed"], false);
    // Within the leeway of its expiry, a token still works.
    let (_ws, hello) = connect(&r, &format!("token={}", token(secret, now - 2))).await;
    assert_eq!(hello["resumed"], false);
}

#[test]
fn a_jwt_secret_shorter_than_32_bytes_is_refused() {
    for weak in ["", "secret", &"x".repeat(31)] {
        let err = wsc_server::JwtAuth::new(weak).unwrap_err();
        assert_eq!(err.0, weak.len());
        assert!(err.to_string().contains("at least 32"), "{err}");
    }
    assert!(wsc_server::JwtAuth::new("x".repeat(32)).is_ok());
}

fn base64_url(s: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// On paused tokio time: the default 15 s heartbeat, a minute of it, no
/// real waiting.
#[tokio::test(start_paused = true)]
async fn heartbeats_drop_a_silent_peer_and_keep_its_session() {
    let r = start_on_tokio_time(GatewayConfig::default()).await;
    // A reading client answers pings and stays; one that never reads goes silent.
    let (mut live, _) = connect(&r, "user_id=live").await;
    let (mut silent, hello) = connect(&r, "user_id=silent").await;
    let session = hello["session_id"].as_str().unwrap().to_owned();
    let reader = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(Err(_)) | Some(Ok(Message::Close(_))) | None) =
                tokio::time::timeout(Duration::from_millis(20), live.next()).await
            {
                return false;
            }
        }
        true
    });
    // The silent client sends one frame at 5 s, then never again (and
    // never reads): heard at 5 s, so the beats at 15 s and 30 s find it
    // silent for 10 s and 25 s, and the beat at 45 s for 40 s (over two
    // intervals): dropped then, not before.
    tokio::time::sleep(Duration::from_secs(5)).await;
    send(
        &mut silent,
        &WebSocketMessage::new(MessageType::Ping, json!({})),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(39)).await;
    let record = r.gateway.sessions().session(&session).await.unwrap();
    assert!(
        record.expect("kept").detached_at.is_none(),
        "still attached at 44 s"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let record = r.gateway.sessions().session(&session).await.unwrap();
    assert!(
        record.expect("kept").detached_at.is_some(),
        "the silent peer was dropped and its session detached"
    );
    assert!(reader.await.unwrap(), "the reading client stayed connected");
}

#[tokio::test]
async fn every_resume_refusal_reason_over_the_wire() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, hello) = connect(&r, "user_id=jo").await;
    send(&mut ws, &start_agent(&["a"], 0)).await;
    for _ in 0..5 {
        next_frame(&mut ws).await.unwrap();
    }
    // The client has seq 1..3 for sure: they may leave the buffer. A ping
    // after the ack shows it was handled (frames are handled in order).
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::Ack, json!({"seq": 3})),
    )
    .await;
    ping_pong(&mut ws).await;
    let (session, token) = (
        hello["session_id"].as_str().unwrap().to_owned(),
        hello["resume_token"].as_str().unwrap().to_owned(),
    );
    let resume =
        |last: u64| format!("user_id=jo&session_id={session}&resume_token={token}&last_seq={last}");
    // Frames 1..3 were acked away: a resume from 1 would skip 2 and 3.
    let (_w, h) = connect(&r, &resume(1)).await;
    assert_eq!(h["reason"], "gap");
    // Beyond any frame the session sent.
    let (_w, h) = connect(&r, &resume(99)).await;
    assert_eq!(h["reason"], "epoch_mismatch");
    // Another user with the right token.
    let (_w, h) = connect(
        &r,
        &format!("user_id=mallory&session_id={session}&resume_token={token}&last_seq=5"),
    )
    .await;
    assert_eq!(h["reason"], "unauthorized");
    // Lost for longer than the session TTL.
    // Lost for longer than the session TTL: see
    // `a_lost_session_resumes_within_its_ttl_and_expires_after`.
    drop(ws);
    assert_eq!(r.gateway.stats().resumes_refused, 3);
}

/// On paused tokio time: the default five-minute session TTL passes
/// without real waiting; the upkeep's expiry runs on the same clock.
#[tokio::test(start_paused = true)]
async fn a_lost_session_resumes_within_its_ttl_and_expires_after() {
    let r = start_on_tokio_time(GatewayConfig::default()).await;
    let (ws, hello) = connect(&r, "user_id=jo").await;
    let (session, token) = (
        hello["session_id"].as_str().unwrap().to_owned(),
        hello["resume_token"].as_str().unwrap().to_owned(),
    );
    let resume = format!("user_id=jo&session_id={session}&resume_token={token}&last_seq=0");
    drop(ws);
    assert!(detached_soon(&r, &session).await);
    // Within the TTL it resumes...
    tokio::time::sleep(Duration::from_secs(299)).await;
    let (ws, h) = connect(&r, &resume).await;
    assert_eq!(h["resumed"], true, "{h}");
    drop(ws);
    assert!(detached_soon(&r, &session).await);
    // ...past it (and the next 10 s expiry pass) the upkeep removed it,
    // without a resume attempt to notice; a resume finds nothing.
    tokio::time::sleep(Duration::from_secs(311)).await;
    assert_eq!(r.gateway.sessions().session(&session).await.unwrap(), None);
    let (_ws, h) = connect(&r, &resume).await;
    assert_eq!(h["reason"], "unknown_session");
    let stats = r.gateway.stats();
    assert_eq!((stats.resumes, stats.resumes_refused), (1, 1));
}

/// The upkeep runs for a gateway used only through its router, and stops
/// when asked.
#[tokio::test(start_paused = true)]
async fn the_upkeep_runs_without_serve_and_stops_on_request() {
    let gateway = wsc_server::Gateway::builder(GatewayConfig::default())
        .clock(wsc_core::TokioClock::new().shared())
        .build()
        .await
        .unwrap();
    let _router = gateway.router();
    assert!(gateway.upkeep_running());
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(gateway.stats_series().len(), 3, "one sample a second");
    gateway.stop_upkeep();
    assert!(!gateway.upkeep_running());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(gateway.stats_series().len(), 3, "no sample after stop");
}

#[tokio::test]
async fn failed_handshakes_put_the_ip_in_backoff() {
    let r = start(GatewayConfig::default()).await;
    for _ in 0..5 {
        assert_eq!(handshake(&r, "").await.0, 401);
    }
    // After 5 failures the IP backs off: even good credentials wait.
    assert_eq!(handshake(&r, "user_id=kim").await, (429, true));
}

#[tokio::test]
async fn draining_refuses_handshakes_with_503_and_health_says_so() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=zoe").await;
    assert_eq!(http_get(&r, "/health").await.0, 200);
    r.gateway.shutdown();
    assert!(r.gateway.is_shutting_down());
    // Open connections are closed with 1001 ...
    assert_eq!(close_code(&mut ws).await, CloseCode::Away);
    // ... new ones are refused before the upgrade, with a JSON reason ...
    assert_eq!(handshake(&r, "user_id=zoe").await, (503, false));
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(
        b"GET /ws?user_id=zoe HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
          Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""error":"shutting_down""#), "{answer}");
    // ... and /health tells load balancers to move away.
    let (status, body) = http_get(&r, "/health").await;
    assert_eq!(status, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "shutting_down");
    assert!(r.gateway.stats().refused_handshakes >= 2);
}

/// Emits `agent_started`, `pairs` tool calls with big results, then
/// `agent_completed`: megabytes for a client that does not read.
struct BigAgent {
    pairs: usize,
}

#[async_trait::async_trait]
impl wsc_server::AgentRunner for BigAgent {
    async fn run(&self, request: wsc_server::AgentRequest, sink: wsc_server::EventSink) {
        let blob = "x".repeat(4096);
        sink.emit(MessageType::AgentStarted, json!({})).await;
        for i in 0..self.pairs {
            let call = format!("{}-{i}", request.run_id);
            let tool = json!({"tool_name": "fetch", "tool_call_id": call});
            sink.emit(MessageType::ToolExecuting, tool.clone()).await;
            let mut done = tool;
            done["result"] = json!(blob);
            sink.emit(MessageType::ToolCompleted, done).await;
        }
        sink.emit(MessageType::AgentCompleted, json!({"result": "done"}))
            .await;
    }
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_resumes_without_loss() {
    let pairs = 2_000; // about 8 MB of frames: more than the socket buffers hold
    let total = 2 + 2 * pairs as u64;
    let config = GatewayConfig {
        sessions: wsc_server::SessionsConfig {
            outbound_queue: 8,
            replay_buffer: 10_000,
            replay_buffer_bytes: 64 << 20,
            ..Default::default()
        },
        http: wsc_server::HttpConfig {
            write_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = start_gateway(Gateway::with_runner(
        config,
        std::sync::Arc::new(BigAgent { pairs }),
    ))
    .await;

    // A client with a tiny receive buffer that stops reading after hello.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(r.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{}/ws?user_id=sloth", r.addr),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let hello = next_frame(&mut ws).await.unwrap().payload;
    send(&mut ws, &start_agent(&[], 0)).await;

    // The gateway gives up on it ...
    let mut dropped = false;
    for _ in 0..1_500 {
        if r.gateway.stats().slow_clients >= 1 {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dropped, "a client that never reads must be disconnected");

    // ... it reads what had reached it before the cut ...
    let mut seqs = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await
    {
        if let Message::Text(t) = message
            && let Ok(frame) = parse_server_frame(&t)
        {
            seqs.extend(frame.seq);
        }
    }
    let got = seqs.len() as u64;
    assert!(got < total, "the cut came before the run's end");
    assert_eq!(seqs, (1..=got).collect::<Vec<_>>(), "in order, no gap");

    // ... and, once the run has finished, resumes with exactly the frames
    // it missed. (Resuming while the agent still floods the session would
    // be another slow connection: the client cannot read 8 MB instantly.)
    let session = hello["session_id"].as_str().unwrap();
    for _ in 0..1_500 {
        let record = r.gateway.sessions().session(session).await.unwrap();
        if record.expect("kept").last_seq == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let query = format!(
        "user_id=sloth&session_id={}&resume_token={}&last_seq={got}",
        hello["session_id"].as_str().unwrap(),
        hello["resume_token"].as_str().unwrap(),
    );
    let (mut ws, again) = connect(&r, &query).await;
    assert_eq!(again["resumed"], true, "{again}");
    let mut last = None;
    let mut expected = got + 1;
    while expected <= total {
        let frame = next_frame(&mut ws).await.expect("the rest of the run");
        assert_eq!(frame.seq, Some(expected), "no gap, no duplicate");
        expected += 1;
        last = Some(frame.message_type);
    }
    assert_eq!(last, Some(MessageType::AgentCompleted));
}

#[tokio::test]
async fn oversized_queries_are_refused_and_others_still_served() {
    let r = start(GatewayConfig::default()).await;
    // A 10 KB query string: 414 with a JSON reason, before any lookup.
    let long = format!("/ws?user_id=eve&pad={}", "x".repeat(10_000));
    let answer = raw_handshake(&r, &long, "").await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer:.200}");
    assert!(
        answer.contains(r#""error":"query_too_long""#),
        "{answer:.400}"
    );
    // The gateway still serves everyone else.
    let (_ws, hello) = connect(&r, "user_id=ok").await;
    assert_eq!(hello["resumed"], false);
}

#[tokio::test]
async fn the_event_monitor_tracks_at_most_max_tracked_runs() {
    let r = start(GatewayConfig {
        agents: wsc_server::AgentsConfig {
            max_tracked_runs: 3,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut ws, _) = connect(&r, "user_id=tracy").await;
    for _ in 0..5 {
        send(&mut ws, &start_agent(&[], 0)).await;
        while next_frame(&mut ws).await.expect("the run").message_type
            != MessageType::AgentCompleted
        {}
    }
    assert_eq!(r.gateway.stats().runs, 5);
    assert_eq!(r.gateway.event_monitor().session_count(), 3);
}

#[tokio::test]
async fn a_repeated_start_with_the_same_message_id_starts_one_run() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=rita").await;
    let start = start_agent(&["search"], 0).with_message_id("start-1");
    send(&mut ws, &start).await;
    send(&mut ws, &start).await;
    // A different id is a different run.
    send(&mut ws, &start_agent(&[], 0).with_message_id("start-2")).await;
    let mut runs = std::collections::BTreeMap::<String, Vec<MessageType>>::new();
    let mut completed = 0;
    while completed < 2 {
        let frame = next_frame(&mut ws).await.expect("frames");
        let run = frame.payload["run_id"].as_str().unwrap().to_owned();
        completed += usize::from(frame.message_type == MessageType::AgentCompleted);
        runs.entry(run).or_default().push(frame.message_type);
    }
    assert_eq!(runs.len(), 2, "{runs:?}");
    let lengths: Vec<usize> = runs.values().map(Vec::len).collect();
    assert_eq!(lengths.iter().sum::<usize>(), 5 + 3, "{runs:?}");
    let stats = r.gateway.stats();
    assert_eq!((stats.runs, stats.repeated_starts), (2, 1));
    // Nothing else arrives: the repeat started nothing.
    ping_pong(&mut ws).await;
}

/// Every gateway counter, the delivery-latency histogram, the standard
/// process metrics and a user's own metric on `/metrics`, from one
/// registry; OpenMetrics when asked for. Paused time: the sampler's second
/// passes at once.
#[tokio::test(start_paused = true)]
async fn metrics_come_from_one_registry_in_both_formats() {
    let r = start_on_tokio_time(GatewayConfig::default()).await;
    let mine = wsc_server::prometheus_client::metrics::counter::Counter::<u64>::default();
    r.gateway.register_metrics(|registry| {
        registry.register("myapp_widgets", "Widgets made.", mine.clone());
    });
    mine.inc_by(7);
    let (mut ws, _) = connect(&r, "user_id=met").await;
    send(&mut ws, &start_agent(&["search"], 0)).await;
    for _ in 0..5 {
        next_frame(&mut ws).await.unwrap();
    }
    // Two bad frames (one connection, one run: distinct numbers).
    for _ in 0..2 {
        ws.send(Message::text("{not json")).await.unwrap();
        assert_eq!(
            next_frame(&mut ws).await.unwrap().payload["code"],
            "invalid_json"
        );
    }
    // The sampler merges the latencies and caches the health every second.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let (status, head, body) = http_get_with(&r, "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let value = metric_values(&body);
    let stats = r.gateway.stats();
    for (name, want) in [
        ("wsc_gateway_connections_total", stats.connections),
        ("wsc_gateway_runs_total", stats.runs),
        ("wsc_gateway_bad_frames_total", 2),
        ("wsc_gateway_frames_sent_total", stats.frames_sent),
        ("wsc_gateway_refused_handshakes_total", 0),
        ("wsc_gateway_rate_limited_total", 0),
        ("wsc_gateway_resumes_total", 0),
        ("wsc_gateway_resumes_refused_total", 0),
        ("wsc_gateway_slow_clients_total", 0),
        ("wsc_gateway_http_head_timeouts_total", 0),
        ("wsc_gateway_http_heads_too_large_total", 0),
        ("wsc_gateway_repeated_starts_total", 0),
        ("wsc_gateway_redis_errors_total", 0),
        ("wsc_gateway_local_fallback_sessions_total", 0),
        ("wsc_event_monitor_runs", 1),
        ("myapp_widgets_total", 7),
        (
            "wsc_event_monitor_stored_bytes",
            r.gateway.event_monitor().stored_bytes() as u64,
        ),
        (
            "wsc_connection_state_bytes",
            r.gateway.performance_monitor().state_bytes() as u64,
        ),
    ] {
        assert_eq!(value(name), Some(want as f64), "{name}\n{body}");
    }
    // Memory as a budget: the run's events, the session's frames, the
    // connection's measurements.
    assert!(value("wsc_event_monitor_stored_bytes").unwrap_or(0.0) > 0.0);
    assert!(value("wsc_connection_state_bytes").unwrap_or(0.0) > 0.0);
    assert!(
        value("wsc_gateway_replay_buffer_bytes").unwrap_or(0.0) > 0.0,
        "the session's unacknowledged frames\n{body}"
    );
    // Five live events, each measured from emission to write.
    assert_eq!(
        value("wsc_gateway_delivery_latency_seconds"),
        Some(5.0),
        "{body}"
    );
    assert!(value("process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value("process_open_fds").unwrap() >= 3.0);
    assert!(value("process_cpu_seconds_total").unwrap() >= 0.0);
    assert_eq!(
        value("wsc_messages_processed_total"),
        Some(1.0),
        "the start; the bad frame is not processed"
    );

    // Prometheus asks for OpenMetrics.
    let (status, head, body) = http_get_with(
        &r,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE wsc_gateway_runs counter\nwsc_gateway_runs_total 1\n"),
        "{body}"
    );
}

/// `stop_agent` ends a slow run with one `agent_error {code: "cancelled"}`
/// and frees its place; another user cannot stop it; a user's fifth run in
/// flight is refused `rate_limited`. Paused time: the slow runs wait
/// without real time.
#[tokio::test(start_paused = true)]
async fn stop_agent_cancels_and_runs_in_flight_are_capped() {
    let r = start_on_tokio_time(GatewayConfig::default()).await;
    let (mut ws, _) = connect(&r, "user_id=sam").await;
    // Four slow runs: 5 s between events.
    for i in 0..4 {
        send(
            &mut ws,
            &start_agent(&["search"], 5_000).with_message_id(format!("s{i}")),
        )
        .await;
    }
    let mut run_ids = Vec::new();
    while run_ids.len() < 4 {
        let f = next_frame(&mut ws).await.unwrap();
        if f.message_type == MessageType::AgentStarted {
            run_ids.push(f.payload["run_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(r.gateway.runs_in_flight("sam"), 4);
    // A fifth is refused, and names the start it refuses.
    send(&mut ws, &start_agent(&["search"], 0).with_message_id("s4")).await;
    let refusal = next_frame(&mut ws).await.unwrap();
    assert_eq!(refusal.payload["code"], "rate_limited", "{refusal:?}");
    assert_eq!(refusal.payload["ref_message_id"], "s4");
    // It says which limit, and when to try again.
    assert_eq!(refusal.payload["limit"], "runs_in_flight", "{refusal:?}");
    assert!(refusal.payload["retry_after_ms"].as_u64().unwrap() >= 1_000);
    // Another user cannot stop sam's run.
    let (mut eve, _) = connect(&r, "user_id=eve").await;
    send(
        &mut eve,
        &WebSocketMessage::new(MessageType::StopAgent, json!({"run_id": run_ids[0]})),
    )
    .await;
    assert_eq!(
        next_frame(&mut eve).await.unwrap().payload["code"],
        "invalid_message"
    );
    // Sam stops his first run.
    send(
        &mut ws,
        &WebSocketMessage::new(MessageType::StopAgent, json!({"run_id": run_ids[0]})),
    )
    .await;
    let end = loop {
        let f = next_frame(&mut ws).await.unwrap();
        if f.payload["run_id"] == run_ids[0].as_str()
            && matches!(
                f.message_type,
                MessageType::AgentError | MessageType::AgentCompleted
            )
        {
            break f;
        }
    };
    assert_eq!(end.message_type, MessageType::AgentError);
    assert_eq!(end.payload["code"], "cancelled");
    for _ in 0..100 {
        if r.gateway.runs_in_flight("sam") == 3 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(r.gateway.runs_in_flight("sam"), 3, "its place is free");
    // Nothing more of the stopped run; the others finish normally.
    let mut completed = 0;
    while completed < 3 {
        let f = next_frame(&mut ws).await.unwrap();
        assert_ne!(f.payload["run_id"], run_ids[0].as_str(), "{f:?}");
        completed += usize::from(f.message_type == MessageType::AgentCompleted);
    }
    // A stopped run is cancelled, not failed: health stays good.
    let health = r.gateway.event_monitor().check_health();
    assert_eq!(
        (
            health.completed_runs,
            health.failed_runs,
            health.cancelled_runs
        ),
        (3, 0, 1)
    );
    // (Its slow steps make latency an issue; a failure is not one.)
    assert!(
        !health.issues.iter().any(|i| i.contains("failed")),
        "{:?}",
        health.issues
    );
    assert!(matches!(
        r.gateway
            .event_monitor()
            .validate_session_completion(&run_ids[0]),
        Err(wsc_event_monitor::EventValidationError::Cancelled { .. })
    ));
}

/// The publish API key of the tests.
const KEY: &str = "k3y-0123456789abcdef0123456789abcdef";

/// A gateway configuration with the publish API on, under `key`.
fn with_api_key(key: &str) -> GatewayConfig {
    GatewayConfig {
        http: wsc_server::HttpConfig {
            api_key: Some(wsc_server::ApiKey::new(key).unwrap()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `POST /api/publish` checks the key before it reads a byte of the body:
/// a wrong key is `401` at once even for a huge declared body; with the
/// right key a body over `max_publish_bytes` is `413` and one that does
/// not arrive within `body_timeout` is `408`; an address presenting wrong
/// keys backs off as after failed handshakes (`429`, even with the right
/// key then). The same deadline holds for `POST /ag-ui`.
#[tokio::test]
async fn the_publish_api_authenticates_before_reading_and_bounds_bodies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = start(GatewayConfig {
        http: wsc_server::HttpConfig {
            api_key: Some(wsc_server::ApiKey::new(KEY).unwrap()),
            max_publish_bytes: 1_000,
            body_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // The head only: what the gateway answers before any body comes.
    let head_only = |path: &str, auth: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    };
    let status_of = async |request: String, body: &[u8]| -> u16 {
        let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut buf = vec![0u8; 12];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .expect("an answer without the rest of the body")
            .unwrap();
        String::from_utf8_lossy(&buf[9..12]).parse().unwrap()
    };
    let wrong = "Authorization: Bearer wrong-key\r\n";
    assert_eq!(
        status_of(head_only("/api/publish", wrong, 10_000_000), b"").await,
        401
    );
    let auth = &format!("Authorization: Bearer {KEY}\r\n");
    assert_eq!(
        status_of(head_only("/api/publish", auth, 5_000), &[b' '; 1_500]).await,
        413
    );
    assert_eq!(
        status_of(head_only("/api/publish", auth, 100), b"{").await,
        408
    );
    let dev = "X-Wsc-User-Id: ana\r\n";
    assert_eq!(status_of(head_only("/ag-ui", dev, 100), b"{").await, 408);
    // Wrong keys from one address: it backs off.
    for _ in 0..6 {
        status_of(head_only("/api/publish", wrong, 2), b"{}").await;
    }
    assert_eq!(
        status_of(head_only("/api/publish", auth, 2), b"{}").await,
        429
    );
}

/// `POST /api/publish`: off without a key (404), 401 without the right
/// key, 400 for each wrong shape (a session named with another user's id,
/// a control type among them); a frame to a user reaches every session
/// of theirs (a detached one on its resume), numbered like agent frames,
/// and a repeated `message_id` is delivered once.
#[tokio::test]
async fn the_publish_api_reaches_every_session_of_a_user_once() {
    let off = start(GatewayConfig::default()).await;
    let frame = r#"{"user_id": "pia", "type": "agent_progress", "payload": {"step": 1}, "message_id": "p1"}"#;
    assert_eq!(http_post(&off, "/api/publish", "", frame).await.0, 404);

    let r = start(with_api_key(KEY)).await;
    let auth = &format!("Authorization: Bearer {KEY}\r\n");
    assert_eq!(http_post(&r, "/api/publish", "", frame).await.0, 401);
    let wrong = "Authorization: Bearer k3y-not\r\n";
    assert_eq!(http_post(&r, "/api/publish", wrong, frame).await.0, 401);
    for bad in [
        "not json",
        r#"{"type": "agent_progress"}"#,
        r#"{"user_id": "pia"}"#,
        r#"{"user_id": "pia", "type": "start_agent"}"#,
        r#"{"user_id": "pia", "type": "agent_progress", "payload": 3}"#,
    ] {
        let (status, body) = http_post(&r, "/api/publish", auth, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["error"],
            "invalid_request"
        );
    }

    // Two sessions of pia: one attached, one detached (resumable).
    let (mut a, _) = connect(&r, "user_id=pia").await;
    let (b, hello_b) = connect(&r, "user_id=pia").await;
    let (session_b, token_b) = (
        hello_b["session_id"].as_str().unwrap().to_owned(),
        hello_b["resume_token"].as_str().unwrap().to_owned(),
    );
    drop(b);
    assert!(detached_soon(&r, &session_b).await);
    // A session of pia's named with another user's id: refused, and
    // control types are never publishable.
    let both =
        format!(r#"{{"session_id": "{session_b}", "user_id": "olaf", "type": "agent_progress"}}"#);
    let (status, body) = http_post(&r, "/api/publish", auth, &both).await;
    assert_eq!(status, 400, "{body}");
    for control in ["ping", "pong", "error", "ack", "heartbeat"] {
        let frame = format!(r#"{{"user_id": "pia", "type": "{control}"}}"#);
        let (status, body) = http_post(&r, "/api/publish", auth, &frame).await;
        assert_eq!(status, 400, "{control}: {body}");
    }
    let (status, body) = http_post(&r, "/api/publish", auth, frame).await;
    assert_eq!((status, body.as_str()), (200, r#"{"sessions":2}"#));
    let got = next_frame(&mut a).await.unwrap();
    assert_eq!(
        (got.message_type, got.seq, got.message_id.as_deref()),
        (MessageType::AgentProgress, Some(1), Some("p1"))
    );
    assert_eq!(got.payload["step"], 1);
    // The same message id again: nobody gets it twice.
    let (status, body) = http_post(&r, "/api/publish", auth, frame).await;
    assert_eq!((status, body.as_str()), (200, r#"{"sessions":0}"#));
    ping_pong(&mut a).await;
    // The detached session gets it on its resume.
    let (mut b, hello) = connect(
        &r,
        &format!("user_id=pia&session_id={session_b}&resume_token={token_b}&last_seq=0"),
    )
    .await;
    assert_eq!(hello["resumed"], true);
    assert_eq!(hello["replayed"], 1);
    assert_eq!(
        next_frame(&mut b).await.unwrap().message_id.as_deref(),
        Some("p1")
    );
    // One session by id.
    let to_one =
        format!(r#"{{"session_id": "{session_b}", "type": "agent_progress", "payload": {{}}}}"#);
    let (status, body) = http_post(&r, "/api/publish", auth, &to_one).await;
    assert_eq!((status, body.as_str()), (200, r#"{"sessions":1}"#));
    assert_eq!(next_frame(&mut b).await.unwrap().seq, Some(2));
}

/// One publish's fan-out is bounded in bytes: a large frame to a user
/// with many sessions is `413 fanout_too_large` and delivers nothing, so
/// it cannot fill the replay budget and reclaim a bystander's resumable
/// session; a smaller one goes to every session.
#[tokio::test]
async fn one_publish_cannot_reclaim_other_users_sessions() {
    let mut config = with_api_key(KEY);
    config.limits.max_connections_per_user = 20;
    config.sessions.max_sessions_per_user = Some(20);
    // 4 MiB of replay buffers in all: one publish may add 512 KiB.
    config.sessions.max_replay_bytes_total = 4 << 20;
    let r = start(config).await;
    let auth = &format!("Authorization: Bearer {KEY}\r\n");
    // A bystander with a resumable session.
    let (bea, hello) = connect(&r, "user_id=bea").await;
    let resume = format!(
        "user_id=bea&session_id={}&resume_token={}&last_seq=0",
        hello["session_id"].as_str().unwrap(),
        hello["resume_token"].as_str().unwrap()
    );
    drop(bea);
    assert!(detached_soon(&r, hello["session_id"].as_str().unwrap()).await);
    // A user with 20 connected sessions.
    let mut many = Vec::new();
    for _ in 0..20 {
        many.push(connect(&r, "user_id=many").await.0);
    }
    let publish = |bytes: usize| {
        format!(
            r#"{{"user_id": "many", "type": "agent_progress", "payload": {{"pad": "{}"}}}}"#,
            "x".repeat(bytes)
        )
    };
    // 20 × 300 KB = 6 MB: over the cap, delivered to no one.
    let (status, body) = http_post(&r, "/api/publish", auth, &publish(300_000)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("fanout_too_large"), "{body}");
    assert!(body.contains("--max-publish-fanout-bytes"), "{body}");
    // 20 × 10 KB fits.
    let (status, body) = http_post(&r, "/api/publish", auth, &publish(10_000)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"sessions":20}"#));
    for ws in &mut many {
        let got = next_frame(ws).await.unwrap();
        assert_eq!(
            (got.seq, got.payload["pad"].as_str().map(str::len)),
            (Some(1), Some(10_000))
        );
    }
    // The bystander still resumes.
    let (_bea, again) = connect(&r, &resume).await;
    assert_eq!(again["resumed"], true, "{again}");
}

/// A runner that relays frames already in their wire form (`forward`),
/// and reports what each forward answered.
struct Relay(tokio::sync::mpsc::UnboundedSender<Result<bool, wsc_server::ForwardError>>);

/// The frames the relay forwards, in order, for run `run`: their text is
/// spaced and ordered as no serializer of ours would write it.
fn relayed(run: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{"type":"agent_started","payload": {{ "run_id" : "{run}", "z": 1, "a": [ 1 , 2 ] }}}}"#
        ),
        format!(
            r#"{{"type":"agent_thinking","payload":{{"run_id":"{run}","thought":"caf\u00e9 ☕"}}, "message_id" : "relay-1"}}"#
        ),
        format!(
            r#"{{"type":"tool_executing","payload":{{"run_id":"{run}","tool_name":"t","tool_call_id":"c"}}}}"#
        ),
        format!(
            r#"{{"type":"tool_completed","payload":{{"run_id":"{run}","tool_name":"t","tool_call_id":"c"}}}}"#
        ),
        format!(r#"{{"type":"agent_completed","payload":{{"run_id":"{run}","result":"done"}}}}"#),
    ]
}

#[async_trait::async_trait]
impl wsc_server::AgentRunner for Relay {
    async fn run(&self, request: wsc_server::AgentRequest, sink: wsc_server::EventSink) {
        use wsc_core::WireFrame;
        let wire = |text: &str| WireFrame::from_wire(text, None).unwrap();
        // Refused, nothing published: numbered, not a frame, not an agent
        // event.
        let numbered = format!(
            r#"{{"type":"agent_started","payload":{{"run_id":"{}"}},"seq":7}}"#,
            request.run_id
        );
        let _ = self.0.send(sink.forward(wire(&numbered)).await);
        let _ = self.0.send(
            sink.forward(wire(r#"{"type":"agent_started","payload":}"#))
                .await,
        );
        let _ = self.0.send(
            sink.forward(wire(r#"{"type":"connection_established","payload":{}}"#))
                .await,
        );
        for text in relayed(&request.run_id) {
            let _ = self.0.send(sink.forward(wire(&text)).await);
        }
        // After the terminal frame: refused by the run's rules.
        let late = format!(
            r#"{{"type":"agent_thinking","payload":{{"run_id":"{}"}}}}"#,
            request.run_id
        );
        let _ = self.0.send(sink.forward(wire(&late)).await);
    }
}

#[tokio::test]
async fn frames_already_in_wire_form_are_relayed_byte_for_byte_and_checked_like_any_other() {
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let r = start_with_runner(
        GatewayConfig::default(),
        std::sync::Arc::new(Relay(tx)),
        std::sync::Arc::new(wsc_core::SystemClock),
    )
    .await;
    let (mut ws, _) = connect(&r, "user_id=relay").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let mut texts = Vec::new();
    while texts.len() < 5 {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) if !t.contains(r#""type":"ping""#) => texts.push(t.to_string()),
            _ => {}
        }
    }
    let run_id = parse_server_frame(&texts[0]).unwrap().payload["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each is the relayed text, byte for byte, numbered by the session.
    for (i, (got, sent)) in texts.iter().zip(relayed(&run_id)).enumerate() {
        let expected = format!("{},\"seq\":{}}}", &sent[..sent.len() - 1], i + 1);
        assert_eq!(got, &expected);
    }
    let mut got = Vec::new();
    for _ in 0..9 {
        got.push(answers.recv().await.unwrap());
    }
    use wsc_server::ForwardError as F;
    assert_eq!(got[0], Err(F::Numbered));
    assert!(matches!(got[1], Err(F::NotAFrame(_))), "{:?}", got[1]);
    assert_eq!(
        got[2],
        Err(F::NotAnAgentEvent(MessageType::ConnectionEstablished))
    );
    assert!(got[3..8].iter().all(|a| *a == Ok(true)), "{got:?}");
    assert_eq!(got[8], Ok(false), "nothing after the terminal frame");
    // The event monitor saw the run, complete and in order.
    let monitor = r.gateway.event_monitor();
    assert!(monitor.validate_session_completion(&run_id).unwrap());
    assert_eq!(
        monitor.get_session_metrics(&run_id).unwrap().total_events,
        5
    );
}

/// A publish is a frame into its target's sessions, never an event of a
/// run it did not start: a `run_id` naming a run the gateway's agent runs
/// (another user's, or the target's own) is refused (400 `run_conflict`)
/// and neither the run, its event monitor record nor its client sees it;
/// a run id of the backend's own goes through.
#[tokio::test]
async fn a_publish_never_becomes_an_event_of_a_run_it_did_not_start() {
    let r = start(with_api_key(KEY)).await;
    let auth = &format!("Authorization: Bearer {KEY}\r\n");
    let (mut alice, _) = connect(&r, "user_id=alice").await;
    let (_bob, _) = connect(&r, "user_id=bob").await;
    // Alice's run starts, then waits a minute between events.
    send(&mut alice, &start_agent(&["search"], 60_000)).await;
    let started = next_frame(&mut alice).await.unwrap();
    assert_eq!(started.message_type, MessageType::AgentStarted);
    let run_id = started.payload["run_id"].as_str().unwrap().to_owned();
    let publish = |user: &str, t: &str, run: &str| {
        format!(r#"{{"user_id": "{user}", "type": "{t}", "run_id": "{run}", "payload": {{}}}}"#)
    };
    for user in ["bob", "alice"] {
        for t in ["agent_completed", "agent_error", "agent_thinking"] {
            let (status, body) =
                http_post(&r, "/api/publish", auth, &publish(user, t, &run_id)).await;
            assert_eq!(status, 400, "{user} {t}: {body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], "run_conflict");
            assert!(
                body["message"].as_str().unwrap().contains(&run_id),
                "{body}"
            );
        }
    }
    let tracker = r.gateway.event_monitor().tracker(&run_id).unwrap();
    assert!(
        !tracker.is_failed && tracker.violations.is_empty() && !tracker.reached_completion,
        "{tracker:?}"
    );
    assert_eq!(
        tracker.events_received.len(),
        1,
        "only the agent's agent_started"
    );
    assert_eq!(r.gateway.runs_in_flight("alice"), 1);
    // Nothing reached alice; a run id of the backend's own does.
    ping_pong(&mut alice).await;
    let (status, body) = http_post(
        &r,
        "/api/publish",
        auth,
        &publish("alice", "agent_progress", "backend-run-1"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"sessions":1}"#));
    let got = next_frame(&mut alice).await.unwrap();
    assert_eq!(got.payload["run_id"], "backend-run-1");
}

/// Emits `agent_thinking` events of `pad` bytes until the sink refuses
/// one; counts those it accepted.
struct Endless {
    pad: usize,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

#[async_trait::async_trait]
impl wsc_server::AgentRunner for Endless {
    async fn run(&self, _request: wsc_server::AgentRequest, sink: wsc_server::EventSink) {
        let pad = "x".repeat(self.pad);
        while sink
            .emit(MessageType::AgentThinking, json!({"thought": pad}))
            .await
        {
            self.accepted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A run over `--max-run-events` or `--max-run-bytes` ends with one
/// `agent_error run_too_large` naming the cap, after exactly what fitted;
/// its agent is told to stop (its emit is refused).
#[tokio::test]
async fn a_run_over_its_caps_ends_with_run_too_large() {
    for (max_run_events, max_run_bytes, pad, flag) in [
        (25, 1 << 30, 10, "--max-run-events"),
        (1_000_000, 20_000, 1_000, "--max-run-bytes"),
    ] {
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let config = GatewayConfig {
            agents: wsc_server::AgentsConfig {
                max_run_events,
                max_run_bytes,
                ..Default::default()
            },
            ..Default::default()
        };
        let r = start_gateway(Gateway::with_runner(
            config,
            std::sync::Arc::new(Endless {
                pad,
                accepted: accepted.clone(),
            }),
        ))
        .await;
        let (mut ws, _) = connect(&r, "user_id=flood").await;
        send(&mut ws, &start_agent(&[], 0)).await;
        let mut frames = Vec::new();
        loop {
            let frame = next_frame(&mut ws).await.expect("the run ends");
            let end = frame.message_type == MessageType::AgentError;
            frames.push(frame);
            assert!(
                frames.len() <= 1_000,
                "{flag}: the run went on past its cap"
            );
            if end {
                break;
            }
        }
        let (last, events) = frames.split_last().unwrap();
        let bytes: usize = events
            .iter()
            .map(|f| {
                wsc_core::WireFrame::encode(&WebSocketMessage {
                    seq: None,
                    ..f.clone()
                })
                .len()
            })
            .sum();
        assert!(events.len() as u64 <= max_run_events, "{flag}");
        assert!(bytes as u64 <= max_run_bytes, "{flag}: {bytes} bytes");
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::Relaxed),
            events.len() as u64,
            "{flag}: the agent was refused the event over the cap"
        );
        assert_eq!(last.payload["code"], "run_too_large", "{flag}");
        assert!(
            last.payload["message"].as_str().unwrap().contains(flag),
            "{}",
            last.payload
        );
        // Nothing after the terminal frame.
        ping_pong(&mut ws).await;
    }
}

/// A connection whose session another connection resumed is closed with
/// 1013 "session moved" — a code a client reconnects after, not 1008 —
/// and the resumed connection goes on with the session.
#[tokio::test]
async fn a_connection_whose_session_was_resumed_elsewhere_is_closed_1013() {
    let r = start(GatewayConfig::default()).await;
    let (mut old, hello) = connect(&r, "user_id=mo").await;
    let query = format!(
        "user_id=mo&session_id={}&resume_token={}&last_seq=0",
        hello["session_id"].as_str().unwrap(),
        hello["resume_token"].as_str().unwrap()
    );
    let (mut new, again) = connect(&r, &query).await;
    assert_eq!(again["resumed"], true, "{again}");
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(5), old.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        (reason.code, reason.reason.as_str()),
        (CloseCode::Again, "session moved")
    );
    let stats = r.gateway.stats();
    assert_eq!(
        (stats.slow_clients, stats.sessions_moved),
        (0, 1),
        "{stats:?}"
    );
    ping_pong(&mut new).await;
}
