//! The demo load against an in-process gateway: nothing lost or duplicated
//! through random drops and resumes, and a broken agent fails it. Plus the
//! built binary's `demo` command.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use wsc_core::MessageType;
use wsc_loadgen::{DemoConfig, DemoProgress, DemoReport, run_demo};
use wsc_server::{AgentRequest, AgentRunner, EventSink, Gateway, GatewayConfig, SimulatedAgent};

async fn demo_against(runner: Arc<dyn AgentRunner>, config: DemoConfig) -> DemoReport {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::with_runner(
        GatewayConfig {
            limits: wsc_server::LimitsConfig {
                max_handshakes_per_ip: 0,
                max_messages_per_ip_per_minute: Some(0),
                ..Default::default()
            },
            ..Default::default()
        },
        runner,
    );
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let progress = Arc::new(DemoProgress::default());
    let report = run_demo(
        &[gateway.event_monitor().clone()],
        &[format!("ws://{addr}/ws")],
        &config,
        progress.clone(),
    )
    .await;
    assert_eq!(progress.snapshot().runs_done, report.runs);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_drops_and_resumes_lose_and_duplicate_nothing() {
    let config = DemoConfig {
        users: 40,
        runs: 3,
        disconnect_rate: 0.6,
        step_delay: Duration::from_millis(5),
        seed: Some(7),
        flood_pings: 150,
        ..Default::default()
    };
    let report = demo_against(Arc::new(SimulatedAgent), config.clone()).await;
    assert!(report.passed(), "{}", report.to_table());
    assert_eq!(report.runs_completed, 120);
    assert_eq!(report.events, 120 * config.events_per_run());
    assert!(report.disconnects > 20, "{report:?}");
    assert!(report.resumes >= report.disconnects, "{report:?}");
    assert_eq!(report.resumes_refused, 0);
    // The default limit is 120 frames a minute: 30 of the flood are refused.
    assert_eq!(report.rate_limited, 30);
    assert!(report.p99_latency_ms >= report.p50_latency_ms);
}

/// The demo in the AG-UI dialect: runs asked for with `run_agent`, their
/// AG-UI events through random drops and resumes, every run checked
/// against AG-UI's rules, and a second reader joining some runs mid-way
/// gets each of them whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ag_ui_demo_loses_and_duplicates_nothing_and_second_readers_get_whole_runs() {
    let config = DemoConfig {
        users: 30,
        runs: 3,
        disconnect_rate: 0.6,
        join_rate: 0.5,
        step_delay: Duration::from_millis(5),
        seed: Some(11),
        flood_pings: 0,
        protocol: wsc_loadgen::DemoProtocol::AgUi,
        ..Default::default()
    };
    let report = demo_against(Arc::new(SimulatedAgent), config.clone()).await;
    assert!(report.passed(), "{}", report.to_table());
    assert_eq!(report.runs_completed, 90);
    assert_eq!(report.events, 90 * config.events_per_run());
    assert!(report.disconnects > 20, "{report:?}");
    assert!(report.resumes >= report.disconnects, "{report:?}");
    assert!(report.joins > 20, "{report:?}");
    assert_eq!(report.joins_complete, report.joins);
}

/// An AG-UI agent that drops one word of its answer (no rule broken, the
/// run is short): every run fails the AG-UI demo.
struct Terse;

#[async_trait::async_trait]
impl AgentRunner for Terse {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let input = request.ag_ui.unwrap_or_default();
        let (thread, run) = (&input["threadId"], &input["runId"]);
        for event in [
            json!({"type": "RUN_STARTED", "threadId": thread, "runId": run}),
            json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
            json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "hi"}),
            json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}),
            json!({"type": "RUN_FINISHED", "threadId": thread, "runId": run}),
        ] {
            let _ = sink.emit_ag_ui(&event.to_string()).await;
        }
    }

    fn speaks_ag_ui(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_ag_ui_agent_fails_the_ag_ui_demo() {
    let config = DemoConfig {
        users: 4,
        runs: 2,
        disconnect_rate: 0.0,
        step_delay: Duration::ZERO,
        flood_pings: 0,
        protocol: wsc_loadgen::DemoProtocol::AgUi,
        ..Default::default()
    };
    let report = demo_against(Arc::new(Terse), config).await;
    assert!(!report.passed());
    assert_eq!(report.runs_completed, 0, "{}", report.to_table());
    assert_eq!(report.runs_failed_validation, 8);
}

/// Skips `agent_thinking`: every run arrives incomplete.
struct ForgetfulAgent;

#[async_trait::async_trait]
impl AgentRunner for ForgetfulAgent {
    async fn run(&self, _request: AgentRequest, sink: EventSink) {
        sink.emit(MessageType::AgentStarted, json!({})).await;
        for (i, t) in ["search", "calculator"].iter().enumerate() {
            let call = json!({"tool_name": t, "tool_call_id": format!("c{i}")});
            sink.emit(MessageType::ToolExecuting, call.clone()).await;
            sink.emit(MessageType::ToolCompleted, call).await;
        }
        sink.emit(MessageType::AgentCompleted, json!({})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_agent_fails_the_demo() {
    let config = DemoConfig {
        users: 5,
        runs: 2,
        disconnect_rate: 0.0,
        step_delay: Duration::ZERO,
        flood_pings: 0,
        ..Default::default()
    };
    let report = demo_against(Arc::new(ForgetfulAgent), config).await;
    assert!(!report.passed());
    assert_eq!(report.runs_completed, 0);
    assert_eq!(report.events_lost, 10, "one event missing per run");
    // Each run fails once (the client sees it incomplete).
    assert_eq!(report.runs_failed_validation, 10, "{}", report.to_table());
}

#[test]
fn the_demo_command_reports_json_and_exits_0() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsc-gateway"))
        .args([
            "demo",
            "--users",
            "20",
            "--runs",
            "2",
            "--step-delay-ms",
            "5",
        ])
        .args(["--disconnect-rate", "0.5", "--seed", "3", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("dashboard at http://127.0.0.1:"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs_completed"], 40);
    assert_eq!(report["events_lost"], 0);
    assert_eq!(report["events_duplicated"], 0);
    assert_eq!(report["rate_limited"], 80);
}

#[test]
fn the_demo_command_refuses_bad_arguments() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsc-gateway"))
        .args(["demo", "--disconnect-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--disconnect-rate"));
}
