//! In a real browser, headless Chromium: the TypeScript client
//! (`clients/typescript`, built) resuming across cuts and a page reload,
//! and failing typed where it cannot deliver (an invalid URL, refused
//! handshakes, nothing listening, `close()`, a gateway restarted under a
//! run), and the dashboard. Chromium is driven over the
//! Chrome DevTools Protocol (a WebSocket, so tokio-tungstenite is the whole
//! driver), loads `GET /` while demo load runs, checks that the numbers move,
//! the latency chart draws and the runs panel lists a run in flight and the
//! failed and cancelled runs with their reasons (a hostile user id shown as
//! text, never as markup), and saves a screenshot to
//! `target/dashboard.png` (and to `docs/dashboard.png` when
//! `WSC_UPDATE_SCREENSHOT=1`).
//!
//! `cargo xtask ci` installs Chromium when it can and passes its path in
//! `WSC_CHROMIUM`; without one this test fails naming the packages.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_loadgen::{DemoConfig, DemoProgress, run_demo};
use wsc_server::{AgentRequest, AgentRunner, EventSink, Gateway, GatewayConfig, SimulatedAgent};

mod support;

/// The simulated agent, except that a run asked to `fail` fails the way an
/// upstream would.
struct FailOnRequest;

#[async_trait::async_trait]
impl AgentRunner for FailOnRequest {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        if request.input == "fail" {
            sink.emit(MessageType::AgentStarted, json!({})).await;
            sink.emit(
                MessageType::AgentError,
                json!({"code": "upstream_error", "message": "the agent answered HTTP 502"}),
            )
            .await;
        } else {
            SimulatedAgent.run(request, sink).await;
        }
    }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Client, message_type: MessageType, payload: Value) {
    let msg = WebSocketMessage::new(message_type, payload);
    ws.send(Message::text(serde_json::to_string(&msg).unwrap()))
        .await
        .unwrap();
}

/// Reads frames until one of `message_type`; returns its payload.
async fn until(ws: &mut Client, message_type: MessageType) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let msg: WebSocketMessage = serde_json::from_str(&text).unwrap();
        if msg.message_type == message_type {
            return msg.payload;
        }
    }
}

/// What the runs panel shows, read from the page.
const READ_RUNS: &str = r##"(() => {
  const rows = (id) => [...document.querySelectorAll("#" + id + " tbody tr")]
    .map(tr => [...tr.cells].map(td => td.textContent));
  return {
    in_flight: rows("runs-table"),
    ended: rows("ended-table"),
    count: document.getElementById("runs-in-flight").textContent,
    markup: document.querySelectorAll(".runs img, .runs script").length,
  };
})()"##;

fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("WSC_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(name).output()
            && out.status.success()
        {
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !path.is_empty() {
                return PathBuf::from(path);
            }
        }
    }
    panic!(
        "no Chromium for the dashboard's browser test: install the Debian package `chromium` \
         (apt-get install chromium), let `cargo xtask ci` install it, or set WSC_CHROMIUM"
    );
}

/// A Chrome DevTools Protocol connection to one page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
}

impl Page {
    async fn open(browser_ws: &str, url: &str) -> Page {
        let (ws, _) = tokio_tungstenite::connect_async(browser_ws).await.unwrap();
        let mut page = Page {
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = page
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = page
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        page.session = attached["sessionId"].as_str().unwrap().to_owned();
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        page.call("Page.navigate", json!({"url": url})).await;
        page
    }

    /// Sends a command (to the page once attached) and waits for its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("the browser answers")
                .expect("the browser is connected")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression returning JSON-able data.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }
}

/// Headless Chromium with the DevTools endpoint on a free port: the
/// process, its DevTools WebSocket URL and its profile directory.
async fn launch_chromium() -> (tokio::process::Child, String, PathBuf) {
    let browser_path = chromium();
    static LAUNCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let profile = std::env::temp_dir().join(format!(
        "wsc-chromium-{}-{}",
        std::process::id(),
        LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut browser = tokio::process::Command::new(&browser_path)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser_path.display()));
    let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
    let browser_ws = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
        panic!("Chromium exited without a DevTools endpoint");
    })
    .await
    .expect("Chromium starts");
    // Keep draining its stderr so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    (browser, browser_ws, profile)
}

