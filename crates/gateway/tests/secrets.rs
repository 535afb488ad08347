//! No secrets in logs: the release binary, logging at `debug`, serves JWT
//! clients that connect, run an agent, drop, resume, and send bad input;
//! its whole log must not contain a JWT, the JWT secret or a resume token.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{MessageType, WebSocketMessage, parse_server_frame, serialize};

mod support;
use support::*;

const SECRET: &str = "s3cr3t-jwt-key-that-must-not-leak";

fn jwt(user: &str, key: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn next_frame<S>(ws: &mut S) -> WebSocketMessage
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = msg {
            return parse_server_frame(&t).unwrap();
        }
    }
}

/// `wsc-gateway serve --bind 127.0.0.1:0 ARGS` at `RUST_LOG=debug`: the
/// process, its address, and its whole stderr once it exits.
async fn serve(
    args: &[&str],
) -> (
    tokio::process::Child,
    String,
    tokio::task::JoinHandle<String>,
) {
    let mut args_all = vec!["--bind", "127.0.0.1:0"];
    args_all.extend_from_slice(args);
    let mut child = spawn_serve(&args_all, &[("RUST_LOG", "debug")], Stdio::piped());
    let addr = listening_address(&first_line(&mut child).await.expect("it serves"));
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });
    (child, addr, log)
}

#[tokio::test]
async fn tokens_and_secrets_never_reach_the_log() {
    let (mut child, addr, log) = serve(&["--auth", "jwt", "--jwt-secret", SECRET]).await;

    let token = jwt("zoe", SECRET);
    let url = format!("ws://{addr}/ws?token={token}");
    let (mut ws, _) = connect_async(&url).await.unwrap();
    let hello = next_frame(&mut ws).await.payload;
    let resume_token = hello["resume_token"].as_str().unwrap().to_owned();
    let session = hello["session_id"].as_str().unwrap().to_owned();
    let start = WebSocketMessage::new(
        MessageType::StartAgent,
        json!({"tools": ["search"], "step_delay_ms": 20}),
    );
    ws.send(Message::text(serialize(&start))).await.unwrap();
    assert_eq!(next_frame(&mut ws).await.seq, Some(1));
    drop(ws);
    // Resume with both secrets in the query.
    let resume = format!("{url}&session_id={session}&resume_token={resume_token}&last_seq=1");
    let (mut ws, _) = connect_async(&resume).await.unwrap();
    let again: Value = next_frame(&mut ws).await.payload;
    assert_eq!(again["resumed"], true);
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_frame(&mut ws).await.message_type, MessageType::Error);
    ws.close(None).await.unwrap();
    // Refusals that carry credentials: a forged token, a malformed resume.
    let forged = jwt("zoe", "another-key");
    for bad in [
        format!("ws://{addr}/ws?token={forged}"),
        format!("{url}&session_id={session}&resume_token={resume_token}&last_seq=x"),
        format!(
            "{url}&session_id={session}&resume_token=1.{}",
            "ab".repeat(32)
        ),
    ] {
        let _ = connect_async(&bad).await;
    }
    // A clean stop flushes the log.
    let status = terminate(&mut child, Duration::from_secs(10)).await;
    assert!(status.success());
    let log = log.await.unwrap();

    // The log is real (so the test can fail) ...
    assert!(log.contains("connection ended"), "{log}");
    assert!(log.contains(&session), "sessions are logged by id");
    // ... and holds none of the secrets.
    let signature = resume_token.split('.').nth(1).unwrap();
    for (what, secret) in [
        ("the JWT", token.as_str()),
        ("the JWT's signature", token.rsplit('.').next().unwrap()),
        ("the forged JWT", forged.as_str()),
        ("the JWT secret", SECRET),
        ("the resume token", signature),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
}

/// `serve --log-format json`: one JSON object per line; every line of a
/// connection carries its span (`connection_id`, a log-safe `user_id`,
/// `session_id`), every line of a run also the run's span (`run_id`).
#[tokio::test]
async fn json_logs_carry_connection_and_run_spans() {
    let (mut child, addr, log) = serve(&["--log-format", "json"]).await;

    // A user id that tries to forge a log line is refused (400) ...
    match connect_async(format!("ws://{addr}/ws?user_id=eve%0A%7B%22level%22")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("a user id with a newline was not refused: {other:?}"),
    }
    // ... and an agent name that tries is neutralised in the run's span.
    let (mut ws, _) = connect_async(format!("ws://{addr}/ws?user_id=eve%7B%22level%22"))
        .await
        .unwrap();
    let session = next_frame(&mut ws).await.payload["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = WebSocketMessage::new(
        MessageType::StartAgent,
        json!({"tools": ["search"], "agent_name": "bot\n{\"level\":\"ERROR\"}"}),
    );
    ws.send(Message::text(serialize(&start))).await.unwrap();
    let first = next_frame(&mut ws).await;
    let run_id = first.payload["run_id"].as_str().unwrap().to_owned();
    while next_frame(&mut ws).await.message_type != MessageType::AgentCompleted {}
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = child.id().unwrap().to_string();
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let log = log.await.unwrap();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in\n{log}"))
    };
    let established = find("connection established");
    let conn = &established["span"];
    assert_eq!(conn["name"], "connection");
    assert_eq!(conn["session_id"], session.as_str());
    assert_eq!(conn["user_id"], "eve{\"level\"");
    assert!(conn["connection_id"].as_str().unwrap().starts_with("conn-"));
    let started = find("run started");
    assert_eq!(started["span"]["name"], "run");
    assert_eq!(started["span"]["run_id"], run_id.as_str());
    assert_eq!(
        started["span"]["agent"], "bot?{\"level\":\"ERROR\"}",
        "control characters neutralised"
    );
    let spans = started["spans"].as_array().unwrap();
    assert_eq!(
        spans[0]["name"], "connection",
        "the run is inside its connection"
    );
    assert_eq!(spans[0]["session_id"], session.as_str());
    assert!(lines.iter().any(|l| l["message"] == "connection ended"
        && l["span"]["connection_id"] == conn["connection_id"]));
}
