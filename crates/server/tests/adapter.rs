//! The axum adapter ([`AgentStreams`]) in an application's own handler,
//! over real sockets: the handler authenticates, reads the client's
//! requests and runs its own agent; the adapter numbers, buffers,
//! validates, delivers and replays.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_server::{
    AgentRequest, AgentRunner, AgentStreams, EventSink, Gateway, GatewayConfig, ResumeQuery,
    RunStart,
};

use support::{Ws, next_frame, send};

/// The application's own agent: it thinks, looks the input up with one
/// tool, then answers one `agent_response_chunk` per word of the input
/// (the whole lifecycle the event monitor expects).
struct WordAgent;

#[async_trait]
impl AgentRunner for WordAgent {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        sink.emit(MessageType::AgentStarted, json!({})).await;
        sink.emit(MessageType::AgentThinking, json!({"thought": "splitting"}))
            .await;
        let call = json!({"tool_name": "split", "tool_call_id": "c1"});
        sink.emit(MessageType::ToolExecuting, call.clone()).await;
        sink.emit(MessageType::ToolCompleted, call).await;
        for word in request.input.split_whitespace() {
            sink.emit(MessageType::AgentResponseChunk, json!({"content": word}))
                .await;
        }
        sink.emit(MessageType::AgentCompleted, json!({"result": "done"}))
            .await;
    }
}

/// A run that waits until it is stopped.
struct Waiting;

#[async_trait]
impl AgentRunner for Waiting {
    async fn run(&self, _: AgentRequest, sink: EventSink) {
        sink.emit(MessageType::AgentStarted, json!({})).await;
        std::future::pending::<()>().await;
    }
}

/// What the handler saw, for the test to check.
#[derive(Debug)]
enum Seen {
    Opened { session: String, resumed: bool },
    Request(MessageType),
    Start(RunStart),
}

#[derive(Clone)]
struct App {
    streams: AgentStreams,
    seen: mpsc::UnboundedSender<Seen>,
}

/// The application's endpoint: its own authentication (a header), the
/// adapter for everything else.
async fn agent_endpoint(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ResumeQuery(resume): ResumeQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(user) = headers.get("x-user").and_then(|v| v.to_str().ok()) else {
        return (axum::http::StatusCode::UNAUTHORIZED, "who are you?").into_response();
    };
    let seen = app.seen.clone();
    app.streams
        .upgrade(ws, user, peer.ip(), resume, move |mut stream| {
            let _ = seen.send(Seen::Opened {
                session: stream.session_id().to_owned(),
                resumed: stream.resumed(),
            });
            tokio::spawn(async move {
                while let Some(request) = stream.next_request().await {
                    let _ = seen.send(Seen::Request(request.message_type));
                    let runner: Arc<dyn AgentRunner> =
                        if request.payload["agent_name"] == json!("waiting") {
                            Arc::new(Waiting)
                        } else {
                            Arc::new(WordAgent)
                        };
                    let started = stream.start_run(&request, runner).await;
                    let _ = seen.send(Seen::Start(started));
                }
            });
        })
        .await
}

