//! SIGTERM closes every WebSocket with 1001 before the process exits: the
//! `wsc-gateway serve` binary in its own process, 200 clients in this one
//! (some idle, some in the middle of a slow run), then `kill -TERM`. Every
//! client must read a close frame with code 1001 (not a reset, 1006), and
//! the process must exit 0.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wsc_core::{MessageType, WebSocketMessage, serialize};

mod support;
use support::*;

const CLIENTS: usize = 200;

/// How a client's connection ended.
#[derive(Debug, PartialEq)]
enum End {
    /// A close frame with this code.
    Close(u16),
    /// The stream ended or failed without one (what clients report as
    /// 1006).
    Abnormal(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_websocket_with_1001_then_exits_0() {
    let mut child = spawn_serve(
        &["--bind", "127.0.0.1:0", "--max-handshakes-per-ip", "0"],
        &[],
        Stdio::null(),
    );
    let addr = listening_address(&first_line(&mut child).await.expect("it serves"));

    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let (mut ws, _) = connect_async(format!("ws://{addr}/ws?user_id=u{i}"))
            .await
            .unwrap();
        // connection_established
        let _ = ws.next().await.unwrap().unwrap();
        if i % 4 == 0 {
            // A run still streaming when the signal comes.
            let start = WebSocketMessage::new(
                MessageType::StartAgent,
                json!({"tools": ["search"], "step_delay_ms": 200}),
            );
            ws.send(Message::text(serialize(&start))).await.unwrap();
        }
        clients.push(ws);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                loop {
                    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                        Ok(Some(Ok(Message::Close(Some(frame))))) => {
                            return End::Close(u16::from(frame.code));
                        }
                        Ok(Some(Ok(Message::Close(None)))) => return End::Close(1005),
                        Ok(Some(Ok(_))) => {}
                        Ok(Some(Err(e))) => return End::Abnormal(e.to_string()),
                        Ok(None) => return End::Abnormal("stream ended".into()),
                        Err(_) => return End::Abnormal("no close within 30 s".into()),
                    }
                }
            })
        })
        .collect();

    let status = terminate(&mut child, Duration::from_secs(30)).await;

    let mut ends = Vec::with_capacity(CLIENTS);
    for reader in readers {
        ends.push(reader.await.unwrap());
    }
    let going_away = u16::from(CloseCode::Away);
    let wrong: Vec<&End> = ends
        .iter()
        .filter(|e| **e != End::Close(going_away))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {CLIENTS} clients did not get 1001: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(status.code(), Some(0), "exit 0 after the drain");
}
