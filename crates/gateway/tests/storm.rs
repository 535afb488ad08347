//! A connection storm against the gateway binary run with few open files
//! (400, set by `prlimit`): many more sockets than it may open, all at
//! once, none of them finishing its request. The gateway never runs out of
//! open files: what it cannot hold is answered 503 with a `Retry-After` as
//! it is accepted and closed; `/health` and `/metrics` still answer in the
//! middle of the storm; and once the storm's sockets close, clients
//! connect as before.

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{MessageType, parse_server_frame};

mod support;
use support::*;

/// The gateway's open-file limit in this test.
const OPEN_FILES: u64 = 400;

/// Sockets the storm opens: half as many again as the gateway may hold.
const STORM: usize = 600;

/// `GET path` on a fresh connection: the status line and the whole answer.
async fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(answer)
}

/// What a silent socket of the storm was told within `wait`: the answer's
/// bytes (empty: held open without a word).
async fn told(socket: &mut TcpStream, wait: Duration) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_past_the_open_file_limit_is_shed_with_503_and_health_still_answers() {
    let log = std::env::temp_dir().join(format!("wsc-storm-{}.log", std::process::id()));
    let stderr = std::fs::File::create(&log).unwrap();
    let mut child = spawn_serve_with_open_files(
        OPEN_FILES,
        &["--bind", "127.0.0.1:0", "--handshake-timeout", "60"],
        Stdio::from(stderr),
    );
    let addr = listening_address(&first_line(&mut child).await.expect("it serves"));

    // The storm: sockets that connect and never send a request.
    let mut storm = Vec::with_capacity(STORM);
    for _ in 0..STORM {
        storm.push(TcpStream::connect(&addr).await.expect("the kernel accepts"));
    }
    // Each is either held (the gateway waits for its request head) or was
    // shed: answered 503 with a Retry-After and closed.
    let answers = futures_util::future::join_all(storm.into_iter().map(|mut socket| async move {
        let answer = told(&mut socket, Duration::from_millis(500)).await;
        (socket, answer)
    }))
    .await;
    let mut held = Vec::new();
    let mut shed = 0;
    for (socket, answer) in answers {
        if answer.is_empty() {
            held.push(socket);
        } else {
            assert!(
                answer.starts_with("HTTP/1.1 503 ") && answer.contains("retry-after: "),
                "a shed socket is told why: {answer}"
            );
            assert!(answer.contains(r#""error":"overloaded""#), "{answer}");
            shed += 1;
        }
    }
    assert!(
        shed >= STORM - OPEN_FILES as usize,
        "{shed} shed of {STORM}"
    );
    assert!(held.len() >= OPEN_FILES as usize / 2, "{} held", held.len());

    // In the middle of the storm, the operator's probes answer.
    let health = get(&addr, "/health")
        .await
        .expect("/health answers in the storm");
    assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
    let metrics = get(&addr, "/metrics")
        .await
        .expect("/metrics answers in the storm");
    let shed_counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wsc_gateway_connections_shed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the shed counter");
    assert!(
        shed_counted >= shed as u64,
        "{shed_counted} counted, {shed} seen"
    );
    // A WebSocket handshake now is shed too, with the same answer.
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user_id=late")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("a handshake in the storm is refused with 503: {other:?}"),
    }

    // The storm passes; clients connect as before.
    drop(held);
    let mut connected = None;
    for _ in 0..50 {
        if let Ok((ws, _)) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user_id=after")).await
        {
            connected = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ws = connected.expect("a client connects once the storm has passed");
    let hello = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break parse_server_frame(&t).unwrap();
        }
    };
    assert_eq!(hello.message_type, MessageType::ConnectionEstablished);

    let _ = child.kill().await;
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        !logged.contains("Too many open files"),
        "the gateway never ran out of open files:\n{logged}"
    );
    assert!(
        logged.contains("new connections are shed"),
        "shedding is logged once:\n{logged}"
    );
}
