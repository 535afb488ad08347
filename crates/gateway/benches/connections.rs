//! The gateway with 100, 1 000 and 10 000 idle WebSocket connections: its
//! resident memory per connection and ping→pong round trips on 100 of them
//! while all stay open. The release `wsc-gateway serve` runs in its own
//! process so its memory is its own. Prints one JSON object per line.
#![allow(missing_docs)]

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Asks a connection's task for one round trip.
type Probe = oneshot::Sender<Duration>;

/// Opens one connection and keeps it alive (answering the gateway's
/// heartbeats) in a task; returns the channel that asks it for a round trip.
async fn open(addr: &str, i: usize) -> mpsc::Sender<Probe> {
    let url = format!("ws://{addr}/ws?user_id=idle-{i}");
    let (ws, _) = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (tx, mut rx) = mpsc::channel::<Probe>(1);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let mut waiting: Option<(Instant, Probe)> = None;
        loop {
            tokio::select! {
                probe = rx.recv() => match probe {
                    Some(p) => {
                        let ping = r#"{"type":"ping","payload":{}}"#;
                        if sink.send(Message::text(ping)).await.is_err() { return; }
                        waiting = Some((Instant::now(), p));
                    }
                    None => return,
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(t))) if t.contains("\"pong\"") => {
                        if let Some((at, p)) = waiting.take() {
                            let _ = p.send(at.elapsed());
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    });
    tx
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = common::Server::start_gateway(&[]);
    let addr = server.addr.clone();
    rt.block_on(async {
        let mut conns = vec![open(&addr, 0).await];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base = server.rss();
        for target in [100usize, 1_000, 10_000] {
            while conns.len() < target {
                let batch = (target - conns.len()).min(200);
                let start = conns.len();
                let opened =
                    futures_util::future::join_all((start..start + batch).map(|i| open(&addr, i)))
                        .await;
                conns.extend(opened);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let per = server.rss().saturating_sub(base) as f64 / (conns.len() - 1) as f64;
            let mut rtts = Vec::new();
            let step = (conns.len() / 100).max(1);
            for _ in 0..5 {
                for c in conns.iter().step_by(step).take(100) {
                    let (tx, rx) = oneshot::channel();
                    if c.send(tx).await.is_ok()
                        && let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(5), rx).await
                    {
                        rtts.push(d.as_nanos() as u64);
                    }
                }
            }
            rtts.sort_unstable();
            println!(
                "{}",
                json!({
                    "connections": conns.len(),
                    "bytes_per_connection": per,
                    "rtt_p50_ns": common::quantile(&rtts, 0.5),
                    "rtt_p99_ns": common::quantile(&rtts, 0.99),
                    "samples": rtts.len(),
                })
            );
        }
    });
}
