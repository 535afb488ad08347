//! Upstream HTTP agents (`HttpAgent`) over real sockets: a scripted backend
//! on a free port streams AG-UI (SSE) or wsc frames (NDJSON), or fails in
//! each way `docs/agents.md` lists; the client sees the mapped run and exactly
//! one terminal frame with the right code. Paused tokio time: the idle
//! timeout passes without real waiting.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use wsc_core::MessageType;
use wsc_server::{AgentProtocol, GatewayConfig, HttpAgent, HttpAgentConfig};

mod support;
use support::*;

const TOKEN: &str = "upstream-token";

fn sse(events: &[Value]) -> String {
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

/// A full AG-UI run: reasoning, two interleaved tool calls, text.
fn ag_ui_run(run_id: &str) -> Vec<Value> {
    vec![
        json!({"type": "RUN_STARTED", "threadId": "t", "runId": run_id}),
        json!({"type": "STEP_STARTED", "stepName": "plan"}),
        json!({"type": "TOOL_CALL_START", "toolCallId": "a", "toolCallName": "search"}),
        json!({"type": "TOOL_CALL_START", "toolCallId": "b", "toolCallName": "fetch"}),
        json!({"type": "TOOL_CALL_ARGS", "toolCallId": "a", "delta": "{\"q\":\"x\"}"}),
        json!({"type": "TOOL_CALL_END", "toolCallId": "a"}),
        json!({"type": "TOOL_CALL_END", "toolCallId": "b"}),
        json!({"type": "TOOL_CALL_RESULT", "messageId": "r1", "toolCallId": "b", "content": "page"}),
        json!({"type": "TOOL_CALL_RESULT", "messageId": "r2", "toolCallId": "a", "content": "hits"}),
        json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
        json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "Done"}),
        json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
        json!({"type": "STEP_FINISHED", "stepName": "plan"}),
        json!({"type": "RUN_FINISHED", "threadId": "t", "runId": run_id}),
    ]
}

async fn ag_ui(headers: HeaderMap, body: String) -> Response {
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let input: Value = serde_json::from_str(&body).unwrap();
    // What `docs/agents.md` says the backend gets.
    assert_eq!(input["messages"][0]["role"], "user");
    assert_eq!(input["messages"][0]["content"], "find it");
    // `start_agent` names its agent (the helper: triage); chat gets the
    // default.
    let agent = &input["forwardedProps"]["agent_name"];
    assert!(agent == "triage" || agent == "assistant", "{agent}");
    assert_eq!(
        headers.get("x-wsc-user-id").unwrap(),
        input["forwardedProps"]["user_id"].as_str().unwrap()
    );
    let run_id = input["runId"].as_str().unwrap();
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        sse(&ag_ui_run(run_id)),
    )
        .into_response()
}

async fn wsc(body: String) -> Response {
    let input: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(input["input"], "find it");
    let lines: String = [
        json!({"type": "agent_start", "payload": {}}),
        json!({"type": "agent_thinking", "payload": {"thought": "hm"}}),
        json!({"type": "tool_executing", "payload": {"tool_name": "s", "tool_call_id": "1"}}),
        json!({"type": "tool_completed", "payload": {"tool_name": "s", "tool_call_id": "1"}}),
        json!({"type": "agent_completed", "payload": {"result": "ok"}}),
    ]
    .iter()
    .map(|f| format!("{f}\n"))
    .collect();
    ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response()
}

