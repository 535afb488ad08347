//! AG-UI clients in Node reading the same runs from a fast local AG-UI
//! backend directly and through the release gateway (in its own process,
//! the backend in this one): a lean client (fetch, split SSE, JSON.parse)
//! on the backend and on `POST /ag-ui`, a lean WebSocket client on the
//! AG-UI dialect, `@ag-ui/client`'s `HttpAgent` on both, and `WscAgent`.
//! Each run: `RUN_STARTED`, a tool call, 200 text deltas, `RUN_FINISHED`.
//! Prints the Node script's JSON line (`clients/typescript/bench/ag-ui.ts`).
//! Needs `node` and the built client (`cargo xtask bench` builds it).
#![allow(missing_docs)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// Text deltas per run.
const DELTAS: usize = 200;

/// One run of the backend, as SSE.
fn run_body(input: &Value) -> String {
    let (thread, run) = (&input["threadId"], &input["runId"]);
    let mut events = vec![
        json!({"type": "RUN_STARTED", "threadId": thread, "runId": run}),
        json!({"type": "TOOL_CALL_START", "toolCallId": "c1", "toolCallName": "search"}),
        json!({"type": "TOOL_CALL_ARGS", "toolCallId": "c1", "delta": "{\"q\":\"go\"}"}),
        json!({"type": "TOOL_CALL_END", "toolCallId": "c1"}),
        json!({"type": "TOOL_CALL_RESULT", "messageId": "r1", "toolCallId": "c1", "content": "found"}),
        json!({"type": "TEXT_MESSAGE_START", "messageId": "m1", "role": "assistant"}),
    ];
    for i in 0..DELTAS {
        events.push(json!({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m1", "delta": format!("word{i} ")}));
    }
    events.push(json!({"type": "TEXT_MESSAGE_END", "messageId": "m1"}));
    events.push(json!({"type": "RUN_FINISHED", "threadId": thread, "runId": run}));
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

/// The backend, on its own runtime thread: every request gets a whole run
/// at once.
fn start_backend() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/",
                axum::routing::post(|body: String| async move {
                    let input: Value = serde_json::from_str(&body).unwrap_or_default();
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        Body::from(run_body(&input)),
                    )
                        .into_response()
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("the bench waits");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    rx.recv().expect("the backend starts")
}

fn main() {
    common::echo_if_asked();
    let quick = std::env::args().any(|a| a == "--quick");
    let backend = start_backend();
    let gateway = common::Server::start_gateway(&[
        "--agent-url",
        &format!("http://{backend}/"),
        "--agent-protocol",
        "ag-ui",
        "--max-messages-per-minute",
        "0",
        "--max-messages-per-hour",
        "0",
        "--run-retention",
        "2",
    ]);
    let (users, runs, rounds) = if quick {
        ("20", "5", "1")
    } else {
        ("50", "10", "5")
    };
    common::node_bench(
        "dist/bench/ag-ui.js",
        &[
            format!("http://{backend}/"),
            format!("http://{}", gateway.addr),
            format!("ws://{}/ws", gateway.addr),
            users.to_owned(),
            runs.to_owned(),
            rounds.to_owned(),
            gateway.child.id().to_string(),
            common::clock_ticks().to_string(),
        ],
        "AG-UI clients",
    );
}
