//! Frames per second into one Node client: the TypeScript client
//! (`clients/typescript`, built) against a bare `ws` connection to the same
//! release gateway, in the same Node process (the gateway in its own).
//! Prints the Node script's JSON line. Needs `node` and the built client
//! (`npm ci && npm run build` in clients/typescript; `cargo xtask bench`
//! does it).
#![allow(missing_docs)]

mod common;

fn main() {
    common::echo_if_asked();
    let quick = std::env::args().any(|a| a == "--quick");
    let gateway = common::Server::start_gateway(&[
        "--max-messages-per-minute",
        "1000000",
        "--max-messages-per-hour",
        "100000000",
    ]);
    let runs = if quick { "50" } else { "300" };
    common::node_bench(
        "dist/bench/throughput.js",
        &[format!("ws://{}/ws", gateway.addr), runs.to_owned()],
        "typescript client vs bare ws",
    );
}