/// A run that breaks AG-UI's rule `rule` with its last event.
fn breaking(rule: &str) -> Vec<Value> {
    let started = json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"});
    let text = |t: &str| json!({"type": t, "messageId": "m", "delta": "x"});
    let mut run = vec![started.clone()];
    match rule {
        "malformed" => run.push(json!(["not", "an", "event"])),
        "missing_field" => run.push(json!({"type": "TOOL_CALL_START", "toolCallName": "f"})),
        "first_event" => run = vec![text("TEXT_MESSAGE_CONTENT")],
        "run_started_twice" => run.push(started),
        "not_open" => run.push(text("TEXT_MESSAGE_CONTENT")),
        "reused" => {
            run.push(json!({"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "f"}));
            run.push(json!({"type": "TOOL_CALL_START", "toolCallId": "c", "toolCallName": "f"}));
        }
        "finished_with_open" => {
            run.push(json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}));
            run.push(json!({"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}));
        }
        "too_many_open" => {
            for i in 0..=wsc_event_monitor::MAX_OPEN_PER_KIND {
                run.push(json!({"type": "STEP_STARTED", "stepName": format!("s{i}")}));
            }
        }
        other => panic!("no broken run for {other}"),
    }
    run
}

/// The tags of `/slow/{tag}` requests whose response stream was dropped:
/// the gateway closed the request.
static SLOW_CLOSED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Whether the gateway closed the `/slow/{tag}` request, waiting a little
/// (paused time) for the close to arrive.
async fn slow_closed(tag: &str) -> bool {
    for _ in 0..200 {
        if SLOW_CLOSED.lock().unwrap().iter().any(|t| t == tag) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Records its tag in [`SLOW_CLOSED`] when dropped.
struct ClosedGuard(String);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        SLOW_CLOSED.lock().unwrap().push(self.0.clone());
    }
}

/// A backend: every way of answering a run, one per path.
async fn backend() -> String {
    let started = json!({"type": "RUN_STARTED", "threadId": "t", "runId": "r"});
    let app = Router::new()
        .route("/ag-ui", post(ag_ui))
        .route("/wsc", post(wsc))
        .route(
            "/status500",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/garbage",
            post(|| async {
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    "data: <html>\n\n",
                )
            }),
        )
        .route("/cut", {
            let body = sse(std::slice::from_ref(&started));
            post(move || async move { ([(header::CONTENT_TYPE, "text/event-stream")], body) })
        })
        .route("/error", {
            let body = sse(&[
                started.clone(),
                json!({"type": "RUN_ERROR", "message": "model overloaded"}),
            ]);
            post(move || async move { ([(header::CONTENT_TYPE, "text/event-stream")], body) })
        })
        .route(
            "/broken/{rule}",
            post(|Path(rule): Path<String>| async move {
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    sse(&breaking(&rule)),
                )
            }),
        )
        .route("/slow/{tag}", {
            let first = sse(std::slice::from_ref(&started));
            post(move |Path(tag): Path<String>| async move {
                let guard = ClosedGuard(tag);
                let stream =
                    futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(futures_util::stream::pending())
                        .map(move |chunk| {
                            let _held = &guard;
                            chunk
                        });
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(stream),
                )
            })
        })
        .route("/bad-utf8", {
            // Events, then a line that is not UTF-8, all in one chunk.
            let mut body = sse(&[
                started.clone(),
                json!({"type": "STEP_STARTED", "stepName": "think"}),
            ])
            .into_bytes();
            body.extend_from_slice(b"data: \xff\n\n");
            post(move || async move { ([(header::CONTENT_TYPE, "text/event-stream")], body) })
        })
        .route(
            "/bighead",
            post(|| async {
                (
                    [("x-padding", "x".repeat(1 << 20))],
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    "data: {}\n\n",
                )
            }),
        )
        .route("/drip", {
            // A byte every 100 ms that never completes an event.
            let first = sse(std::slice::from_ref(&started));
            post(move || async move {
                let drip = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(":".to_owned()), ()))
                });
                let stream =
                    futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(drip);
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(stream),
                )
            })
        })
        .route("/ticking", {
            // An event a second, forever: never idle.
            let first = sse(std::slice::from_ref(&started));
            post(move || async move {
                let tick = sse(&[json!({"type": "CUSTOM", "name": "tick", "value": 1})]);
                let ticks = futures_util::stream::unfold(tick, |tick| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Some((Ok::<_, std::io::Error>(tick.clone()), tick))
                });
                let stream =
                    futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(ticks);
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(stream),
                )
            })
        })
        .route("/stall", {
            let first = sse(std::slice::from_ref(&started));
            post(move || async move {
                let stream =
                    futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
                        .chain(futures_util::stream::pending());
                (
                    [(header::CONTENT_TYPE, "text/event-stream")],
                    Body::from_stream(stream),
                )
            })
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

use futures_util::StreamExt;

/// A gateway whose agent is `url`; a client starts one run and reads it to
/// its terminal frame. Returns the frames' types and the terminal payload.
async fn run_against(url: String, protocol: AgentProtocol) -> (Running, Vec<MessageType>, Value) {
    let agent = HttpAgent::new(HttpAgentConfig {
        protocol,
        token: Some(TOKEN.into()),
        // Under the test client's 10 s wait for a frame.
        idle_timeout: Duration::from_secs(5),
        ..HttpAgentConfig::new(url)
    });
    let r = start_with_runner(
        GatewayConfig::default(),
        std::sync::Arc::new(agent),
        wsc_core::TokioClock::new().shared(),
    )
    .await;
    let (mut ws, _) = connect(&r, "user_id=ana").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let (_, frames) = read_run(&mut ws, &mut 0).await;
    // Exactly one terminal frame: nothing follows.
    ping_pong(&mut ws).await;
    let types = frames.iter().map(|f| f.message_type).collect();
    let last = frames.last().map(|f| f.payload.clone()).unwrap_or_default();
    (r, types, last)
}

use MessageType as M;

#[tokio::test(start_paused = true)]
async fn an_ag_ui_backend_streams_a_whole_run() {
    let base = backend().await;
    let (r, types, last) = run_against(format!("{base}/ag-ui"), AgentProtocol::AgUi).await;
    assert_eq!(
        types,
        [
            M::AgentStarted,
            M::AgentThinking,
            M::ToolExecuting,
            M::ToolExecuting,
            M::ToolCompleted,
            M::ToolCompleted,
            M::AgentResponseChunk,
            M::AgentCompleted
        ]
    );
    assert_eq!(last["result"], "Done");
    // The event monitor validated it: interleaved tools matched by id.
    let runs = r.gateway.event_monitor().check_health();
    assert_eq!((runs.completed_runs, runs.failed_runs), (1, 0));
    assert_eq!(runs.total_silent_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_wsc_backend_streams_ndjson_in_the_legacy_vocabulary() {
    let base = backend().await;
    let (_r, types, last) = run_against(format!("{base}/wsc"), AgentProtocol::Wsc).await;
    assert_eq!(
        types,
        [
            M::AgentStarted,
            M::AgentThinking,
            M::ToolExecuting,
            M::ToolCompleted,
            M::AgentCompleted
        ]
    );
    assert_eq!(last["result"], "ok");
}

#[tokio::test(start_paused = true)]
async fn every_failure_ends_the_run_with_one_agent_error() {
    let base = backend().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for (url, code, says) in [
        (
            format!("http://{closed}/"),
            "upstream_error",
            "cannot reach the agent",
        ),
        (format!("{base}/status500"), "upstream_error", "HTTP 500"),
        (format!("{base}/garbage"), "upstream_error", "not JSON"),
        (
            format!("{base}/cut"),
            "upstream_error",
            "ended without RUN_FINISHED",
        ),
        (
            format!("{base}/stall"),
            "upstream_timeout",
            "no event from the agent",
        ),
        (
            format!("{base}/drip"),
            "upstream_timeout",
            "no event from the agent",
        ),
        (format!("{base}/error"), "agent_error", "model overloaded"),
        (format!("{base}/bad-utf8"), "upstream_error", "UTF-8"),
        (
            format!("{base}/bighead"),
            "upstream_error",
            "response head is over the size limit",
        ),
    ] {
        let (r, types, last) = run_against(url.clone(), AgentProtocol::AgUi).await;
        assert_eq!(types.last(), Some(&M::AgentError), "{url}: {types:?}");
        assert_eq!(last["code"], code, "{url}: {last}");
        let message = last["message"].as_str().unwrap();
        assert!(message.contains(says), "{url}: {message}");
        assert!(!message.contains(TOKEN), "the token is never shown");
        let health = r.gateway.event_monitor().check_health();
        assert_eq!(health.failed_runs, 1, "{url}: counted as failed");
        if url.ends_with("/bad-utf8") {
            // The events before the bad line, in the same chunk, are kept.
            assert_eq!(
                types,
                [M::AgentStarted, M::AgentThinking, M::AgentError],
                "{url}"
            );
        }
    }
}

/// `stop_agent` on a run streaming from a backend: the run ends
/// `cancelled` and the backend sees its request closed.
#[tokio::test(start_paused = true)]
async fn stop_agent_closes_the_upstream_request() {
    let base = backend().await;
    let agent = HttpAgent::new(HttpAgentConfig {
        token: Some(TOKEN.into()),
        idle_timeout: Duration::from_secs(5),
        ..HttpAgentConfig::new(format!("{base}/slow/stop"))
    });
    let r = start_with_runner(
        GatewayConfig::default(),
        std::sync::Arc::new(agent),
        wsc_core::TokioClock::new().shared(),
    )
    .await;
    let (mut ws, _) = connect(&r, "user_id=ana").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let started = next_frame(&mut ws).await.unwrap();
    assert_eq!(started.message_type, M::AgentStarted);
    assert!(!SLOW_CLOSED.lock().unwrap().iter().any(|t| t == "stop"));
    let stop =
        wsc_core::WebSocketMessage::new(M::StopAgent, json!({"run_id": started.payload["run_id"]}));
    let asked = tokio::time::Instant::now();
    send(&mut ws, &stop).await;
    let end = next_frame(&mut ws).await.unwrap();
    // At once, not when the idle timeout would have ended it.
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(
        (end.message_type, &end.payload["code"]),
        (M::AgentError, &json!("cancelled"))
    );
    assert!(
        slow_closed("stop").await,
        "the backend saw its request closed"
    );
    assert_eq!(r.gateway.runs_in_flight("ana"), 0);
}

/// A run still streaming when its session expires (the client left and
/// never resumed) is cancelled: the backend sees its request closed, the
/// user's run count is released, and the dashboard lists it as cancelled
/// with the reason.
#[tokio::test(start_paused = true)]
async fn a_run_whose_session_expired_is_cancelled() {
    let base = backend().await;
    let agent = HttpAgent::new(HttpAgentConfig {
        token: Some(TOKEN.into()),
        // Far longer than the session lives.
        idle_timeout: Duration::from_secs(3600),
        timeout: Duration::from_secs(3600),
        ..HttpAgentConfig::new(format!("{base}/slow/expired"))
    });
    let config = GatewayConfig {
        sessions: wsc_server::SessionsConfig {
            session_ttl: Duration::from_secs(20),
            ..Default::default()
        },
        ..GatewayConfig::default()
    };
    let r = start_with_runner(
        config,
        std::sync::Arc::new(agent),
        wsc_core::TokioClock::new().shared(),
    )
    .await;
    let (mut ws, _) = connect(&r, "user_id=eve").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let started = next_frame(&mut ws).await.unwrap();
    assert_eq!(started.message_type, M::AgentStarted);
    drop(ws);
    // Still streaming while the session can be resumed.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(r.gateway.runs_in_flight("eve"), 1);
    // Past the TTL and the next expiry pass (every 10 s).
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        slow_closed("expired").await,
        "the backend saw its request closed"
    );
    assert_eq!(r.gateway.runs_in_flight("eve"), 0);
    assert_eq!(r.gateway.event_monitor().check_health().cancelled_runs, 1);
    let stats: Value = serde_json::from_str(&http_get(&r, "/api/stats").await.1).unwrap();
    let ended = &stats["runs"]["recent_ended"][0];
    assert_eq!(ended["outcome"], "cancelled", "{stats}");
    assert_eq!(ended["user_id"], "eve");
    assert!(
        ended["reason"]
            .as_str()
            .unwrap()
            .contains("session expired"),
        "{ended}"
    );
}

/// With a backend, a `user_message` is acknowledged and starts a run with
/// its content as the input.
#[tokio::test(start_paused = true)]
async fn a_user_message_starts_a_run_on_the_backend() {
    let base = backend().await;
    let agent = HttpAgent::new(HttpAgentConfig {
        token: Some(TOKEN.into()),
        ..HttpAgentConfig::new(format!("{base}/ag-ui"))
    });
    let r = start_with_runner(
        GatewayConfig::default(),
        std::sync::Arc::new(agent),
        wsc_core::TokioClock::new().shared(),
    )
    .await;
    let (mut ws, _) = connect(&r, "user_id=ana").await;
    let chat = wsc_core::WebSocketMessage::new(
        M::UserMessage,
        json!({"content": "find it", "agent_name": "ignored"}),
    )
    .with_message_id("chat-1")
    .with_thread_id("t1");
    send(&mut ws, &chat).await;
    let ack = next_frame(&mut ws).await.unwrap();
    assert_eq!(
        (ack.message_type, &ack.payload["message_id"]),
        (M::Ack, &json!("chat-1"))
    );
    let (_, frames) = read_run(&mut ws, &mut 0).await;
    let last = frames.last().unwrap();
    // The backend checked the input, the token and the user (it answers
    // 401 or panics otherwise).
    assert_eq!(
        (last.message_type, &last.payload["result"]),
        (M::AgentCompleted, &json!("Done"))
    );
}

/// A backend that breaks one of AG-UI's rules: the run ends with one
/// `agent_error {code: "upstream_protocol", rule}`, the offending event
/// is not passed on, and `/metrics` counts the rule. (`after_end` cannot
/// reach the rules here: the gateway hangs up at the terminal event.)
#[tokio::test(start_paused = true)]
async fn a_backend_breaking_an_ag_ui_rule_ends_its_run_with_upstream_protocol() {
    let base = backend().await;
    for rule in [
        "malformed",
        "missing_field",
        "first_event",
        "run_started_twice",
        "not_open",
        "reused",
        "finished_with_open",
        "too_many_open",
    ] {
        let (r, types, last) =
            run_against(format!("{base}/broken/{rule}"), AgentProtocol::AgUi).await;
        assert_eq!(types.last(), Some(&M::AgentError), "{rule}: {types:?}");
        assert!(
            !types.contains(&M::AgentCompleted) && !types.contains(&M::AgentResponseChunk),
            "{rule}: the offending event is not passed on: {types:?}"
        );
        assert_eq!(last["code"], "upstream_protocol", "{rule}: {last}");
        assert_eq!(last["rule"], rule, "{rule}: {last}");
        assert!(last["message"].as_str().unwrap().contains(rule), "{last}");
        let metrics = r.gateway.render_metrics();
        let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_owned())))
            .expect("valid exposition");
        let counted: Vec<(String, f64)> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "wsc_agui_violations_total")
            .filter_map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => Some((s.labels["rule"].to_owned(), v)),
                _ => None,
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        assert_eq!(
            counted,
            [(rule.to_owned(), 1.0)],
            "{rule}: only this rule, once"
        );
    }
}