const READ_DASHBOARD: &str = r##"(() => {
  const num = (id) => {
    const el = document.getElementById(id);
    if (!el) return null;
    const n = Number(el.textContent.replace(/[^0-9.]/g, ""));
    return Number.isFinite(n) && el.textContent.trim() !== "–" ? n : null;
  };
  const line = document.getElementById("p50-line");
  const p99 = document.getElementById("p99-line");
  const points = (l) => l && l.getAttribute("points") ? l.getAttribute("points").trim().split(/\s+/).length : 0;
  const box = line ? line.getBBox() : { width: 0, height: 0 };
  return {
    events_total: num("events-total"),
    runs_total: num("runs-total"),
    connections: num("connections"),
    p50: num("p50"),
    health: document.getElementById("health").textContent,
    p50_points: points(line),
    p99_points: points(p99),
    chart_width: box.width,
    grid_labels: document.querySelectorAll("#grid text").length,
  };
})()"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_numbers_and_draws_the_chart_in_chromium() {
    // A gateway under demo load.
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
        Arc::new(FailOnRequest),
    );
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let load = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let config = DemoConfig {
                users: 20,
                runs: 200,
                disconnect_rate: 0.2,
                step_delay: Duration::from_millis(20),
                flood_pings: 150,
                ..Default::default()
            };
            run_demo(
                &[gateway.event_monitor().clone()],
                &[format!("ws://{addr}/ws")],
                &config,
                Arc::new(DemoProgress::default()),
            )
            .await
        })
    };

    let (mut browser, browser_ws, profile) = launch_chromium().await;
    let mut page = Page::open(&browser_ws, &format!("http://{addr}/")).await;

    // The numbers must move: read until events and runs have grown twice and
    // the chart has several points (the series gains one per second).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut readings: Vec<Value> = Vec::new();
    loop {
        let r = page.eval(READ_DASHBOARD).await;
        if r["events_total"].is_number() {
            readings.push(r.clone());
        }
        let grown = readings
            .windows(2)
            .filter(|w| w[1]["events_total"].as_f64() > w[0]["events_total"].as_f64())
            .count();
        if grown >= 2 && r["p50_points"].as_u64() >= Some(4) && r["p50"].is_number() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dashboard did not come alive: {readings:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let first = &readings[0];
    let last = readings.last().unwrap();
    assert!(last["events_total"].as_f64() > first["events_total"].as_f64());
    assert!(last["runs_total"].as_f64() >= first["runs_total"].as_f64());
    assert!(last["runs_total"].as_f64() > Some(0.0));
    assert!(last["connections"].as_f64() > Some(0.0), "{last}");
    assert!(last["p99_points"].as_u64() >= Some(4), "{last}");
    assert!(last["chart_width"].as_f64() > Some(100.0), "{last}");
    assert!(last["grid_labels"].as_u64() >= Some(1), "{last}");
    assert_ne!(last["health"], "offline", "{last}");

    // The runs panel: a user with a hostile id starts a long run (in
    // flight), a run that fails, and a run that they stop.
    let hostile = "<img src=x onerror=alert(1)>";
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{addr}/ws?user_id=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    ))
    .await
    .unwrap();
    until(&mut ws, MessageType::ConnectionEstablished).await;
    let long = json!({"agent_name": "researcher", "step_delay_ms": 600_000});
    send(&mut ws, MessageType::StartAgent, long.clone()).await;
    let running = until(&mut ws, MessageType::AgentStarted).await["run_id"].clone();
    send(&mut ws, MessageType::StartAgent, json!({"input": "fail"})).await;
    let failed = until(&mut ws, MessageType::AgentError).await;
    assert_eq!(failed["code"], "upstream_error");
    send(&mut ws, MessageType::StartAgent, long).await;
    let stopped = until(&mut ws, MessageType::AgentStarted).await["run_id"].clone();
    send(&mut ws, MessageType::StopAgent, json!({"run_id": stopped})).await;
    assert_eq!(
        until(&mut ws, MessageType::AgentError).await["code"],
        "cancelled"
    );
    let (running, failed_run, stopped) = (
        running.as_str().unwrap().to_owned(),
        failed["run_id"].as_str().unwrap().to_owned(),
        stopped.as_str().unwrap().to_owned(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let panel = loop {
        let panel = page.eval(READ_RUNS).await;
        let listed = |table: &str, run: &str| {
            panel[table]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r[0] == run || r[1] == run))
        };
        if listed("in_flight", &running)
            && listed("ended", &failed_run)
            && listed("ended", &stopped)
        {
            break panel;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runs panel did not show the runs: {panel}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let row = |table: &str, run: &str| -> Vec<String> {
        panel[table]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == run || r[1] == run)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    // run, user, agent, last event, idle, age, events
    let r = row("in_flight", &running);
    assert_eq!(
        (r[1].as_str(), r[2].as_str(), r[3].as_str()),
        (hostile, "researcher", "agent_started"),
        "{r:?}"
    );
    assert_eq!(r[6], "1", "{r:?}");
    // ended, run, user, agent, outcome, reason
    let f = row("ended", &failed_run);
    assert_eq!(
        (f[2].as_str(), f[4].as_str(), f[5].as_str()),
        (
            hostile,
            "failed",
            "upstream_error: the agent answered HTTP 502"
        ),
        "{f:?}"
    );
    let c = row("ended", &stopped);
    assert_eq!(
        (c[4].as_str(), c[5].as_str()),
        ("cancelled", "the run was stopped by its user"),
        "{c:?}"
    );
    assert_eq!(panel["markup"], 0, "user ids are text, not markup: {panel}");
    assert!(
        panel["count"].as_str().unwrap().parse::<u64>().unwrap() >= 1,
        "{panel}"
    );

    // A screenshot of what the browser drew: the whole page.
    let height = page.eval("document.documentElement.scrollHeight").await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": height.as_u64().unwrap_or(900).clamp(900, 4000),
               "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(root.join("target/dashboard.png"), &png).unwrap();
    if std::env::var("WSC_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::write(root.join("docs/dashboard.png"), &png).unwrap();
    }

    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    load.abort();
}

/// The page of the browser client test: loads the built client as ES
/// modules, starts four slow runs, cuts its own connection every fifth
/// frame, reloads itself (the session kept in `sessionStorage`) after the
/// twelfth, and logs every frame's seq, type and run in `sessionStorage`.
const CLIENT_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<script type="module">
import { WscClient } from "/client/index.js";
const gateway = new URLSearchParams(location.search).get("gw");
const phase = sessionStorage.getItem("phase") ?? "1";
const log = JSON.parse(sessionStorage.getItem("log") ?? "[]");
const client = new WscClient({
  url: gateway, userId: "browser", storage: sessionStorage,
  backoff: { initialMs: 20, maxMs: 200 },
});
let count = 0;
let reloading = false;
client.on("resumeRefused", (r) => log.push([-1, "resume_refused", r.reason]));
client.on("frame", (f) => {
  if (f.seq === undefined) return;
  log.push([f.seq, f.type, f.payload.run_id]);
  sessionStorage.setItem("log", JSON.stringify(log));
  count += 1;
  if (phase === "1" && log.length >= 12) {
    sessionStorage.setItem("phase", "2");
    reloading = true;
    location.reload();
  } else if (count % 5 === 0) {
    // Counted only when there is a connection to drop (frames can come in
    // a burst: a second drop in it would find none).
    setTimeout(() => {
      // Not while the page goes away (the reload's resume would be its).
      if (reloading || client.state !== "open") return;
      client.dropConnection();
      const drops = Number(sessionStorage.getItem("drops") ?? "0") + 1;
      sessionStorage.setItem("drops", String(drops));
    }, 0);
  }
});
if (phase === "1") {
  for (let i = 0; i < 4; i++) {
    client.startAgent({ input: `run ${i}`, tools: ["search", "fetch"], stepDelayMs: 30 });
  }
}
window.__result = () => ({ phase, log, drops: Number(sessionStorage.getItem("drops") ?? "0") });
</script>"#;

/// The page of the browser failure test: an invalid URL (its query holds a
/// token), then a gateway path that refuses the handshake (a browser says
/// no status: the client counts its failed opens) with a run started.
const FAILING_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<script type="module">
import { WscClient, WscError } from "/client/index.js";
const gateway = new URLSearchParams(location.search).get("gw");
const result = { unhandled: 0, run: null, failed: null, state: null };
window.addEventListener("unhandledrejection", () => (result.unhandled += 1));
result.invalid = [];
result.leaked = false;
for (const url of ["not a url?token=s3cret", "localhost:8765/ws?token=s3cret"]) {
  try {
    new WscClient({ url, userId: "b" });
    result.invalid.push("no error");
  } catch (e) {
    result.invalid.push(e instanceof WscError ? e.code : String(e));
    result.leaked ||= e.message.includes("s3cret");
  }
}
// A gateway that refuses the token (401): the same bound.
const refused = new WscClient({
  url: new URLSearchParams(location.search).get("jwt"), token: "s3cret", backoff: { initialMs: 20, maxMs: 100 }, maxFailedOpens: 3,
});
refused.on("failed", (e) => (result.leaked ||= e.message.includes("s3cret")));
(async () => {
  try {
    for await (const _ of refused.startAgent({ input: "x" })) {}
    result.unauthorized = "done";
  } catch (e) {
    result.unauthorized = e instanceof WscError ? e.code : String(e);
  }
})();
// A real gateway: close() with a run in flight ends it `closed`.
const good = new WscClient({ url: gateway.replace("/nowhere", "/ws"), userId: "closer" });
const slow = good.startAgent({ input: "slow", tools: ["a", "b"], stepDelayMs: 500 });
good.on("frame", (f) => { if (f.type === "agent_started") good.close(); });
(async () => {
  try {
    for await (const _ of slow) {}
    result.closed = "done";
  } catch (e) {
    result.closed = e instanceof WscError ? e.code : String(e);
  }
})();
// Nothing listens there: the same bound.
const nobody = new WscClient({
  url: new URLSearchParams(location.search).get("nobody"), userId: "b", backoff: { initialMs: 20, maxMs: 100 }, maxFailedOpens: 3,
});
(async () => {
  try {
    for await (const _ of nobody.startAgent({ input: "x" })) {}
    result.nobody = "done";
  } catch (e) {
    result.nobody = e instanceof WscError ? e.code : String(e);
  }
})();
const client = new WscClient({
  url: gateway, userId: "browser", backoff: { initialMs: 20, maxMs: 100 }, maxFailedOpens: 3,
});
client.on("failed", (e) => (result.failed = e.code));
const run = client.startAgent({ input: "x" });
(async () => {
  try {
    for await (const _ of run) {}
    result.run = "done";
  } catch (e) {
    result.run = e instanceof WscError ? e.code : String(e);
  }
  result.state = client.state;
})();
window.__result = () => result;
</script>"#;

/// The page of the browser restart test: a slow run in flight when the
/// gateway is replaced by one that knows no session, then a second run.
const RESTART_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<script type="module">
import { WscClient, WscError } from "/client/index.js";
const gateway = new URLSearchParams(location.search).get("gw");
const result = { unhandled: 0, inFlight: false, first: null, second: null };
window.addEventListener("unhandledrejection", () => (result.unhandled += 1));
const outcome = async (run) => {
  let last = "";
  try {
    for await (const f of run) last = f.type;
    return `done:${last}`;
  } catch (e) {
    return e instanceof WscError ? e.code : String(e);
  }
};
const client = new WscClient({ url: gateway, userId: "phoenix", backoff: { initialMs: 20, maxMs: 200 } });
client.on("frame", (f) => { if (f.type === "agent_started") result.inFlight = true; });
(async () => {
  result.first = await outcome(client.startAgent({ input: "slow", tools: ["a", "b", "c", "d"], stepDelayMs: 500 }));
  result.second = await outcome(client.startAgent({ input: "after", tools: ["a"] }));
})();
window.__result = () => result;
</script>"#;

/// Serves the page and the built client's modules on a free port.
async fn serve_client_page() -> std::net::SocketAddr {
    use axum::extract::Path;
    use axum::http::header;
    use axum::response::IntoResponse;
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript/dist/src");
    assert!(
        dist.join("index.js").exists(),
        "the TypeScript client is not built: run `npm ci && npm run build` in clients/typescript \
         (cargo xtask ci does)"
    );
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { ([(header::CONTENT_TYPE, "text/html")], CLIENT_PAGE) }),
        )
        .route(
            "/restart",
            axum::routing::get(|| async { ([(header::CONTENT_TYPE, "text/html")], RESTART_PAGE) }),
        )
        .route(
            "/failing",
            axum::routing::get(|| async { ([(header::CONTENT_TYPE, "text/html")], FAILING_PAGE) }),
        )
        .route(
            "/client/{file}",
            axum::routing::get(move |Path(file): Path<String>| {
                let dist = dist.clone();
                async move {
                    if file.contains('/') || !file.ends_with(".js") {
                        return axum::http::StatusCode::NOT_FOUND.into_response();
                    }
                    match std::fs::read(dist.join(&file)) {
                        Ok(body) => {
                            ([(header::CONTENT_TYPE, "text/javascript")], body).into_response()
                        }
                        Err(_) => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_resumes_across_cuts_and_a_reload_in_chromium() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig::default());
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let site = serve_client_page().await;

    let (mut browser, browser_ws, profile) = launch_chromium().await;
    let mut page = Page::open(
        &browser_ws,
        &format!("http://{site}/?gw=ws://{gateway_addr}/ws"),
    )
    .await;
    // Four runs of 7 frames: done when 4 have completed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let result = loop {
        let r = page
            .eval("window.__result ? window.__result() : null")
            .await;
        let completed = r["log"].as_array().map_or(0, |log| {
            log.iter().filter(|e| e[1] == "agent_completed").count()
        });
        if completed == 4 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the runs did not finish in the browser: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(result["phase"], "2", "the page reloaded mid-run: {result}");
    let log = result["log"].as_array().unwrap();
    let seqs: Vec<u64> = log.iter().filter_map(|e| e[0].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=28).collect::<Vec<u64>>(),
        "every frame once, in order, across cuts and the reload: {result}"
    );
    let mut runs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in log {
        runs.entry(e[2].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(e[1].as_str().unwrap().to_owned());
    }
    assert_eq!(runs.len(), 4, "{runs:?}");
    for (run, types) in &runs {
        assert_eq!(
            types.first().map(String::as_str),
            Some("agent_started"),
            "{run}: {types:?}"
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("agent_completed"),
            "{run}: {types:?}"
        );
    }
    // The reload resumed, and every drop the page made (a drop after the
    // last frame reconnects after the page is done: waited for).
    let mut drops = 0;
    for _ in 0..50 {
        drops = page.eval("window.__result().drops").await.as_u64().unwrap();
        if gateway.stats().resumes > drops {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drops >= 1, "{result}");
    assert!(
        gateway.stats().resumes > drops,
        "{drops} drops and a reload: {:?}",
        gateway.stats()
    );
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}

/// In Chromium, where a refused handshake gives no status: an invalid URL
/// throws `invalid_url` (its token in no message), and a gateway path that
/// refuses every handshake ends the run and the client with `gave_up`
/// after `maxFailedOpens` — never a run pending forever, no unhandled
/// rejection (and the same where nothing listens, and for a 401); `close()`
/// with a run in flight ends it `closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_gives_up_typed_in_chromium() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig::default());
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    let site = serve_client_page().await;
    let (mut browser, browser_ws, profile) = launch_chromium().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    let jwt = support::start_jwt().await;
    let jwt_addr = jwt.addr;
    let mut page = Page::open(
        &browser_ws,
        &format!(
            "http://{site}/failing?gw=ws://{gateway_addr}/nowhere&nobody=ws://{nobody}/ws&jwt=ws://{jwt_addr}/ws"
        ),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        let r = page
            .eval("window.__result ? window.__result() : null")
            .await;
        let ended = ["state", "closed", "nobody", "unauthorized"];
        if ended.iter().all(|k| !r[*k].is_null()) {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not end in the browser: {r}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        result["invalid"],
        json!(["invalid_url", "invalid_url"]),
        "{result}"
    );
    assert_eq!(result["unauthorized"], "gave_up", "{result}");
    assert_eq!(result["leaked"], false, "{result}");
    assert_eq!(result["run"], "gave_up", "{result}");
    assert_eq!(result["failed"], "gave_up", "{result}");
    assert_eq!(result["state"], "failed", "{result}");
    assert_eq!(result["closed"], "closed", "{result}");
    assert_eq!(result["nobody"], "gave_up", "{result}");
    assert_eq!(result["unhandled"], 0, "{result}");
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}

/// In Chromium: the gateway killed and replaced (its sessions gone) under
/// a run in flight — the run ends `session_lost`, not as if complete, and
/// the next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_ends_the_browsers_run_with_session_lost() {
    let mut first = support::Doomed::start("127.0.0.1:0".parse().unwrap(), || async {
        Gateway::new(GatewayConfig::default())
    });
    let addr = first.addr;
    let site = serve_client_page().await;
    let (mut browser, browser_ws, profile) = launch_chromium().await;
    let mut page = Page::open(
        &browser_ws,
        &format!("http://{site}/restart?gw=ws://{addr}/ws"),
    )
    .await;
    let result_of = async |page: &mut Page, done: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = page
                .eval("window.__result ? window.__result() : null")
                .await;
            if r[done] != Value::Null && r[done] != false {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waiting for {done}: {r}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    result_of(&mut page, "inFlight").await;
    first.kill();
    let _second = support::Doomed::start(addr, || async { Gateway::new(GatewayConfig::default()) });
    let result = result_of(&mut page, "second").await;
    assert_eq!(result["first"], "session_lost", "{result}");
    assert_eq!(result["second"], "done:agent_completed", "{result}");
    assert_eq!(result["unhandled"], 0, "{result}");
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}

// ---- AG-UI in the browser ----

/// Serves the files of `dir` (flat: `/` is `index.html`) on a free port.
async fn serve_dir(dir: PathBuf) -> std::net::SocketAddr {
    use axum::extract::Path;
    use axum::http::header;
    use axum::response::IntoResponse;
    let file = move |name: String| {
        let dir = dir.clone();
        async move {
            let kind = if name.ends_with(".js") {
                "text/javascript"
            } else {
                "text/html"
            };
            match std::fs::read(dir.join(&name)) {
                Ok(body) if !name.contains('/') => {
                    ([(header::CONTENT_TYPE, kind)], body).into_response()
                }
                _ => axum::http::StatusCode::NOT_FOUND.into_response(),
            }
        }
    };
    let index = file.clone();
    let app = axum::Router::new()
        .route("/", axum::routing::get(move || index("index.html".into())))
        .route(
            "/{file}",
            axum::routing::get(move |Path(name): Path<String>| file(name)),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// `examples/ag-ui-web` bundled as its README says (esbuild, from the
/// TypeScript client's dependencies) into a fresh directory.
fn build_ag_ui_example() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let client = root.join("clients/typescript");
    let esbuild = client.join("node_modules/.bin/esbuild");
    assert!(
        esbuild.exists(),
        "the TypeScript client's dependencies are not installed: run `npm ci` in clients/typescript \
         (cargo xtask ci does)"
    );
    let out = std::env::temp_dir().join(format!("wsc-ag-ui-web-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let example = root.join("examples/ag-ui-web");
    std::fs::copy(example.join("index.html"), out.join("index.html")).unwrap();
    let status = std::process::Command::new(&esbuild)
        .arg(example.join("app.ts"))
        .args(["--bundle", "--format=esm", "--log-level=warning"])
        .arg(format!(
            "--alias:@wsc/client={}",
            client.join("src").display()
        ))
        .arg(format!("--outfile={}", out.join("app.js").display()))
        .env("NODE_PATH", client.join("node_modules"))
        .status()
        .expect("esbuild runs");
    assert!(status.success(), "the example page builds");
    out
}

/// The example AG-UI page (`@ag-ui/client` + `WscAgent`) in Chromium
/// against the gateway's simulated agent: it asks, its connection is cut
/// at the 5th event, the page reloads at the 9th, the reloaded page joins
/// the run again (`connectAgent`) and is cut at its 5th: it ends with the
/// whole run, once, in order, and shows the reasoning, the tool call and
/// the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ag_ui_example_page_survives_a_cut_and_a_reload_in_chromium() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig::default());
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let dir = build_ag_ui_example();
    let site = serve_dir(dir.clone()).await;

    let (mut browser, browser_ws, profile) = launch_chromium().await;
    let mut page = Page::open(
        &browser_ws,
        &format!("http://{site}/?gw=ws://{gateway_addr}/ws&user=web&demo"),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let result = loop {
        let r = page
            .eval(
                r#"window.__example ? {...window.__example,
                    reasoning: [...document.querySelectorAll(".message.reasoning")].map(e => e.textContent),
                    tools: [...document.querySelectorAll(".message.tool")].map(e => e.textContent),
                    answers: [...document.querySelectorAll(".message.assistant")].map(e => e.textContent)} : null"#,
            )
            .await;
        if r["finished"] == true {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not finish in the page: {r}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        result["phase"], "rejoined",
        "the page reloaded mid-run: {result}"
    );
    assert!(result["error"].is_null(), "{result}");
    let events: Vec<&str> = result["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        support::SIMULATED_AG_UI_RUN,
        "the whole run once, in order, after the reload: {result}"
    );
    assert_eq!(result["cuts"], 1, "cut once after the reload: {result}");
    let shown = |key: &str, text: &str| {
        result[key]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains(text))
    };
    assert!(shown("reasoning", "planning the answer"), "{result}");
    assert!(shown("tools", "search("), "{result}");
    assert!(
        shown("answers", "You asked: find flights to Lisbon"),
        "{result}"
    );
    assert!(gateway.stats().resumes >= 2, "{:?}", gateway.stats());
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An AG-UI agent with a long answer: 80 text deltas, 20 ms apart.
struct Chatty;

#[async_trait::async_trait]
impl AgentRunner for Chatty {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let input = request.ag_ui.unwrap_or_default();
        let mut events = vec![
            json!({"type": "RUN_STARTED", "threadId": input["threadId"], "runId": input["runId"]}),
            json!({"type": "TEXT_MESSAGE_START", "messageId": "m", "role": "assistant"}),
        ];
        for i in 0..80 {
            events.push(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": format!("word {i} of a long answer, ")}));
        }
        events.push(json!({"type": "TEXT_MESSAGE_END", "messageId": "m"}));
        events.push(
            json!({"type": "RUN_FINISHED", "threadId": input["threadId"], "runId": input["runId"]}),
        );
        for event in events {
            if sink.emit_ag_ui(&event.to_string()).await != Ok(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn speaks_ag_ui(&self) -> bool {
        true
    }
}

const EVENT_SOURCE_PAGE: &str = r#"<!doctype html>
<script>
const params = new URLSearchParams(location.search);
const log = {}, ended = {}, states = [], t0 = Date.now();
let errors = 0;
for (const run of params.get("runs").split(",")) {
  log[run] = [];
  const source = new EventSource(`${params.get("base")}/ag-ui/runs/${run}/events?user_id=web`);
  source.onmessage = (e) => {
    log[run].push([Number(e.lastEventId), e.data]);
    const type = JSON.parse(e.data).type;
    if (type === "RUN_FINISHED" || type === "RUN_ERROR") { ended[run] = true; source.close(); }
  };
  source.onerror = () => { errors += 1; states.push([run, source.readyState, log[run].length, Date.now() - t0]); };
}
window.__sse = () => ({ log, ended: Object.keys(ended).length, errors, states });
</script>"#;

/// A browser's own `EventSource` in Chromium, on another origin (the
/// gateway lists it with `--cors-origin`), reading three AG-UI runs
/// through a proxy that resets every connection at a random byte of its
/// first 8 KB: it reconnects by itself with `Last-Event-ID`, and gets every
/// event of each run exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_in_chromium_resumes_ag_ui_runs_exactly_through_a_cutting_proxy() {
    let config = GatewayConfig {
        http: wsc_server::HttpConfig {
            cors_origins: vec!["*".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let gateway = Gateway::builder(config)
        .runner(Arc::new(Chatty))
        .build()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_addr = listener.local_addr().unwrap();
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let (proxy, stats) = support::byte_cutting_proxy(gateway_addr, 1.0, 23).await;
    // Three runs in flight, started straight at the gateway.
    let runs = ["es-1", "es-2", "es-3"];
    for run in runs {
        let body = json!({"threadId": "t", "runId": run, "messages": [], "tools": [], "context": [], "state": {}, "forwardedProps": {}});
        let mut tcp = tokio::net::TcpStream::connect(gateway_addr).await.unwrap();
        let body = body.to_string();
        let request = format!(
            "POST /ag-ui HTTP/1.1\r\nhost: x\r\nx-wsc-user-id: web\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes())
            .await
            .unwrap();
        // The answer streams on; the run goes on without it.
        let mut head = [0u8; 12];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut head)
            .await
            .unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let page_dir = std::env::temp_dir().join(format!("wsc-event-source-{}", std::process::id()));
    std::fs::create_dir_all(&page_dir).unwrap();
    std::fs::write(page_dir.join("index.html"), EVENT_SOURCE_PAGE).unwrap();
    let site = serve_dir(page_dir.clone()).await;

    let (mut browser, browser_ws, profile) = launch_chromium().await;
    let mut page = Page::open(
        &browser_ws,
        &format!("http://{site}/?base=http://{proxy}&runs={}", runs.join(",")),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let result = loop {
        let r = page.eval("window.__sse ? window.__sse() : null").await;
        if r["ended"] == 3 {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the EventSources did not get the runs' ends: {} ended, {} errors, {}",
            r["ended"],
            r["errors"],
            r["states"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for run in runs {
        let got = result["log"][run].as_array().unwrap();
        let ids: Vec<u64> = got.iter().map(|e| e[0].as_u64().unwrap()).collect();
        assert_eq!(
            ids,
            (1..=84).collect::<Vec<u64>>(),
            "{run}: every event once, in order"
        );
        let data: Vec<Value> = got
            .iter()
            .map(|e| serde_json::from_str(e[1].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(
            data,
            support::ag_ui_run_log(gateway_addr, "web", run).await,
            "{run}"
        );
    }
    let cut = stats.cut.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        cut >= 3 && result["errors"].as_u64() >= Some(3),
        "cut {cut}: {}",
        result["errors"]
    );
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(&page_dir);
}
