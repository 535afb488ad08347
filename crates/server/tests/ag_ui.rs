//! AG-UI out over HTTP, over real sockets: `POST /ag-ui` streams a run's
//! AG-UI events as SSE (numbered, the agent's own text), a repeated request
//! follows the same run, `GET /ag-ui/runs/{runId}/events` resumes after
//! `Last-Event-ID` and lets several readers follow one run, `cancel` ends
//! it for all of them with `RUN_FINISHED {outcome: cancelled}` after
//! closing what was open, and a backend breaking AG-UI's rules ends it
//! with `RUN_ERROR {code: upstream_protocol}`. Every stream a reader gets
//! passes AG-UI's rules.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wsc_event_monitor::AgUiRules;
use wsc_server::{AgentRequest, AgentRunner, EventSink, GatewayConfig};

mod support;
use support::*;
use support::{SseMessage as Message, sse_all as all, sse_take as take, sse_types as types};

/// `support::sse` on this gateway.
async fn sse(
    r: &Running,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, mpsc::UnboundedReceiver<Message>, String) {
    support::sse(r.addr, method, path, headers, body).await
}

/// Each reader's stream is a well-formed AG-UI run, numbered 1, 2, 3 …
/// from where it started.
fn assert_valid(messages: &[Message], first: u64) {
    let mut rules = AgUiRules::new();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.id, first + i as u64, "numbered in order: {messages:?}");
        if first == 1 {
            rules
                .check(&m.data)
                .unwrap_or_else(|v| panic!("{}: {v}", m.data));
        }
    }
    if first == 1 {
        assert!(
            rules.is_ended(),
            "ends with its terminal event: {messages:?}"
        );
    }
}

fn input(run_id: &str, text: &str) -> Value {
    json!({
        "threadId": "thread-1",
        "runId": run_id,
        "messages": [{"id": "m1", "role": "user", "content": text}],
        "tools": [], "context": [], "state": {}, "forwardedProps": {},
    })
}

const ANA: (&str, &str) = ("x-wsc-user-id", "ana");

