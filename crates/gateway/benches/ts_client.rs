//! Frames per second into one Node client: the TypeScript client
//! (`clients/typescript`, built) against a bare `ws` connection to the same
//! release gateway, in the same Node process (the gateway in its own).
//! Prints the Node script's JSON line. Needs `node` and the built client
//! (`npm ci && npm run build` in clients/typescript; `cargo xtask bench`
//! does it).
#![allow(missing_docs)]

mod common;

use std::path::PathBuf;

fn main() {
    common::echo_if_asked();
    let quick = std::env::args().any(|a| a == "--quick");
    let package = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    let script = package.join("dist/bench/throughput.js");
    assert!(
        script.exists(),
        "the TypeScript client is not built: run `npm ci && npm run build` in clients/typescript"
    );
    let gateway = common::Server::start_gateway(&[
        "--max-messages-per-minute",
        "1000000",
        "--max-messages-per-hour",
        "100000000",
    ]);
    let node = std::env::var_os("WSC_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
    let runs = if quick { "50" } else { "300" };
    let output = std::process::Command::new(node)
        .arg(&script)
        .arg(format!("ws://{}/ws", gateway.addr))
        .arg(runs)
        .current_dir(&package)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the Node benchmark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    eprintln!("typescript client vs bare ws: {line}");
    println!("{line}");
}
