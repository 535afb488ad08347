//! The `wsc-scale-client` binary against a stand-in gateway on a real
//! socket: it opens its connections from the address it is given, answers
//! `status` with what it holds, counts a lost connection and its return,
//! tells a late event of an earlier run from the next run's, and ends on
//! `quit`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{ConnectionEstablished, Frame, MessageType, WebSocketMessage};

/// The greeting of connection `n`: a fresh session `s{n}`.
fn hello(n: u64) -> Message {
    let hello = ConnectionEstablished {
        session_id: format!("s{n}"),
        connection_id: format!("c{n}"),
        resume_token: "t".into(),
        epoch: 1,
        resumed: false,
        replayed: 0,
        heartbeat_interval_ms: 15_000,
        reason: None,
    };
    Message::text(serde_json::to_string(&hello.to_message()).unwrap())
}

/// Accepts WebSockets, greets each with `connection_established` and
/// records the peer's address; the first connection from `127.0.0.3` is
/// dropped after its greeting (once).
async fn stand_in(listener: TcpListener, peers: Arc<std::sync::Mutex<Vec<String>>>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut n = 0u64;
    loop {
        let (stream, peer) = listener.accept().await.unwrap();
        n += 1;
        peers.lock().unwrap().push(peer.ip().to_string());
        let dropped = dropped.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            if ws.send(hello(n)).await.is_err() {
                return;
            }
            if dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                return; // the connection drops
            }
            while let Some(Ok(_)) = ws.next().await {}
        });
    }
}

/// The `wsc-scale-client` binary against `ws://ADDR/ws` with `args`: the
/// process, its stdin and its stdout.
fn scale_client(
    addr: std::net::SocketAddr,
    args: &[&str],
) -> (
    std::process::Child,
    std::process::ChildStdin,
    BufReader<std::process::ChildStdout>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsc-scale-client"))
        .args(["--url", &format!("ws://{addr}/ws")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdin, stdout)
}

fn ask(stdin: &mut impl Write, stdout: &mut impl BufRead, command: &str) -> Value {
    writeln!(stdin, "{command}").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[test]
fn the_scale_client_holds_its_connections_from_its_address_and_reports_them() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    rt.spawn(stand_in(listener, peers.clone()));
    let (mut child, mut stdin, mut stdout) =
        scale_client(addr, &["--connections", "5", "--from", "127.0.0.3"]);
    let mut status = Value::Null;
    for _ in 0..200 {
        status = ask(&mut stdin, &mut stdout, "status");
        if status["open"] == 5 && status["reconnects"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status["open"], 5, "{status}");
    assert_eq!(status["ever_connected"], 5, "{status}");
    assert_eq!(status["disconnects"], 1, "the dropped one: {status}");
    assert_eq!(status["reconnects"], 1, "and its return: {status}");
    assert!(
        peers.lock().unwrap().iter().all(|ip| ip == "127.0.0.3"),
        "from the address it was given: {:?}",
        peers.lock().unwrap()
    );
    assert_eq!(ask(&mut stdin, &mut stdout, "reset")["ok"], true);
    writeln!(stdin, "quit").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Greets one connection, then answers each `start_agent` with a whole
/// run on the start's thread — after a late event of the run before
/// (its thread and run id) for every start but the first. Answers
/// `runs` starts; with `refuse_first`, the first start is refused with an
/// error frame naming it instead.
async fn late_runner(listener: TcpListener, runs: u64, refuse_first: bool) {
    let (stream, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
    ws.send(hello(0)).await.unwrap();
    let mut seq = 0u64;
    let mut earlier: Option<(String, String)> = None;
    let mut answered = 0;
    let mut refuse = refuse_first;
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let start = wsc_core::parse_client_frame(&text).unwrap();
        if start.message_type != MessageType::StartAgent || answered == runs {
            continue;
        }
        if std::mem::take(&mut refuse) {
            let refusal = wsc_core::ErrorFrame::new(
                wsc_core::ErrorCode::Internal,
                "the session store did not answer",
            )
            .with_ref_message_id(start.message_id.clone().unwrap());
            ws.send(Message::text(wsc_core::serialize(&refusal.to_message())))
                .await
                .unwrap();
            continue;
        }
        answered += 1;
        let thread = start.payload["thread_id"].as_str().unwrap().to_owned();
        let run = format!("run-{answered}");
        let mut event = |kind: MessageType, thread: &str, run: &str| {
            seq += 1;
            let mut msg = WebSocketMessage::new(kind, json!({"run_id": run, "agent_name": "demo"}))
                .with_message_id(format!("m{seq}"))
                .with_seq(seq);
            msg.thread_id = Some(thread.to_owned());
            Message::text(wsc_core::serialize(&msg))
        };
        let mut frames = Vec::new();
        if let Some((thread, run)) = &earlier {
            frames.push(event(MessageType::AgentThinking, thread, run));
        }
        for kind in [
            MessageType::AgentStarted,
            MessageType::AgentThinking,
            MessageType::AgentCompleted,
        ] {
            frames.push(event(kind, &thread, &run));
        }
        for frame in frames {
            ws.send(frame).await.unwrap();
        }
        earlier = Some((thread, run));
    }
}

/// One `wsc-scale-client` connection against [`late_runner`] (`runs`,
/// `refuse_first`), running runs back to back; its status once `done`
/// holds (or after 10 s).
fn runs_against_late_runner(runs: u64, refuse_first: bool, done: impl Fn(&Value) -> bool) -> Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(late_runner(listener, runs, refuse_first));
    let (mut child, mut stdin, mut stdout) = scale_client(addr, &["--connections", "1"]);
    for _ in 0..200 {
        if ask(&mut stdin, &mut stdout, "status")["open"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask(&mut stdin, &mut stdout, "load 1 0 0")["ok"], true);
    let mut status = Value::Null;
    for _ in 0..200 {
        status = ask(&mut stdin, &mut stdout, "status");
        if done(&status) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    writeln!(stdin, "quit").unwrap();
    assert!(child.wait().unwrap().success());
    status
}

#[test]
fn a_late_event_of_an_earlier_run_is_not_counted_into_the_next() {
    let status = runs_against_late_runner(3, false, |s| {
        s["runs_completed"] == 3 && s["stray_events"] == 2
    });
    assert_eq!(status["runs_completed"], 3, "each run whole: {status}");
    assert_eq!(status["runs_incomplete"], 0, "{status}");
    assert_eq!(status["stray_events"], 2, "the late events: {status}");
}

#[test]
fn a_refused_start_counts_as_told_and_the_next_run_follows() {
    let status = runs_against_late_runner(2, true, |s| s["runs_completed"] == 2);
    assert_eq!(status["runs_told"], 1, "the refused start: {status}");
    assert_eq!(status["runs_completed"], 2, "the runs after it: {status}");
    assert_eq!(status["runs_timed_out"], 0, "{status}");
}
