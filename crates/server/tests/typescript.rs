//! The TypeScript client (`clients/typescript`, `@wsc/client`) in Node:
//! its unit tests (fake socket, fake timers), then 50 clients × 5 agent
//! runs against this gateway, once while each client cuts its own
//! connection every few frames and once through a proxy that resets about
//! 30 % of connections at a random byte (mid-frame, mid-run, between runs
//! with a start in flight): every frame exactly once, in order, every run
//! whole. Its failure paths, each in a Node process of its own: an invalid
//! URL, a 404 path, a 401, nothing listening, the run cap (failed by
//! default, queued on request, a queued cancel never started), a gateway
//! restarted under a run in flight — each run ends once, typed, with no
//! unhandled rejection and no token in any message.
//! `cargo xtask ci` installs its npm dependencies (`npm ci`), builds it and
//! passes `node` in `WSC_NODE`.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use tokio::net::TcpListener;
use wsc_server::{Gateway, GatewayConfig};

mod support;
use support::{byte_cutting_proxy, chaos_proxy};

fn node() -> PathBuf {
    std::env::var_os("WSC_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

fn package() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    assert!(
        dir.join("dist/integration/run.js").exists(),
        "the TypeScript client is not built: run `npm ci && npm run build` in clients/typescript \
         (cargo xtask ci does)"
    );
    dir
}

fn check(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test]
async fn the_clients_unit_tests_pass() {
    let output = tokio::process::Command::new(node())
        .args(["--test", "dist/test/"])
        .current_dir(package())
        .output()
        .await
        .expect("node runs");
    let stdout = check(&output, "node --test");
    assert!(stdout.contains("# fail 0"), "{stdout}");
}

/// Runs a Node script of the package with `args` (at most 3 minutes);
/// the JSON of its last line.
async fn node_json(args: &[&str], what: &str) -> Value {
    let output = tokio::process::Command::new(node())
        .args(args)
        .current_dir(package())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(180), output)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end in 3 minutes"))
        .expect("node runs");
    let stdout = check(&output, what);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"))
}

