//! Real agent backends in another language: the Python examples in
//! `examples/` (the official `ag-ui-protocol` package with Starlette, and a
//! wsc NDJSON backend), each started as a process, behind a gateway with
//! `HttpAgent`, driven by WebSocket clients: 50 users × 3 runs at once, a
//! resume in the middle of an upstream run, a failing run. `cargo xtask ci`
//! prepares the interpreter and its packages in `target/pyenv`.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wsc_core::{MessageType, WebSocketMessage};
use wsc_server::{AgentProtocol, GatewayConfig, HttpAgent, HttpAgentConfig};

mod support;
use support::*;

/// Starts `examples/<dir>/agent.py` on a free port; its process and URL.
async fn start_agent_process(dir: &str) -> (Child, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(dir)
        .join("agent.py");
    let mut child = Command::new(python())
        .arg(&script)
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example agent starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the agent prints its address in time")
        .unwrap()
        .expect("a line");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

async fn gateway_for(url: String, protocol: AgentProtocol) -> Running {
    let agent = HttpAgent::new(HttpAgentConfig {
        protocol,
        ..HttpAgentConfig::new(url)
    });
    let config = GatewayConfig {
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            max_messages_per_ip_per_minute: Some(0),
            ..Default::default()
        },
        ..Default::default()
    };
    start_with_runner(config, Arc::new(agent), Arc::new(wsc_core::SystemClock)).await
}

use MessageType as M;

