//! The dashboard in a real browser: headless Chromium, driven over the
//! Chrome DevTools Protocol (a WebSocket, so tokio-tungstenite is the whole
//! driver), loads `GET /` while demo load runs, checks that the numbers move
//! and the latency chart draws, and saves a screenshot to
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
use wsc_loadgen::{DemoConfig, DemoProgress, run_demo};
use wsc_server::{Gateway, GatewayConfig};

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
    let browser_path = chromium();

    // A gateway under demo load.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig {
        max_handshakes_per_ip: 0,
        ..Default::default()
    });
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

    // Headless Chromium with the DevTools endpoint on a free port.
    let profile = std::env::temp_dir().join(format!("wsc-chromium-{}", std::process::id()));
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

    // A screenshot of what the browser drew.
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