/// Runs the Node clients against `url`; their totals.
async fn node_clients(url: String, cut_every: &str) -> Value {
    let output = tokio::process::Command::new(node())
        .arg("dist/integration/run.js")
        .arg(url)
        .args(["50", "5", cut_every])
        .current_dir(package())
        .output()
        .await
        .expect("node runs");
    let stdout = check(&output, "the Node clients");
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn exactly_once(total: &Value) {
    assert_eq!(total["runs"], 250, "{total}");
    assert_eq!(total["completed"], 250, "{total}");
    // The simulated agent's default run: 7 frames.
    assert_eq!(total["frames"], 250 * 7, "{total}");
    assert_eq!(
        (total["duplicates"].as_u64(), total["outOfOrder"].as_u64()),
        (Some(0), Some(0)),
        "{total}"
    );
    assert_eq!(total["resumesRefused"], 0, "{total}");
}

async fn gateway() -> (Gateway, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig {
        // Fifty users from this one address.
        limits: wsc_server::LimitsConfig {
            max_handshakes_per_ip: 0,
            max_messages_per_ip_per_minute: Some(0),
            ..Default::default()
        },
        ..Default::default()
    });
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    (gateway, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_get_every_frame_once_and_in_order_across_their_own_cuts() {
    let (gateway, addr) = gateway().await;
    let total = node_clients(format!("ws://{addr}/ws"), "4").await;
    exactly_once(&total);
    assert!(total["drops"].as_u64() > Some(100), "cut often: {total}");
    assert!(gateway.stats().resumes > 100, "{:?}", gateway.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_get_every_frame_once_and_in_order_through_a_cutting_proxy() {
    let (gateway, addr) = gateway().await;
    let (proxy, stats) = chaos_proxy(addr, 0.3, 20, true).await;
    let total = node_clients(format!("ws://{proxy}/ws"), "0").await;
    exactly_once(&total);
    let cut = stats.cut.load(std::sync::atomic::Ordering::Relaxed);
    assert!(cut >= 10, "the proxy cut {cut} connections");
    assert!(gateway.stats().resumes >= cut / 2, "{:?}", gateway.stats());
}

/// The official AG-UI client, unchanged but for its URL: `@ag-ui/client`
/// 1.0's `HttpAgent` in Node against `POST /ag-ui` gets the whole run
/// through its own verification, and ends with the assistant's answer
/// among its messages.
#[tokio::test]
async fn the_official_ag_ui_http_agent_runs_against_post_ag_ui() {
    let r = support::start(GatewayConfig::default()).await;
    let output = tokio::process::Command::new(node())
        .args([
            "conformance/http-agent.mjs",
            &format!("http://{}/ag-ui", r.addr),
            "node-user",
            "node-run-1",
        ])
        .current_dir(package())
        .output()
        .await
        .expect("node runs");
    let stdout = check(&output, "HttpAgent");
    let got: Value = serde_json::from_str(&stdout).unwrap();
    let events: Vec<&str> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"RUN_STARTED"), "{got}");
    assert_eq!(events.last(), Some(&"RUN_FINISHED"), "{got}");
    assert!(
        events.contains(&"TOOL_CALL_RESULT") && events.contains(&"TEXT_MESSAGE_CONTENT"),
        "{got}"
    );
    let answer = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant" && m["content"].is_string())
        .unwrap_or_else(|| panic!("no assistant answer: {got}"));
    assert_eq!(answer["content"], "You asked: hello gateway");
    assert_eq!(r.gateway.stats().runs, 1);
}

/// `WscAgent` (an `@ag-ui/client` `AbstractAgent` over `/ws?protocol=ag-ui`)
/// in Node, through a proxy that resets about 30 % of connections at a
/// random byte: 10 users × 4 runs with `runAgent()`, every other run joined
/// by a second agent with `connectAgent()` — each reader gets exactly the
/// run's events (as the gateway holds them), accepted by AG-UI's own
/// verification, and nothing is ever an unhandled rejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wsc_agent_runs_and_joins_every_run_whole_through_a_cutting_proxy() {
    let (gateway, addr) = gateway().await;
    let (proxy, stats) = chaos_proxy(addr, 0.3, 21, true).await;
    let got = node_json(
        &[
            "dist/integration/agent.js",
            &format!("ws://{proxy}/ws"),
            "10",
            "4",
            "5",
        ],
        "WscAgent (its own watchdog reports a run stuck at 90 s)",
    )
    .await;
    assert_eq!(got["unhandled"], 0, "no unhandled rejection");
    let runs = got["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 40);
    let mut joined = 0;
    for run in runs {
        assert!(run["error"].is_null(), "{run}");
        let (user, run_id) = (
            run["user"].as_str().unwrap(),
            run["runId"].as_str().unwrap(),
        );
        let log = support::ag_ui_run_log(addr, user, run_id).await;
        assert_eq!(log.len(), 16, "{run_id}: the simulated run, whole");
        assert_eq!(
            run["got"].as_array().unwrap(),
            &log,
            "{run_id}: exactly the run"
        );
        if let Some(readers) = run["joined"].as_array() {
            assert_eq!(
                readers, &log,
                "{run_id}: the second reader, exactly the run"
            );
            joined += 1;
        }
        let mut rules = wsc_event_monitor::AgUiRules::new();
        for event in &log {
            rules.check(&event.to_string()).unwrap();
        }
    }
    assert_eq!(joined, 20);
    let cut = stats.cut.load(std::sync::atomic::Ordering::Relaxed);
    assert!(cut >= 5, "the proxy cut {cut} connections");
    assert!(gateway.stats().resumes >= 1, "{:?}", gateway.stats());
}

/// A `Last-Event-ID` client in Node (fetch and its own SSE parser) through
/// a proxy that resets every connection at a random byte of its first 8 KB
/// (fetch keeps connections alive, so each carries several runs): 5 users
/// × 4 runs started with `POST /ag-ui`, each cut stream resumed with
/// `GET …/events` after the last id received — every run's events exactly
/// as the gateway holds them, ids 1, 2, 3 … with no gap or repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_event_id_client_gets_every_run_exactly_through_a_cutting_proxy() {
    let (_gateway, addr) = gateway().await;
    let (proxy, stats) = byte_cutting_proxy(addr, 1.0, 22).await;
    let got = node_json(
        &[
            "conformance/sse-resume.mjs",
            &format!("http://{proxy}"),
            "5",
            "4",
            "5",
        ],
        "the Last-Event-ID client",
    )
    .await;
    let runs = got["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 20);
    let mut reconnects = 0;
    for run in runs {
        assert!(run.get("error").is_none(), "{run}");
        assert_eq!(
            run["badIds"],
            serde_json::json!([]),
            "no gap, no repeat: {run}"
        );
        let (user, run_id) = (
            run["user"].as_str().unwrap(),
            run["runId"].as_str().unwrap(),
        );
        let log = support::ag_ui_run_log(addr, user, run_id).await;
        let events: Vec<Value> = run["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| serde_json::from_str(t.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(events, log, "{run_id}: exactly the run");
        reconnects += run["reconnects"].as_u64().unwrap();
    }
    let cut = stats.cut.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        cut >= 5 && reconnects >= 5,
        "the proxy cut {cut} connections, {reconnects} resumes"
    );
}

/// `failures.js MODE URL` in a process of its own: its JSON line. Every
/// mode must end with no unhandled rejection and no message holding the
/// URL's token.
async fn failure_mode(mode: &str, url: &str) -> Value {
    let out = node_json(&["dist/integration/failures.js", mode, url], mode).await;
    assert_eq!(out["unhandled"], 0, "{mode}: {out}");
    assert_eq!(out["leaked"], false, "{mode}: {out}");
    out
}

/// Where retrying cannot help, the client says so at once, typed: an
/// invalid URL throws from the constructor; a handshake refused with 404
/// or 401 fails the client and its run at once; nothing listening fails
/// them within the give-up bound — never a run pending forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_fast_and_typed_where_retrying_cannot_help() {
    for url in ["not a url?token=s3cret", "localhost:8765/ws?token=s3cret"] {
        let out = failure_mode("invalid", url).await;
        assert_eq!(
            (out["threw"].clone(), out["code"].clone()),
            (true.into(), "invalid_url".into()),
            "{out}"
        );
    }
    let (_, addr) = gateway().await;
    let out = failure_mode("refused", &format!("ws://{addr}/nowhere")).await;
    assert_eq!(out["run"], "not_found", "{out}");
    assert_eq!(out["failed"], serde_json::json!(["not_found"]), "{out}");
    assert!(out["ms"].as_u64() < Some(2_000), "at once: {out}");
    let jwt = support::start_jwt().await;
    let jwt_addr = jwt.addr;
    let out = failure_mode("refused", &format!("ws://{jwt_addr}/ws")).await;
    assert_eq!(out["run"], "unauthorized", "{out}");
    assert_eq!(out["state"], "failed", "{out}");
    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    let out = failure_mode("nothing", &format!("ws://{nobody}/ws")).await;
    assert_eq!(out["run"], "gave_up", "{out}");
    assert_eq!(out["failed"], serde_json::json!(["gave_up"]), "{out}");
    assert!(out["ms"].as_u64() < Some(10_000), "{out}");
}

/// A fifth run of a user with four slow ones in flight: by default it
/// fails `rate_limited` (limit `runs_in_flight`) and the others complete;
/// with `queueWhenCapped` it waits (sent again no faster than the
/// gateway's hint) and completes, and a sixth cancelled while it waits
/// never starts. A run cancelled before the socket opens never starts;
/// `close()` with runs in flight ends them `closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_start_fails_typed_or_waits_and_a_queued_cancel_never_starts() {
    let (gateway, addr) = gateway().await;
    let url = format!("ws://{addr}/ws");
    let runs_of = |out: &Value| -> Vec<String> {
        let runs = out["runs"].as_array().unwrap().iter();
        runs.map(|r| r.as_str().unwrap().to_owned()).collect()
    };
    let out = failure_mode("cap", &url).await;
    let runs = runs_of(&out);
    assert_eq!(runs[..4], ["done:agent_completed"; 4], "{out}");
    assert_eq!(runs[4], "rate_limited", "{out}");
    assert_eq!(out["limit"], "runs_in_flight", "{out}");
    // A run cancelled before the socket opens never starts; close() with
    // two runs in flight ends both `closed`.
    let before = gateway.event_monitor().session_count();
    let out = failure_mode("close", &url).await;
    assert_eq!(out["early"], "cancelled", "{out}");
    assert_eq!(
        out["runs"],
        serde_json::json!(["closed", "closed"]),
        "{out}"
    );
    assert_eq!(out["state"], "closed", "{out}");
    assert_eq!(gateway.event_monitor().session_count() - before, 2, "{out}");
    let before = gateway.event_monitor().session_count();
    let out = failure_mode("queued", &url).await;
    let runs = runs_of(&out);
    assert_eq!(runs, ["done:agent_completed"; 5], "{out}");
    assert_eq!(out["cancelled"], "cancelled", "{out}");
    assert_eq!(
        gateway.event_monitor().session_count() - before,
        5,
        "the cancelled sixth never started: {out}"
    );
    // Five first sends, then at most one per second of waiting (the
    // gateway's hint) for the fifth.
    let (starts, ms) = (out["starts"].as_u64().unwrap(), out["ms"].as_u64().unwrap());
    assert!(starts <= 5 + ms / 1_000 + 1, "{out}");
}

/// The gateway restarted (its sessions gone) while a run is in flight:
/// the run ends with `session_lost` — not as if complete — and the next
/// run completes on the new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_ends_the_run_in_flight_with_session_lost() {
    use tokio::io::AsyncBufReadExt;
    let mut first = support::Doomed::start("127.0.0.1:0".parse().unwrap(), || async {
        Gateway::new(GatewayConfig::default())
    });
    let addr = first.addr;
    let mut child = tokio::process::Command::new(node())
        .args([
            "dist/integration/failures.js",
            "restart",
            &format!("ws://{addr}/ws"),
        ])
        .current_dir(package())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the run starts")
        .unwrap();
    assert_eq!(line.as_deref(), Some("in-flight"));
    // The gateway dies (its connections with it) and a new one, knowing
    // no session, takes its port.
    first.kill();
    let _second = support::Doomed::start(addr, || async { Gateway::new(GatewayConfig::default()) });
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the script ends")
        .unwrap()
        .unwrap();
    let out: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(out["first"], "session_lost", "{out}");
    assert_eq!(out["second"], "done:agent_completed", "{out}");
    assert_eq!(out["unhandled"], 0, "{out}");
}
