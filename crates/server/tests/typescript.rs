//! The TypeScript client (`clients/typescript`, `@wsc/client`) in Node:
//! its unit tests (fake socket, fake timers), then 50 clients × 5 agent
//! runs against this gateway while each client cuts its own connection
//! every few frames: every frame exactly once, in order, every run whole.
//! `cargo xtask ci` installs its npm dependencies (`npm ci`), builds it and
//! passes `node` in `WSC_NODE`.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use tokio::net::TcpListener;
use wsc_server::{Gateway, GatewayConfig};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_get_every_frame_once_and_in_order_across_cuts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig {
        // Fifty users from this one address.
        max_handshakes_per_ip: 0,
        max_messages_per_ip_per_minute: Some(0),
        ..Default::default()
    });
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let output = tokio::process::Command::new(node())
        .arg("dist/integration/run.js")
        .arg(format!("ws://{addr}/ws"))
        .args(["50", "5", "4"])
        .current_dir(package())
        .output()
        .await
        .expect("node runs");
    let stdout = check(&output, "the Node clients");
    let line = stdout.lines().last().unwrap_or_default();
    let total: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"));
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
    assert!(total["drops"].as_u64() > Some(100), "cut often: {total}");
    assert!(gateway.stats().resumes > 100, "{:?}", gateway.stats());
}