struct Served {
    addr: SocketAddr,
    gateway: Gateway,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn serve(config: GatewayConfig) -> Served {
    let gateway = Gateway::new(config);
    let (tx, seen) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/agent", axum::routing::get(agent_endpoint))
        .with_state(App {
            streams: gateway.streams(),
            seen: tx,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Served {
        addr,
        gateway,
        seen,
    }
}

async fn open(s: &Served, user: &str, query: &str) -> (Ws, WebSocketMessage) {
    let mut request = format!("ws://{}/agent?{query}", s.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-user", user.parse().unwrap());
    let (mut ws, _) = connect_async(request).await.unwrap();
    let hello = next_frame(&mut ws).await.expect("connection_established");
    assert_eq!(hello.message_type, MessageType::ConnectionEstablished);
    (ws, hello)
}

async fn seen(s: &mut Served) -> Seen {
    tokio::time::timeout(Duration::from_secs(10), s.seen.recv())
        .await
        .expect("the handler reports in time")
        .expect("the handler is alive")
}

fn start(input: &str, message_id: &str) -> WebSocketMessage {
    WebSocketMessage::new(MessageType::StartAgent, json!({"input": input}))
        .with_message_id(message_id)
}

/// A run the handler started, cut after three frames, resumed: the rest is
/// replayed exactly once, in order; a repeated start is recognised; the
/// event monitor validated the run.
#[tokio::test]
async fn resume_and_replay_through_an_application_handler() {
    let mut s = serve(GatewayConfig::default()).await;
    let (mut ws, hello) = open(&s, "alice", "").await;
    let session = hello.payload["session_id"].as_str().unwrap().to_owned();
    let token = hello.payload["resume_token"].as_str().unwrap().to_owned();
    assert!(
        matches!(seen(&mut s).await, Seen::Opened { resumed: false, session: ref id } if *id == session)
    );

    let words = ["one", "two", "three", "four", "five", "six"];
    send(&mut ws, &start(&words.join(" "), "m-1")).await;
    assert!(matches!(
        seen(&mut s).await,
        Seen::Request(MessageType::StartAgent)
    ));
    let Seen::Start(RunStart::Started { run_id }) = seen(&mut s).await else {
        panic!("the run did not start");
    };
    // Three frames, then the connection is gone.
    let mut frames = Vec::new();
    while frames.len() < 3 {
        let f = next_frame(&mut ws).await.expect("a run frame");
        if f.seq.is_some() {
            frames.push(f);
        }
    }
    drop(ws);
    // The run goes on without a connection (its events are buffered).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.gateway.runs_in_flight("alice") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the run ended");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = frames.last().unwrap().seq.unwrap();
    let query = format!("session_id={session}&resume_token={token}&last_seq={last}");
    let (mut ws, hello) = open(&s, "alice", &query).await;
    assert_eq!(hello.payload["resumed"], json!(true), "{hello:?}");
    let replayed = hello.payload["replayed"].as_u64().unwrap();
    assert!(
        matches!(seen(&mut s).await, Seen::Opened { resumed: true, session: ref id } if *id == session)
    );
    loop {
        let f = next_frame(&mut ws).await.expect("the rest of the run");
        let Some(seq) = f.seq else { continue };
        assert_eq!(
            seq,
            frames.last().unwrap().seq.unwrap() + 1,
            "no gap, no duplicate"
        );
        let end = f.message_type == MessageType::AgentCompleted;
        frames.push(f);
        if end {
            break;
        }
    }
    assert_eq!(frames.len() as u64, last + replayed, "replayed the rest");
    let said: Vec<&str> = frames
        .iter()
        .filter(|f| f.message_type == MessageType::AgentResponseChunk)
        .map(|f| f.payload["content"].as_str().unwrap())
        .collect();
    assert_eq!(said, words, "every word once, in order");
    assert!(frames.iter().all(|f| f.payload["run_id"] == json!(run_id)));
    let status = s
        .gateway
        .event_monitor()
        .validate_session_completion(&run_id);
    assert!(
        matches!(status, Ok(true)),
        "the monitor validated the run: {status:?}"
    );

    // The client could not know its start arrived: it sends it again.
    send(&mut ws, &start(&words.join(" "), "m-1")).await;
    assert!(matches!(
        seen(&mut s).await,
        Seen::Request(MessageType::StartAgent)
    ));
    assert!(
        matches!(seen(&mut s).await, Seen::Start(RunStart::Repeated)),
        "a repeat runs once"
    );
    support::ping_pong(&mut ws).await;
}

/// Chat reaches the handler after its ack; `stop_agent` (served by the
/// adapter) cancels the handler's run; the runs-in-flight cap refuses with
/// an `error` frame the client sees.
#[tokio::test]
async fn chat_stop_and_the_run_cap_through_an_application_handler() {
    let config = GatewayConfig {
        agents: wsc_server::AgentsConfig {
            max_runs_per_user: 1,
            ..Default::default()
        },
        ..GatewayConfig::default()
    };
    let mut s = serve(config).await;
    let (mut ws, _) = open(&s, "bob", "").await;
    assert!(matches!(seen(&mut s).await, Seen::Opened { .. }));

    let chat = WebSocketMessage::new(MessageType::UserMessage, json!({"content": "hi there"}))
        .with_message_id("c-1");
    send(&mut ws, &chat).await;
    let ack = next_frame(&mut ws).await.unwrap();
    assert_eq!(ack.message_type, MessageType::Ack, "{ack:?}");
    assert!(matches!(
        seen(&mut s).await,
        Seen::Request(MessageType::UserMessage)
    ));
    assert!(matches!(
        seen(&mut s).await,
        Seen::Start(RunStart::Started { .. })
    ));
    let mut said = Vec::new();
    loop {
        let f = next_frame(&mut ws).await.unwrap();
        if f.message_type == MessageType::AgentResponseChunk {
            said.push(f.payload["content"].as_str().unwrap().to_owned());
        }
        if f.message_type == MessageType::AgentCompleted {
            break;
        }
    }
    assert_eq!(said, ["hi", "there"]);

    // A run that waits until stopped, so one is in flight.
    let waiting = WebSocketMessage::new(
        MessageType::StartAgent,
        json!({"input": "", "agent_name": "waiting"}),
    )
    .with_message_id("s-1");
    send(&mut ws, &waiting).await;
    let _ = seen(&mut s).await;
    let Seen::Start(RunStart::Started { run_id }) = seen(&mut s).await else {
        panic!("the waiting run did not start");
    };
    let started = next_frame(&mut ws).await.unwrap();
    assert_eq!(started.message_type, MessageType::AgentStarted);

    send(&mut ws, &start("too many", "s-2")).await;
    let _ = seen(&mut s).await;
    assert!(matches!(seen(&mut s).await, Seen::Start(RunStart::Refused)));
    let refusal = next_frame(&mut ws).await.unwrap();
    assert_eq!(refusal.message_type, MessageType::Error, "{refusal:?}");
    assert_eq!(refusal.payload["code"], json!("rate_limited"));
    assert_eq!(refusal.payload["ref_message_id"], json!("s-2"));

    let stop = WebSocketMessage::new(MessageType::StopAgent, json!({"run_id": run_id}));
    send(&mut ws, &stop).await;
    let ended = next_frame(&mut ws).await.unwrap();
    assert_eq!(ended.message_type, MessageType::AgentError, "{ended:?}");
    assert_eq!(ended.payload["code"], json!("cancelled"));
    assert_eq!(ended.payload["run_id"], json!(run_id));
}

/// The adapter refuses before the upgrade: a malformed resume (the
/// extractor) and a user id that is not printable, each with the gateway's
/// JSON body.
#[tokio::test]
async fn refusals_before_the_upgrade() {
    let s = serve(GatewayConfig::default()).await;
    let attempt = |user: &'static str, query: &'static str| {
        let addr = s.addr;
        async move {
            let mut request = format!("ws://{addr}/agent?{query}")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("x-user", user.parse().unwrap());
            match connect_async(request).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let body =
                        String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
                    (response.status().as_u16(), body)
                }
                other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
            }
        }
    };
    let (status, body) = attempt("alice", "session_id=s1&last_seq=3").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("invalid_query") && body.contains("resume_token"),
        "{body}"
    );
    let (status, body) = attempt("al\tice", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_query"), "{body}");
}

/// `Gateway::router()` merged into an app served without peer addresses:
/// `/ws` says how to fix it (not axum's generic missing-extension 500),
/// the other routes work.
#[tokio::test]
async fn a_router_served_without_peer_addresses_says_how_to_fix_it() {
    let gateway = Gateway::new(GatewayConfig::default());
    let app = axum::Router::new()
        .route("/hello", axum::routing::get(|| async { "hello" }))
        .merge(gateway.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    match connect_async(format!("ws://{addr}/ws?user_id=alice")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 500);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("misconfigured"), "{body}");
            assert!(
                body.contains("into_make_service_with_connect_info"),
                "{body}"
            );
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(gateway.upkeep_running(), "merged, the upkeep runs");
}
