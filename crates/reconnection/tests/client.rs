//! ResilientClient against a real WebSocket server (tokio-tungstenite on a
//! loopback port) backed by a SessionRegistry: the server cuts connections
//! abruptly at random and the client still sees every frame exactly once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use wsc_core::{
    ConnectionEstablished, Frame, MessageType, WebSocketMessage, parse_client_frame, serialize,
};
use wsc_reconnection::{
    ClientConfig, ClientEvent, ResilientClient, ResumeRequest, SessionConfig, SessionRegistry,
};

/// The user id of a handshake's query string (the test's own parameter).
fn user_of(query: &str) -> String {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "user_id")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A minimal server speaking the protocol's session part: resume or open,
/// `connection_established`, replay, live frames. `start_agent {frames}`
/// publishes that many numbered frames; each connection is cut abruptly
/// after `cut_after` frames sent (0: never).
#[allow(clippy::result_large_err)] // the handshake callback's type is tungstenite's
async fn serve(registry: Arc<SessionRegistry>, cut_after: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut conn_no = 0usize;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conn_no += 1;
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut query = String::new();
                let ws =
                    tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
                        query = req.uri().query().unwrap_or_default().to_owned();
                        Ok(resp)
                    })
                    .await;
                let Ok(mut ws) = ws else { return };
                let user = user_of(&query);
                // The resume triple, read with the type the client wrote it with.
                let resume = ResumeRequest::from_query(&query).expect("a well-formed resume");
                let start = registry.start(&user, resume.as_ref()).await.unwrap();
                let mut attached = start.attached;
                let hello = ConnectionEstablished {
                    session_id: attached.session_id.clone(),
                    connection_id: format!("c{conn_no}"),
                    resume_token: attached.resume_token.clone(),
                    epoch: attached.epoch,
                    resumed: start.resumed,
                    replayed: start.replay.len() as u64,
                    heartbeat_interval_ms: 15_000,
                    reason: start.reason.map(|r| r.as_str().to_owned()),
                }
                .to_message();
                if ws.send(Message::text(serialize(&hello))).await.is_err() {
                    return;
                }
                // Vary where each connection is cut.
                let limit = if cut_after == 0 {
                    usize::MAX
                } else {
                    cut_after + conn_no % 5
                };
                let mut sent = 0usize;
                for frame in start.replay {
                    if sent >= limit || ws.send(Message::text(frame.as_str())).await.is_err() {
                        return; // dropping the socket: an abrupt cut
                    }
                    sent += 1;
                }
                loop {
                    tokio::select! {
                        frame = attached.frames.recv() => {
                            let Some(frame) = frame else { return };
                            if sent >= limit || ws.send(Message::text(frame.as_str())).await.is_err() {
                                let _ = registry.detach(&attached.session_id, attached.attachment).await;
                                return;
                            }
                            sent += 1;
                        }
                        incoming = ws.next() => {
                            let Some(Ok(Message::Text(text))) = incoming else {
                                let _ = registry.detach(&attached.session_id, attached.attachment).await;
                                return;
                            };
                            let Ok(msg) = parse_client_frame(&text) else { continue };
                            if msg.message_type == MessageType::StartAgent {
                                let n = msg.payload["frames"].as_u64().unwrap_or(0);
                                let (registry, id) = (registry.clone(), attached.session_id.clone());
                                tokio::spawn(async move {
                                    for i in 0..n {
                                        let t = if i % 3 == 0 { MessageType::AgentThinking } else { MessageType::AgentProgress };
                                        registry.publish(&id, WebSocketMessage::new(t, json!({"i": i}))).await.unwrap();
                                        tokio::task::yield_now().await;
                                    }
                                });
                            } else if msg.message_type == MessageType::Ack
                                && let Some(seq) = msg.payload["seq"].as_u64() {
                                    let _ = registry.ack(&attached.session_id, seq).await;
                                }
                        }
                    }
                }
            });
        }
    });
    format!("ws://{addr}/ws")
}