/// What the AG-UI example's run becomes.
const AG_UI_RUN: [M; 10] = [
    M::AgentStarted,
    M::AgentThinking,
    M::ToolExecuting,
    M::ToolExecuting,
    M::ToolCompleted,
    M::ToolCompleted,
    M::AgentResponseChunk,
    M::AgentResponseChunk,
    M::AgentResponseChunk,
    M::AgentCompleted,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_users_run_three_ag_ui_runs_each_through_the_python_backend() {
    let (_agent, url) = start_agent_process("ag-ui-python").await;
    let r = gateway_for(url, AgentProtocol::AgUi).await;
    let users: Vec<_> = (0..50)
        .map(|u| {
            let addr = r.addr;
            tokio::spawn(async move {
                let (mut ws, _) =
                    tokio_tungstenite::connect_async(format!("ws://{addr}/ws?user_id=py-{u}"))
                        .await
                        .unwrap();
                let _hello = ws.next().await;
                let mut last_seq = 0;
                let mut runs = Vec::new();
                for i in 0..3 {
                    let start = WebSocketMessage::new(
                        M::StartAgent,
                        json!({"input": format!("question {i} of user {u}")}),
                    )
                    .with_message_id(format!("q{i}"));
                    send(&mut ws, &start).await;
                    let (run_id, frames) = read_run(&mut ws, &mut last_seq).await;
                    let types: Vec<M> = frames.iter().map(|f| f.message_type).collect();
                    assert_eq!(types, AG_UI_RUN, "user {u} run {i}: {frames:?}");
                    let answer = &frames.last().unwrap().payload["result"];
                    assert_eq!(
                        answer,
                        &json!(format!("You asked: question {i} of user {u}"))
                    );
                    runs.push(run_id);
                }
                runs
            })
        })
        .collect();
    let mut runs = Vec::new();
    for u in users {
        runs.extend(u.await.unwrap());
    }
    assert_eq!(runs.len(), 150);
    for run_id in &runs {
        assert_eq!(
            r.gateway
                .event_monitor()
                .validate_session_completion(run_id),
            Ok(true),
            "{run_id}"
        );
    }
    assert_eq!(
        r.gateway
            .event_monitor()
            .check_health()
            .total_silent_failures,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_in_the_middle_of_an_upstream_run_gets_exactly_the_rest() {
    let (_agent, url) = start_agent_process("ag-ui-python").await;
    // 40 ms between events: the run goes on while the client is away.
    let r = gateway_for(format!("{url}?slow=40"), AgentProtocol::AgUi).await;
    let (mut ws, hello) = connect(&r, "user_id=resumer").await;
    let (session, token) = (
        hello["session_id"].as_str().unwrap().to_owned(),
        hello["resume_token"].as_str().unwrap().to_owned(),
    );
    send(&mut ws, &start_agent(&[], 0)).await;
    let mut types = Vec::new();
    let mut last_seq = 0;
    while last_seq < 3 {
        let f = next_frame(&mut ws).await.unwrap();
        if let Some(seq) = f.seq {
            assert_eq!(seq, last_seq + 1);
            last_seq = seq;
            types.push(f.message_type);
        }
    }
    drop(ws); // the connection is lost; the upstream run is not
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (mut ws, hello) = connect(
        &r,
        &format!("user_id=resumer&session_id={session}&resume_token={token}&last_seq={last_seq}"),
    )
    .await;
    assert_eq!(hello["resumed"], true, "{hello}");
    let (_, rest) = read_run(&mut ws, &mut last_seq).await;
    types.extend(rest.iter().map(|f| f.message_type));
    assert_eq!(types, AG_UI_RUN, "exactly the rest, once each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failing_mode_and_the_wsc_backend() {
    let (_agent, url) = start_agent_process("ag-ui-python").await;
    let r = gateway_for(format!("{url}?fail=1"), AgentProtocol::AgUi).await;
    let (mut ws, _) = connect(&r, "user_id=f").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let mut last_seq = 0;
    let (_, frames) = read_run(&mut ws, &mut last_seq).await;
    let last = frames.last().unwrap();
    assert_eq!(
        (last.message_type, &last.payload["code"]),
        (M::AgentError, &json!("agent_error"))
    );
    // Still usable afterwards.
    ping_pong(&mut ws).await;

    let (_wsc, url) = start_agent_process("wsc-python").await;
    let r = gateway_for(url, AgentProtocol::Wsc).await;
    let (mut ws, _) = connect(&r, "user_id=w").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let mut last_seq = 0;
    let (run_id, frames) = read_run(&mut ws, &mut last_seq).await;
    let types: Vec<M> = frames.iter().map(|f| f.message_type).collect();
    assert_eq!(
        types,
        [
            M::AgentStarted,
            M::AgentThinking,
            M::ToolExecuting,
            M::ToolCompleted,
            M::AgentResponseChunk,
            M::AgentCompleted
        ]
    );
    assert_eq!(
        r.gateway
            .event_monitor()
            .validate_session_completion(&run_id),
        Ok(true)
    );
}

/// The demo's load (`wsc-gateway demo --agent-url`) through the Python
/// AG-UI backend: resilient clients cut at random events and resumed;
/// nothing lost, nothing duplicated, every run validated by the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_load_runs_through_a_real_backend() {
    let (_agent, url) = start_agent_process("ag-ui-python").await;
    let r = gateway_for(format!("{url}?slow=5"), AgentProtocol::AgUi).await;
    let config = wsc_loadgen::DemoConfig {
        users: 20,
        runs: 3,
        disconnect_rate: 0.4,
        flood_pings: 0,
        seed: Some(7),
        agent: Some(url.clone()),
        ..Default::default()
    };
    let report = wsc_loadgen::run_demo(
        &[r.gateway.event_monitor().clone()],
        &[format!("ws://{}/ws", r.addr)],
        &config,
        Arc::new(wsc_loadgen::DemoProgress::default()),
    )
    .await;
    assert!(report.passed(), "{}", report.to_table());
    assert_eq!(report.runs_completed, 60);
    assert_eq!(report.agent, url);
    assert_eq!(report.events, 60 * AG_UI_RUN.len() as u64);
    assert!(report.disconnects > 0 && report.resumes >= report.disconnects);
}

/// The AG-UI run of `url` (an SSE stream), read directly: its events.
async fn read_ag_ui_events(url: &str) -> Vec<serde_json::Value> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let input = json!({"threadId": "t", "runId": "every-type", "messages": [
        {"id": "q", "role": "user", "content": "all of it"}
    ], "tools": [], "context": [], "state": {}, "forwardedProps": {}});
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            input.to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.expect("the backend answers");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let mut reader = wsc_upstream::StreamReader::new(wsc_upstream::StreamFormat::Sse);
    let mut texts = reader.push(&body).unwrap();
    texts.extend(reader.finish().unwrap());
    texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect()
}

/// The Python backend emitting every one of AG-UI 1.0's 31 event types
/// (`?all=1`, and `?all=1&fail=1` for `RUN_ERROR`; each event built by the
/// official package's own model): read directly, every event parses with
/// `@ag-ui/core`'s schemas and each run passes `@ag-ui/client`'s verifier
/// (Node) and the gateway's rules; through the gateway, the run completes
/// and no rule is counted broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_emitting_all_31_event_types_passes_every_check() {
    let (_agent, base) = start_agent_process("ag-ui-python").await;
    let url = format!("{base}?all=1");
    let runs = [
        read_ag_ui_events(&url).await,
        read_ag_ui_events(&format!("{url}&fail=1")).await,
    ];
    let types: std::collections::HashSet<&str> = runs
        .iter()
        .flatten()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for t in wsc_event_monitor::AgUiEventType::ALL {
        assert!(types.contains(t.as_str()), "{t} was not emitted");
    }
    for events in &runs {
        let mut rules = wsc_event_monitor::AgUiRules::new();
        for e in events {
            rules
                .check(&e.to_string())
                .unwrap_or_else(|v| panic!("{e}: {v}"));
        }
        assert!(rules.is_ended());
        assert_eq!(rules.unknown_events(), 0);
    }

    // The official packages, in Node.
    let node = std::env::var_os("WSC_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    let mut child = std::process::Command::new(node)
        .args(["conformance/agui-verify.mjs", "--schemas"])
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (npm ci in clients/typescript first)");
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        &serde_json::to_vec(&runs).unwrap(),
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let verdicts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdicts, json!([{"at": null}, {"at": null}]), "{verdicts}");

    // Through the gateway: the run completes, nothing is counted broken.
    let r = gateway_for(url, AgentProtocol::AgUi).await;
    let (mut ws, _) = connect(&r, "user_id=all-types").await;
    send(&mut ws, &start_agent(&[], 0)).await;
    let (_, frames) = read_run(&mut ws, &mut 0).await;
    assert_eq!(
        frames.last().unwrap().message_type,
        M::AgentCompleted,
        "{frames:?}"
    );
    let metrics = r.gateway.render_metrics();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("wsc_agui_violations_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
}