#[tokio::test]
async fn a_run_streams_as_sse_resumes_after_last_event_id_and_a_repeat_starts_nothing() {
    let r = start(GatewayConfig::default()).await;
    let (status, rx, content_type) =
        sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-a", "hello"))).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let run = all(rx).await;
    assert_eq!(types(&run), SIMULATED_AG_UI_RUN);
    assert_valid(&run, 1);
    let first: Value = serde_json::from_str(&run[0].data).unwrap();
    assert_eq!(
        (first["runId"].as_str(), first["threadId"].as_str()),
        (Some("run-a"), Some("thread-1"))
    );

    // Resumed after event 3: exactly the rest, the same text.
    let (status, rx, _) = sse(
        &r,
        "GET",
        "/ag-ui/runs/run-a/events",
        &[ANA, ("last-event-id", "3")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rest = all(rx).await;
    assert_eq!(rest, run[3..]);
    // `?last_event_id=` does what the header does; past the end: 204.
    let (status, rx, _) = sse(
        &r,
        "GET",
        "/ag-ui/runs/run-a/events?last_event_id=3",
        &[ANA],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(all(rx).await, run[3..]);
    let end = run.len().to_string();
    let (status, _, _) = sse(
        &r,
        "GET",
        "/ag-ui/runs/run-a/events",
        &[ANA, ("last-event-id", &end)],
        None,
    )
    .await;
    assert_eq!(status, 204, "nothing after the end");
    // From the start without it; another user's or an unknown run: 404.
    let (_, rx, _) = sse(&r, "GET", "/ag-ui/runs/run-a/events", &[ANA], None).await;
    assert_eq!(all(rx).await, run);
    for (user, path) in [
        ("bob", "/ag-ui/runs/run-a/events"),
        ("ana", "/ag-ui/runs/nope/events"),
    ] {
        let (status, _, _) = sse(&r, "GET", path, &[("x-wsc-user-id", user)], None).await;
        assert_eq!(status, 404, "{user} {path}");
    }
    // The same runId again: the same run, not a second one.
    let (status, rx, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-a", "hello"))).await;
    assert_eq!(status, 200);
    assert_eq!(all(rx).await, run);
    assert_eq!(r.gateway.stats().runs, 1);
    // The event monitor validated it (mapped to the lifecycle).
    let health = r.gateway.event_monitor().check_health();
    assert_eq!((health.completed_runs, health.failed_runs), (1, 0));

    // Refused: no user, a body that is not a RunAgentInput, a bad
    // Last-Event-ID.
    let (status, _, _) = sse(&r, "POST", "/ag-ui", &[], Some(input("run-b", "x"))).await;
    assert_eq!(status, 401);
    let (status, _, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(json!({"runId": 7}))).await;
    assert_eq!(status, 400);
    let (status, _, _) = sse(
        &r,
        "GET",
        "/ag-ui/runs/run-a/events",
        &[ANA, ("last-event-id", "three")],
        None,
    )
    .await;
    assert_eq!(status, 400);
}

/// Emits the start of an answer, then waits until the run is cancelled.
struct Holding;

#[async_trait]
impl AgentRunner for Holding {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let input = request.ag_ui.unwrap();
        for event in [
            json!({"type": "RUN_STARTED", "threadId": input["threadId"], "runId": input["runId"]}),
            json!({"type": "TEXT_MESSAGE_START", "messageId": "answer", "role": "assistant"}),
            json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "answer", "delta": "Let me"}),
        ] {
            assert_eq!(sink.emit_ag_ui(&event.to_string()).await, Ok(true));
        }
        std::future::pending::<()>().await;
    }

    fn speaks_ag_ui(&self) -> bool {
        true
    }
}

/// A [`Holding`] run `run_id` as a reader got it once cancelled: its
/// message closed, then `RUN_FINISHED {outcome: cancelled}`.
fn assert_cancelled_holding(run: &[Message], run_id: &str) {
    assert_eq!(
        types(run),
        [
            "RUN_STARTED",
            "TEXT_MESSAGE_START",
            "TEXT_MESSAGE_CONTENT",
            "TEXT_MESSAGE_END",
            "RUN_FINISHED"
        ]
    );
    assert_valid(run, 1);
    let last: Value = serde_json::from_str(&run[4].data).unwrap();
    assert_eq!(last["outcome"], json!({"type": "cancelled"}));
    assert_eq!(last["runId"], run_id);
}

#[tokio::test]
async fn cancel_ends_the_run_for_every_reader_with_what_was_open_closed() {
    let r = start_with_runner(
        GatewayConfig::default(),
        Arc::new(Holding),
        Arc::new(wsc_core::SystemClock),
    )
    .await;
    let (_, mut first, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-c", "x"))).await;
    let started = take(&mut first, 3).await;
    // A second reader joins the run in flight.
    let (_, mut second, _) = sse(&r, "GET", "/ag-ui/runs/run-c/events", &[ANA], None).await;
    assert_eq!(take(&mut second, 3).await, started);
    // Only its user can cancel it.
    let (status, _, _) = sse(
        &r,
        "POST",
        "/ag-ui/runs/run-c/cancel",
        &[("x-wsc-user-id", "bob")],
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = sse(&r, "POST", "/ag-ui/runs/run-c/cancel", &[ANA], None).await;
    assert_eq!(status, 202);
    for reader in [first, second] {
        let mut run = started.clone();
        run.extend(all(reader).await);
        assert_cancelled_holding(&run, "run-c");
    }
    let (status, _, _) = sse(&r, "POST", "/ag-ui/runs/run-c/cancel", &[ANA], None).await;
    assert_eq!(status, 404, "it has ended");
}

/// Serves `app` as an agent backend on a free port; its URL.
async fn serve_backend(app: axum::Router) -> String {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", backend.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(backend, app).await.unwrap() });
    url
}

/// A backend whose second event breaks an AG-UI rule: the reader gets the
/// first, then `RUN_ERROR {code: upstream_protocol}`; never the offending
/// event.
#[tokio::test]
async fn a_backend_breaking_a_rule_ends_the_run_with_run_error() {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|body: String| async move {
            let input: Value = serde_json::from_str(&body).unwrap();
            let events = [
                json!({"type": "RUN_STARTED", "threadId": input["threadId"], "runId": input["runId"]}),
                json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "never-started", "delta": "x"}),
                json!({"type": "RUN_FINISHED", "threadId": input["threadId"], "runId": input["runId"]}),
            ];
            let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
            ([("content-type", "text/event-stream")], body)
        }),
    );
    let agent =
        wsc_server::HttpAgent::new(wsc_server::HttpAgentConfig::new(serve_backend(app).await));
    let r = start_with_runner(
        GatewayConfig::default(),
        Arc::new(agent),
        Arc::new(wsc_core::SystemClock),
    )
    .await;
    let (status, rx, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-e", "x"))).await;
    assert_eq!(status, 200);
    let run = all(rx).await;
    assert_eq!(types(&run), ["RUN_STARTED", "RUN_ERROR"]);
    assert_valid(&run, 1);
    let error: Value = serde_json::from_str(&run[1].data).unwrap();
    assert_eq!(error["code"], "upstream_protocol");
    assert!(
        error["message"].as_str().unwrap().contains("not_open"),
        "{error}"
    );
}