async fn collect(client: &mut ResilientClient, frames: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < frames as usize {
        match tokio::time::timeout(Duration::from_secs(20), client.recv()).await {
            Ok(Some(ClientEvent::Frame(m))) => seqs.extend(m.seq),
            Ok(Some(ClientEvent::GaveUp { reason })) => panic!("gave up: {reason}"),
            Ok(Some(_)) => {}
            Ok(None) => panic!("client stopped"),
            Err(_) => panic!("stalled after {} frames", seqs.len()),
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_once_and_in_order_across_abrupt_cuts() {
    let registry = Arc::new(SessionRegistry::new(SessionConfig::default()));
    let url = serve(registry.clone(), 37).await;
    let mut client = ResilientClient::connect(
        ClientConfig::new(url)
            .with_query("user_id", "alice")
            .with_query("extra", "x y"),
    );
    let Some(ClientEvent::Connected(first)) = client.recv().await else {
        panic!("no connection")
    };
    assert!(!first.resumed && !first.resume_requested);
    client.send(WebSocketMessage::new(
        MessageType::StartAgent,
        json!({"frames": 600}),
    ));
    let seqs = collect(&mut client, 600).await;
    assert_eq!(seqs, (1..=600).collect::<Vec<_>>());
    let stats = client.stats();
    assert!(stats.resumes >= 10, "{stats:?}");
    assert_eq!(stats.resumes_refused, 0);
    assert_eq!(stats.gaps_detected, 0);
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_drops_resume_too() {
    let registry = Arc::new(SessionRegistry::new(SessionConfig::default()));
    let url = serve(registry.clone(), 0).await;
    let mut client = ResilientClient::connect(ClientConfig::new(url).with_query("user_id", "bob"));
    client.send(WebSocketMessage::new(
        MessageType::StartAgent,
        json!({"frames": 300}),
    ));
    let mut seqs = Vec::new();
    let (mut drops, mut resumed, mut awaiting) = (0, 0, false);
    while seqs.len() < 300 || awaiting {
        match tokio::time::timeout(Duration::from_secs(20), client.recv())
            .await
            .unwrap()
        {
            Some(ClientEvent::Frame(m)) => {
                seqs.extend(m.seq);
                if seqs.len() % 45 == 0 && !awaiting {
                    client.drop_connection();
                    drops += 1;
                    awaiting = true;
                }
            }
            Some(ClientEvent::Connected(o)) if o.resume_requested => {
                assert!(o.resumed, "{o:?}");
                resumed += 1;
                awaiting = false;
            }
            Some(_) => {}
            None => panic!("stopped"),
        }
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    assert!(drops >= 1);
    assert_eq!(resumed, drops, "every drop was resumed");
}

#[tokio::test]
async fn gives_up_when_nothing_listens() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = ClientConfig::new(format!("ws://127.0.0.1:{port}/ws"));
    config.max_retries = 2;
    config.initial_retry_delay = Duration::from_millis(1);
    // Never connected: `retry_for_at_least` does not apply.
    let mut client = ResilientClient::connect(config);
    match tokio::time::timeout(Duration::from_secs(10), client.recv())
        .await
        .unwrap()
    {
        Some(ClientEvent::GaveUp { .. }) => {}
        other => panic!("expected GaveUp, got {other:?}"),
    }
}

/// A server whose connection 1 is accepted and cut at once, whose next
/// `refusals` handshakes are answered `503` with `Retry-After: 2` (the
/// gateways' store is failing over), and which accepts every later one.
/// Returns its URL and the times (on the test's clock) of its refusals.
async fn failing_over(
    refusals: usize,
) -> (String, Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(std::sync::Mutex::new(Vec::new()));
    let times = refused.clone();
    tokio::spawn(async move {
        for conn_no in 1usize.. {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            if (2..2 + refusals).contains(&conn_no) {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                times.lock().unwrap().push(tokio::time::Instant::now());
                let _ = stream
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n")
                    .await;
                continue;
            }
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            let hello = ConnectionEstablished {
                session_id: "s".into(),
                connection_id: format!("c{conn_no}"),
                resume_token: "t".into(),
                epoch: 1,
                resumed: conn_no > 1,
                replayed: 0,
                heartbeat_interval_ms: 15_000,
                reason: None,
            }
            .to_message();
            let _ = ws.send(Message::text(serialize(&hello))).await;
            if conn_no == 1 {
                continue; // dropped: an abrupt cut
            }
            tokio::spawn(async move { while ws.next().await.is_some() {} });
        }
    });
    (format!("ws://{addr}/ws"), refused)
}

/// A connection lost while the gateways' store fails over: the handshakes
/// are refused with `503` + `Retry-After: 2` for 20 s, far more tries than
/// `max_retries`. The client waits at least `Retry-After` between tries
/// and keeps trying for `retry_for_at_least`, then resumes — it does not
/// give up during a failover. With no patience, it gives up (and says so).
#[tokio::test(start_paused = true)]
async fn a_store_failover_answered_503_is_waited_out_not_given_up_on() {
    for (patience, resumes) in [(Duration::from_secs(60), true), (Duration::ZERO, false)] {
        let (url, refused) = failing_over(10).await;
        let mut config = ClientConfig::new(url);
        config.max_retries = 2;
        config.initial_retry_delay = Duration::from_millis(1);
        config.max_retry_delay = Duration::from_millis(10);
        config.retry_for_at_least = patience;
        let mut client = ResilientClient::connect(config);
        let mut outcome = None;
        while let Some(event) = client.recv().await {
            match event {
                ClientEvent::Connected(o) if o.resumed => {
                    outcome = Some(true);
                    break;
                }
                ClientEvent::GaveUp { reason } => {
                    assert!(reason.contains("503"), "{reason}");
                    outcome = Some(false);
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(outcome, Some(resumes), "patience {patience:?}");
        let times = refused.lock().unwrap().clone();
        assert_eq!(times.len(), if resumes { 10 } else { 3 });
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_secs(2),
                "Retry-After honoured: {:?}",
                pair[1] - pair[0]
            );
        }
    }
}

/// A gateway at its cap: every handshake is answered `503` with
/// `Retry-After: 30`. Returns its URL and how many it refused.
async fn full_gateway() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = refused.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head).await;
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    (format!("ws://{addr}/ws"), refused)
}

/// A gateway's `Retry-After` holds for that gateway only: a client refused
/// by a full one resumes on the next at once (after its backoff, not 30 s)
/// and skips the full one while it asked to wait.
#[tokio::test(start_paused = true)]
async fn a_full_gateways_retry_after_sends_the_client_to_the_next_one_at_once() {
    // Cuts its connection 1 at once, keeps the later ones.
    let (healthy, _) = failing_over(0).await;
    let (full, refused) = full_gateway().await;
    let mut config = ClientConfig::new(healthy);
    config.alternate_urls = vec![full];
    config.initial_retry_delay = Duration::from_millis(1);
    config.max_retry_delay = Duration::from_millis(10);
    let mut client = ResilientClient::connect(config);
    let t0 = tokio::time::Instant::now();
    let mut connections = 0;
    while let Some(event) = client.recv().await {
        match event {
            ClientEvent::Connected(_) => {
                connections += 1;
                match connections {
                    // Cut (by the gateway, then by the client): the next
                    // try goes to the full gateway, then to this one.
                    2 => client.drop_connection(),
                    3 => break,
                    _ => {}
                }
            }
            ClientEvent::GaveUp { reason } => panic!("gave up: {reason}"),
            _ => {}
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "not held back by the full gateway's Retry-After: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        refused.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the full gateway is skipped while it asked to wait"
    );
}
