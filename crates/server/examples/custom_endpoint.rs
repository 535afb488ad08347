//! Your own axum agent endpoint (your authentication, your agent) made
//! resumable by the adapter, and a `ResilientClient` talking to it through
//! a connection cut: every frame arrives once, in order.
//!
//! `cargo run -p wsc-server --example custom_endpoint`

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wsc_core::{MessageType as T, WebSocketMessage};
use wsc_reconnection::{ClientConfig, ClientEvent, ResilientClient};
use wsc_server::{AgentRequest, AgentRunner, AgentStreams, EventSink, Gateway, ResumeQuery};

/// Your agent: one chunk per word of the input.
struct Echo;

#[async_trait::async_trait]
impl AgentRunner for Echo {
    async fn run(&self, request: AgentRequest, sink: EventSink) {
        let call = json!({"tool_name": "split", "tool_call_id": "c1"});
        let mut steps = vec![(T::AgentStarted, json!({})), (T::AgentThinking, json!({}))];
        steps.extend([(T::ToolExecuting, call.clone()), (T::ToolCompleted, call)]);
        let words = request.input.split_whitespace();
        steps.extend(words.map(|w| (T::AgentResponseChunk, json!({ "content": w }))));
        steps.push((T::AgentCompleted, json!({})));
        for (event, payload) in steps {
            tokio::time::sleep(Duration::from_millis(20)).await;
            sink.emit(event, payload).await;
        }
    }
}

async fn endpoint(
    State(streams): State<AgentStreams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    ResumeQuery(resume): ResumeQuery,
    ws: WebSocketUpgrade,
) -> Response {
    // Your authentication (a toy one here).
    let Some(user) = query.get("token").and_then(|t| t.strip_prefix("demo-")) else {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    };
    let on_open = |mut stream: wsc_server::AgentStream| {
        tokio::spawn(async move {
            while let Some(request) = stream.next_request().await {
                stream.start_run(&request, Arc::new(Echo)).await;
            }
        });
    };
    streams.upgrade(ws, user, peer.ip(), resume, on_open).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let gateway = Gateway::new(Default::default());
    let app = axum::Router::new()
        .route("/agent", axum::routing::get(endpoint))
        .with_state(gateway.streams())
        .into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/agent", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = ClientConfig::new(url).with_query("token", "demo-ann");
    let mut client = ResilientClient::connect(config);
    let start = WebSocketMessage::new(T::StartAgent, json!({"input": "every word once"}));
    client.send(start.with_message_id("m1"));
    let mut seqs = Vec::new();
    while let Some(event) = client.recv().await {
        let ClientEvent::Frame(frame) = event else {
            continue;
        };
        println!("{:?} {:?}", frame.seq, frame.message_type);
        seqs.extend(frame.seq);
        if seqs.len() == 3 {
            client.drop_connection(); // a cut: the client resumes on its own
        }
        if frame.message_type == T::AgentCompleted {
            break;
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "once, in order");
    assert_eq!(client.stats().resumes, 1, "the cut was resumed");
    println!("{:?}", client.stats());
    Ok(())
}