/// A run no reader follows is cancelled after the orphan timeout (its
/// readers get the cancelled end when they come back); a run someone
/// follows is not. On paused time: the keep-alive notices the reader that
/// left, the upkeep cancels.
#[tokio::test(start_paused = true)]
async fn a_run_no_one_reads_is_cancelled_after_the_orphan_timeout() {
    let config = GatewayConfig {
        agents: wsc_server::AgentsConfig {
            orphan_run_timeout: Duration::from_secs(60),
            ..Default::default()
        },
        ..Default::default()
    };
    let gateway = wsc_server::Gateway::builder(config)
        .runner(Arc::new(Holding))
        .clock(wsc_core::TokioClock::new().shared())
        .build()
        .await
        .unwrap();
    let r = start_gateway(gateway).await;
    let (_, mut kept, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-kept", "x"))).await;
    take(&mut kept, 3).await;
    let (_, mut left, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-left", "x"))).await;
    take(&mut left, 3).await;
    drop(left);
    tokio::time::sleep(Duration::from_secs(150)).await;

    assert_eq!(
        r.gateway.runs_in_flight("ana"),
        1,
        "only the followed run goes on"
    );
    let (_, rx, _) = sse(&r, "GET", "/ag-ui/runs/run-left/events", &[ANA], None).await;
    assert_cancelled_holding(&all(rx).await, "run-left");
    // The followed run's reader is still open, and got nothing but
    // keep-alives meanwhile.
    assert!(kept.try_recv().is_err());
}

// ---- The WebSocket dialect (`/ws?protocol=ag-ui`) ----

/// The next text frame as JSON, and its text.
async fn next_json(ws: &mut Ws) -> (Value, String) {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("no socket error")
        {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                return (serde_json::from_str(&t).unwrap(), t.to_string());
            }
            tokio_tungstenite::tungstenite::Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

async fn send_json(ws: &mut Ws, frame: Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        frame.to_string(),
    ))
    .await
    .unwrap();
}

/// One AG-UI dialect event frame: its seq, run id, and the event's text
/// as it stands in the frame.
#[derive(Clone, Debug, PartialEq)]
struct EventFrame {
    seq: u64,
    run_id: String,
    event: String,
}

/// Reads event frames (checking each is exactly the envelope around the
/// event, seqs consecutive from `*last_seq`) until `n` or the run's
/// terminal event.
async fn read_events(ws: &mut Ws, last_seq: &mut u64, n: usize) -> Vec<EventFrame> {
    let mut out = Vec::new();
    while out.len() < n {
        let (value, text) = next_json(ws).await;
        let Some(seq) = value["seq"].as_u64() else {
            panic!("not an event frame: {text}")
        };
        assert_eq!(seq, *last_seq + 1, "no gap, no duplicate: {text}");
        *last_seq = seq;
        let run_id = value["run_id"].as_str().unwrap().to_owned();
        // The envelope and nothing more: the event's own text in it.
        let prefix = format!("{{\"run_id\":{},\"event\":", json!(run_id));
        let suffix = format!(",\"seq\":{seq}}}");
        let event = text
            .strip_prefix(&prefix)
            .and_then(|t| t.strip_suffix(&suffix))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned();
        let end = matches!(
            value["event"]["type"].as_str(),
            Some("RUN_FINISHED" | "RUN_ERROR")
        );
        out.push(EventFrame { seq, run_id, event });
        if end {
            break;
        }
    }
    out
}

fn event_types(frames: &[EventFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(&f.event).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn run_agent(run_id: &str) -> Value {
    json!({"type": "run_agent", "message_id": format!("start-{run_id}"), "payload": {"input": input(run_id, "hello")}})
}

/// The same run read over SSE, as event texts.
async fn sse_events(r: &Running, run_id: &str) -> Vec<String> {
    let (status, rx, _) = sse(
        r,
        "GET",
        &format!("/ag-ui/runs/{run_id}/events"),
        &[ANA],
        None,
    )
    .await;
    assert_eq!(status, 200);
    all(rx).await.into_iter().map(|m| m.data).collect()
}

#[tokio::test]
async fn the_websocket_dialect_streams_runs_verbatim_joins_and_refuses_clearly() {
    let r = start(GatewayConfig::default()).await;
    let (mut ws, hello) = connect(&r, "user_id=ana&protocol=ag-ui").await;
    assert!(hello["session_id"].is_string());
    send_json(&mut ws, run_agent("run-w")).await;
    let mut seq = 0;
    let run = read_events(&mut ws, &mut seq, usize::MAX).await;
    assert_eq!(
        event_types(&run),
        types(
            &sse_events(&r, "run-w")
                .await
                .into_iter()
                .map(|data| Message {
                    id: 0,
                    event: None,
                    data
                })
                .collect::<Vec<_>>()
        )
    );
    // The events are the run's own text, byte for byte, as SSE gives them.
    let texts: Vec<String> = run.iter().map(|f| f.event.clone()).collect();
    assert_eq!(texts, sse_events(&r, "run-w").await);
    assert!(run.iter().all(|f| f.run_id == "run-w"));
    let mut rules = AgUiRules::new();
    for f in &run {
        rules.check(&f.event).unwrap();
    }
    assert!(rules.is_ended());

    // A repeated run_agent starts nothing and adds no second copy.
    send_json(&mut ws, run_agent("run-w")).await;
    send_json(&mut ws, json!({"type": "ping", "payload": {"n": 1}})).await;
    let (pong, _) = next_json(&mut ws).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(r.gateway.stats().runs, 1);

    // Another tab: join after event 3, exactly the rest.
    let (mut tab, _) = connect(&r, "user_id=ana&protocol=ag-ui").await;
    send_json(
        &mut tab,
        json!({"type": "join_run", "payload": {"run_id": "run-w", "after": 3}}),
    )
    .await;
    let mut tab_seq = 0;
    let rest = read_events(&mut tab, &mut tab_seq, usize::MAX).await;
    let rest: Vec<String> = rest.into_iter().map(|f| f.event).collect();
    assert_eq!(rest, texts[3..]);

    // Refused, each with its code: another user's run, a start of the
    // wsc protocol, a stop of no run, a malformed join.
    let (mut bob, _) = connect(&r, "user_id=bob&protocol=ag-ui").await;
    for (frame, code) in [
        (
            json!({"type": "join_run", "message_id": "j", "payload": {"run_id": "run-w"}}),
            "not_found",
        ),
        (
            json!({"type": "start_agent", "payload": {}}),
            "invalid_message",
        ),
        (
            json!({"type": "stop_agent", "payload": {"run_id": "run-w"}}),
            "not_found",
        ),
        (
            json!({"type": "join_run", "payload": {"after": 1}}),
            "invalid_message",
        ),
    ] {
        send_json(&mut bob, frame.clone()).await;
        let (error, _) = next_json(&mut bob).await;
        assert_eq!(
            (error["type"].as_str(), error["payload"]["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}: {error}"
        );
    }
    // An unknown protocol is refused at the handshake.
    assert_eq!(handshake(&r, "user_id=ana&protocol=sse").await.0, 400);

    // The wsc protocol is unchanged without `protocol`: run_agent is the
    // alias of start_agent it always was, its frames the legacy ones.
    let (mut legacy, _) = connect(&r, "user_id=ana").await;
    send(&mut legacy, &start_agent(&["search"], 0)).await;
    let mut legacy_seq = 0;
    let (_, frames) = read_run(&mut legacy, &mut legacy_seq).await;
    assert_eq!(frames[0].message_type, wsc_core::MessageType::AgentStarted);
    assert_eq!(
        frames.last().unwrap().message_type,
        wsc_core::MessageType::AgentCompleted
    );
}

/// Emits RUN_STARTED and a message's start, then one content event per
/// permit of its gate, then the end of the message and RUN_FINISHED.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    deltas: usize,
}

#[async_trait]
impl AgentRunner for Gated {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let input = request.ag_ui.unwrap();
        let emit = |event: Value| {
            let sink = sink.clone();
            async move { sink.emit_ag_ui(&event.to_string()).await == Ok(true) }
        };
        emit(
            json!({"type": "RUN_STARTED", "threadId": input["threadId"], "runId": input["runId"]}),
        )
        .await;
        emit(json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"})).await;
        for i in 0..self.deltas {
            self.gate.acquire().await.unwrap().forget();
            if !emit(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": format!("d{i} ")})).await {
                return;
            }
        }
        emit(json!({"type": "TEXT_MESSAGE_END", "messageId": "m"})).await;
        emit(
            json!({"type": "RUN_FINISHED", "threadId": input["threadId"], "runId": input["runId"]}),
        )
        .await;
    }

    fn speaks_ag_ui(&self) -> bool {
        true
    }
}

/// A reader cut mid-run resumes its session (`last_seq`) and gets exactly
/// the rest; a second session joined in flight gets everything; a stop
/// from that other session ends the run for both with the cancelled
/// RUN_FINISHED.
#[tokio::test]
async fn a_cut_reader_resumes_exactly_and_a_stop_from_another_session_ends_the_run_for_all() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let r = start_with_runner(
        GatewayConfig::default(),
        Arc::new(Gated {
            gate: gate.clone(),
            deltas: 10,
        }),
        Arc::new(wsc_core::SystemClock),
    )
    .await;
    let (mut ws, hello) = connect(&r, "user_id=ana&protocol=ag-ui").await;
    send_json(&mut ws, run_agent("run-r")).await;
    gate.add_permits(3);
    let mut seq = 0;
    let mut got = read_events(&mut ws, &mut seq, 5).await;
    drop(ws);
    gate.add_permits(7);
    // The run goes on while no one reads; the session keeps its events.
    let query = format!(
        "user_id=ana&protocol=ag-ui&session_id={}&resume_token={}&last_seq={seq}",
        hello["session_id"].as_str().unwrap(),
        hello["resume_token"].as_str().unwrap()
    );
    let (mut ws, resumed) = connect(&r, &query).await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    got.extend(read_events(&mut ws, &mut seq, usize::MAX).await);
    let texts: Vec<String> = got.iter().map(|f| f.event.clone()).collect();
    assert_eq!(
        texts,
        sse_events(&r, "run-r").await,
        "exactly the run, once"
    );
    assert_eq!(event_types(&got).len(), 2 + 10 + 2);

    // A second run: one session runs it, another joins and stops it.
    send_json(&mut ws, run_agent("run-s")).await;
    gate.add_permits(1);
    let first = read_events(&mut ws, &mut seq, 3).await;
    let (mut other, _) = connect(&r, "user_id=ana&protocol=ag-ui").await;
    send_json(
        &mut other,
        json!({"type": "join_run", "payload": {"run_id": "run-s"}}),
    )
    .await;
    let mut other_seq = 0;
    let joined = read_events(&mut other, &mut other_seq, 3).await;
    assert_eq!(
        joined.iter().map(|f| &f.event).collect::<Vec<_>>(),
        first.iter().map(|f| &f.event).collect::<Vec<_>>()
    );
    send_json(
        &mut other,
        json!({"type": "stop_agent", "payload": {"run_id": "run-s"}}),
    )
    .await;
    for (mut reader, mut seq, mut run) in [(ws, seq, first), (other, other_seq, joined)] {
        run.extend(read_events(&mut reader, &mut seq, usize::MAX).await);
        assert_eq!(
            event_types(&run),
            [
                "RUN_STARTED",
                "TEXT_MESSAGE_START",
                "TEXT_MESSAGE_CONTENT",
                "TEXT_MESSAGE_END",
                "RUN_FINISHED"
            ]
        );
        let last: Value = serde_json::from_str(&run.last().unwrap().event).unwrap();
        assert_eq!(last["outcome"], json!({"type": "cancelled"}));
    }
    assert_eq!(r.gateway.runs_in_flight("ana"), 0);
}

/// A backend that streams text deltas forever: the run ends at
/// `--max-run-events` with `RUN_ERROR {code: run_too_large}`, still a
/// well-formed AG-UI run, and the gateway hangs up on the backend.
#[tokio::test]
async fn an_endless_backend_is_ended_at_the_run_cap() {
    use futures_util::StreamExt;
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|body: String| async move {
            let input: Value = serde_json::from_str(&body).unwrap();
            let start = [
                json!({"type": "RUN_STARTED", "threadId": input["threadId"], "runId": input["runId"]}),
                json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
            ];
            let delta = json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "more "});
            let events = futures_util::stream::iter(start)
                .chain(futures_util::stream::repeat(delta))
                .map(|e| Ok::<_, std::convert::Infallible>(format!("data: {e}\n\n")));
            (
                [("content-type", "text/event-stream")],
                axum::body::Body::from_stream(events),
            )
        }),
    );
    let agent =
        wsc_server::HttpAgent::new(wsc_server::HttpAgentConfig::new(serve_backend(app).await));
    let config = GatewayConfig {
        agents: wsc_server::AgentsConfig {
            max_run_events: 40,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = start_with_runner(config, Arc::new(agent), Arc::new(wsc_core::SystemClock)).await;
    let (status, rx, _) = sse(&r, "POST", "/ag-ui", &[ANA], Some(input("run-big", "x"))).await;
    assert_eq!(status, 200);
    let run = tokio::time::timeout(Duration::from_secs(20), all(rx))
        .await
        .expect("the run ends at its cap");
    assert_valid(&run, 1);
    assert_eq!(run.len(), 41, "40 events, then the error");
    let error: Value = serde_json::from_str(&run[40].data).unwrap();
    assert_eq!(error["type"], "RUN_ERROR");
    assert_eq!(error["code"], "run_too_large");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("--max-run-events"),
        "{error}"
    );
}
