//! End to end at a fixed offered load: the demo's users and agent runs
//! through the gateway, and the same users sending the same number of
//! frames at the same pace through a bare tokio-tungstenite echo server.
//! Each server runs in its own process; its CPU time is read from /proc.
//! The two alternate for several rounds (a shared machine's noise moves
//! both alike within a round); each server's row is its median round, and
//! a last line gives the median of the rounds' CPU ratios. Prints one JSON
//! object per line.
#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use wsc_loadgen::{DemoConfig, DemoProgress, run_demo};

const USERS: usize = 100;
const STEP: Duration = Duration::from_millis(20);

fn main() {
    common::echo_if_asked();
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, rounds) = if quick { (5, 1) } else { (20, 5) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = DemoConfig {
        users: USERS,
        runs,
        disconnect_rate: 0.0,
        step_delay: STEP,
        flood_pings: 0,
        seed: Some(1),
        ..Default::default()
    };
    let per_user = runs as u64 * config.events_per_run();
    let mut gateway_rows = Vec::new();
    let mut echo_rows = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let gateway = gateway_round(&rt, &config);
        let echo = echo_round(&rt, per_user);
        ratios.push(cpu(&gateway) / cpu(&echo));
        gateway_rows.push(gateway);
        echo_rows.push(echo);
    }
    println!("{}", median_row(gateway_rows));
    println!("{}", median_row(echo_rows));
    ratios.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "server": "ratio",
            "rounds": rounds,
            "cpu_ratio_median": ratios[ratios.len() / 2],
            "cpu_ratios": ratios,
        })
    );
}

fn cpu(row: &Value) -> f64 {
    row["cpu_ms_per_1000"].as_f64().unwrap_or(f64::NAN)
}

/// The round whose CPU per 1 000 events is the median.
fn median_row(mut rows: Vec<Value>) -> Value {
    rows.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    rows.swap_remove(rows.len() / 2)
}

/// The gateway: agent runs, no drops, no flood.
fn gateway_round(rt: &Runtime, config: &DemoConfig) -> Value {
    let gateway = common::Server::start_gateway(&[
        "--max-messages-per-minute",
        "0",
        "--max-messages-per-hour",
        "0",
    ]);
    let cpu0 = gateway.cpu_seconds();
    let report = rt.block_on(run_demo(
        &[],
        &[format!("ws://{}/ws", gateway.addr)],
        config,
        Arc::new(DemoProgress::default()),
    ));
    let cpu = gateway.cpu_seconds() - cpu0;
    assert!(report.passed(), "{}", report.to_table());
    json!({
        "server": "wsc gateway (agent runs)",
        "messages": report.events,
        "per_second": report.events_per_second,
        "p50_ns": report.p50_latency_ms * 1e6,
        "p99_ns": report.p99_latency_ms * 1e6,
        "cpu_ms_per_1000": cpu * 1e3 / (report.events as f64 / 1e3),
    })
}

/// The bare echo: the same users, frames and pace.
fn echo_round(rt: &Runtime, per_user: u64) -> Value {
    let echo = common::Server::start_echo();
    let url = format!("ws://{}/", echo.addr);
    let cpu0 = echo.cpu_seconds();
    let started = Instant::now();
    let latencies = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..USERS {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                let mut out = Vec::with_capacity(per_user as usize);
                let mut tick = tokio::time::interval(STEP);
                for i in 0..per_user {
                    tick.tick().await;
                    let sent = Instant::now();
                    let body = json!({"type": "agent_thinking", "payload": {"i": i}}).to_string();
                    ws.send(Message::text(body)).await.unwrap();
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(_))) => break,
                            Some(Ok(_)) => continue,
                            other => panic!("echo ended: {other:?}"),
                        }
                    }
                    out.push(sent.elapsed().as_nanos() as u64);
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = echo.cpu_seconds() - cpu0;
    let mut sorted = latencies;
    sorted.sort_unstable();
    let messages = sorted.len() as f64;
    json!({
        "server": "bare tokio-tungstenite echo (same frames)",
        "messages": sorted.len(),
        "per_second": messages / elapsed,
        "p50_ns": common::quantile(&sorted, 0.5),
        "p99_ns": common::quantile(&sorted, 0.99),
        "cpu_ms_per_1000": cpu * 1e3 / (messages / 1e3),
    })
}
