//! A client in another language: Python's `websockets` runs a session and a
//! resume against the gateway. `cargo xtask ci` prepares the interpreter (a
//! venv under `target/pyenv` with `websockets`) and passes it in
//! `WSC_PYTHON`.

use std::path::PathBuf;

use tokio::net::TcpListener;
use wsc_server::{Gateway, GatewayConfig};

mod support;
use support::python;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_runs_a_session_and_a_resume() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gateway = Gateway::new(GatewayConfig::default());
    let g = gateway.clone();
    tokio::spawn(async move { g.serve(listener, std::future::pending()).await });
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/session_and_resume.py");
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .arg(format!("ws://{addr}/ws"))
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("\"seqs\": [1, 2, 3, 4, 5, 6, 7]"),
        "{stdout}"
    );
    assert_eq!(gateway.stats().resumes, 1);
}
