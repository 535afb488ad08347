//! `wsc-scale-client`: holds many connections open against wsc gateways
//! (a [`wsc_loadgen::Hold`]) and answers commands on its standard input,
//! one per line, with one JSON object per line on its standard output:
//!
//! - `status` — what it saw so far ([`wsc_loadgen::HoldStatus`]);
//! - `load CONNECTIONS TOOLS STEP_DELAY_MS` — its first CONNECTIONS
//!   connections keep running agent runs, one after another (`load 0 0 0`
//!   stops starting new ones);
//! - `reset` — forgets run counts and latencies;
//! - `fanout ID` — publishes `agent_progress {"fanout": ID}` to each of its
//!   users through `POST /api/publish` (`--api`, `--api-key`) and answers
//!   when every publish was answered;
//! - `quit` — ends.
//!
//! `cargo xtask scale` starts several, each connecting to its own loopback
//! address of the gateways (every process has the kernel's ~28 000
//! ephemeral ports towards each of its destinations).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use wsc_loadgen::{Hold, HoldConfig, RunLoad, fanout_body};

/// Holds connections open against wsc gateways; commands on stdin.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A gateway's WebSocket URL (repeat for several).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Connections to open, each its own user.
    #[arg(long)]
    connections: usize,
    /// The first connection's index (user ids are PREFIX + index).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// The user ids' prefix.
    #[arg(long, default_value = "scale-")]
    prefix: String,
    /// The local address to connect from (bound before connecting: for
    /// thousands of connections, prefer several destination addresses).
    #[arg(long)]
    from: Option<IpAddr>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 128)]
    open_at_once: usize,
    /// A gateway's HTTP base URL for `fanout` (repeat for several).
    #[arg(long = "api")]
    apis: Vec<String>,
    /// The gateways' `--api-key`.
    #[arg(long, env = "WSC_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One thread: the client is meant to be cheap next to the gateways.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let hold = Hold::start(HoldConfig {
        first: args.first,
        user_prefix: args.prefix.clone(),
        local_address: args.from,
        open_at_once: args.open_at_once,
        ..HoldConfig::new(args.urls.clone(), args.connections)
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["status"] => serde_json::to_value(hold.status())?,
            ["load", connections, tools, delay] => {
                hold.set_load(RunLoad {
                    connections: connections.parse().context("load CONNECTIONS")?,
                    tools: tools.parse().context("load TOOLS")?,
                    step_delay_ms: delay.parse().context("load STEP_DELAY_MS")?,
                });
                json!({"ok": true})
            }
            ["reset"] => {
                hold.reset();
                json!({"ok": true})
            }
            ["fanout", id] => {
                let id: u64 = id.parse().context("fanout ID")?;
                hold.expect_fanout(id);
                fanout(&hold, &args, id).await?
            }
            ["quit"] => break,
            _ => bail!("unknown command: {line}"),
        };
        println!("{answer}");
    }
    Ok(())
}

/// Publishes fan-out frame `id` to every user of `hold`, 64 at a time.
async fn fanout(hold: &Hold, args: &Args, id: u64) -> anyhow::Result<serde_json::Value> {
    if args.apis.is_empty() {
        bail!("fanout needs --api");
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let key = args.api_key.clone().unwrap_or_default();
    let (published, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for (k, user) in hold.users().enumerate() {
        let permit = limit.clone().acquire_owned().await?;
        let request = hyper::Request::post(format!(
            "{}/api/publish",
            args.apis[k % args.apis.len()].trim_end_matches('/')
        ))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(fanout_body(&user, id))))?;
        let (client, published, failed) = (client.clone(), published.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let ok = matches!(client.request(request).await, Ok(r) if r.status().is_success());
            let counter = if ok { &published } else { &failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        }));
    }
    for task in tasks {
        task.await?;
    }
    Ok(json!({
        "published": published.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
    }))
}
