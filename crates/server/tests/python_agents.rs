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
