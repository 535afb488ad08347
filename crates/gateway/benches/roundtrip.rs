//! ping -> pong round trips through the full gateway (parse, rate limit,
//! perf tracking, reply through the writer task) beside a bare
//! tokio-tungstenite echo server, same client, same run; 1 and 100
//! connections. Also prints p50/p99 round-trip latency of both.

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use wsc_server::{Gateway, GatewayConfig};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const PING: &str = r#"{"type":"ping","payload":{"n":1}}"#;

async fn start_gateway() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let gateway = Gateway::new(GatewayConfig {
        // Message windows disabled: the bench measures the path, not the limit.
        limits: wsc_server::LimitsConfig {
            max_messages_per_minute: 0,
            max_messages_per_hour: 0,
            max_connections_per_user: 1_000,
            ..Default::default()
        },
        http: wsc_server::HttpConfig {
            heartbeat_interval: Duration::from_secs(3600),
            ..Default::default()
        },
        ..Default::default()
    });
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    addr
}

async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // As the gateway's sockets: no Nagle delay on small frames.
            let _ = stream.set_nodelay(true);
            tokio::spawn(common::echo_connection(stream));
        }
    });
    addr
}

async fn clients(url: &str, n: usize, gateway: bool) -> Vec<Ws> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (mut ws, _) = connect_async(format!("{url}?user_id=bench-{i}"))
            .await
            .expect("connect");
        if gateway {
            let _hello = ws.next().await; // connection_established
        }
        out.push(ws);
    }
    out
}

async fn round_trip(ws: &mut Ws) {
    ws.send(Message::text(PING)).await.expect("send");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(_))) => return,
            Some(Ok(_)) => continue,
            other => panic!("connection lost: {other:?}"),
        }
    }
}

/// `iters` round trips spread over the connections, concurrently.
async fn run(conns: &mut [Ws], iters: u64) -> Duration {
    let per = iters.div_ceil(conns.len() as u64);
    let start = Instant::now();
    futures_util::future::join_all(conns.iter_mut().map(|ws| async move {
        for _ in 0..per {
            round_trip(ws).await;
        }
    }))
    .await;
    start.elapsed()
}

fn percentiles(rt: &Runtime, conns: &mut [Ws]) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(4_000);
    rt.block_on(async {
        for _ in 0..4_000 {
            let t = Instant::now();
            round_trip(&mut conns[0]).await;
            samples.push(t.elapsed());
        }
    });
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (gw, echo) = rt.block_on(async { (start_gateway().await, start_echo().await) });
    let mut group = c.benchmark_group("gateway/ping_pong");
    group.throughput(Throughput::Elements(1));
    for n in [1usize, 100] {
        let mut gw_conns = rt.block_on(clients(&format!("ws://{gw}/ws"), n, true));
        let mut echo_conns = rt.block_on(clients(&format!("ws://{echo}/"), n, false));
        group.bench_function(BenchmarkId::new("bare_echo", n), |b| {
            b.iter_custom(|iters| rt.block_on(run(&mut echo_conns, iters)))
        });
        group.bench_function(BenchmarkId::new("wsc_gateway", n), |b| {
            b.iter_custom(|iters| rt.block_on(run(&mut gw_conns, iters)))
        });
        if n == 1 {
            let (ep50, ep99) = percentiles(&rt, &mut echo_conns);
            let (gp50, gp99) = percentiles(&rt, &mut gw_conns);
            eprintln!(
                "round trip, 1 connection: bare echo p50 {ep50:?} p99 {ep99:?}; gateway p50 {gp50:?} p99 {gp99:?}; \
                 added p50 {:?} p99 {:?}",
                gp50.saturating_sub(ep50),
                gp99.saturating_sub(ep99)
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