/// `max_requests` bounds the requests open to the backend, all users
/// together: a run beyond it waits for one to end (it starts when one
/// does), and one that waits the whole idle timeout ends with
/// `upstream_busy` instead of opening another socket.
#[tokio::test(start_paused = true)]
async fn upstream_requests_are_capped_and_a_run_beyond_waits_or_is_told() {
    let base = backend().await;
    let agent = HttpAgent::new(HttpAgentConfig {
        token: Some(TOKEN.into()),
        idle_timeout: Duration::from_secs(5),
        max_requests: 2,
        ..HttpAgentConfig::new(format!("{base}/ticking"))
    });
    let r = start_with_runner(
        GatewayConfig::default(),
        std::sync::Arc::new(agent),
        wsc_core::TokioClock::new().shared(),
    )
    .await;
    // Two users' runs hold both requests (the backend sends an event a
    // second, forever).
    let mut holders = Vec::new();
    for user in ["ana", "bob"] {
        let (mut ws, _) = connect(&r, &format!("user_id={user}")).await;
        send(&mut ws, &start_agent(&[], 0)).await;
        let started = next_frame(&mut ws).await.unwrap();
        assert_eq!(started.message_type, M::AgentStarted);
        holders.push((ws, started.payload["run_id"].clone()));
    }
    // A third user's run waits; when ana stops hers, it gets her request.
    let (mut cy, _) = connect(&r, "user_id=cy").await;
    send(&mut cy, &start_agent(&[], 0)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ana, ana_run) = &mut holders[0];
    let stop = wsc_core::WebSocketMessage::new(M::StopAgent, json!({"run_id": ana_run}));
    send(ana, &stop).await;
    let end = loop {
        let frame = next_frame(ana).await.unwrap();
        if frame.message_type == M::AgentError {
            break frame;
        }
    };
    assert_eq!(end.payload["code"], "cancelled");
    let started = next_frame(&mut cy).await.unwrap();
    assert_eq!(started.message_type, M::AgentStarted, "{started:?}");
    // Now bob and cy hold both: dee's run waits the idle timeout, then is
    // told why, and never reached the backend.
    let (mut dee, _) = connect(&r, "user_id=dee").await;
    send(&mut dee, &start_agent(&[], 0)).await;
    let end = next_frame(&mut dee).await.unwrap();
    assert_eq!(end.message_type, M::AgentError);
    assert_eq!(end.payload["code"], "upstream_busy");
    assert!(
        end.payload["message"]
            .as_str()
            .unwrap()
            .contains("--max-upstream-requests"),
        "{}",
        end.payload
    );
}
