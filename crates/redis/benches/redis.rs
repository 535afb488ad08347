//! Rate-limit decisions per second through Redis, beside a plain `INCR` on
//! the same server in the same run: one client awaiting each call, and 64
//! calls in flight on the multiplexed connection (pipelined; decisions are
//! batched into one script call). With `WSC_REDIS_CLUSTER_URL` (as
//! `cargo xtask bench` sets) the same 64 in flight on a Redis Cluster,
//! beside `INCR` on the cluster.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use wsc_core::Timestamp;
use wsc_rate_limiter::{RateLimitStore, WindowLimit, WindowRequest};
use wsc_redis::testing::RedisServer;
use wsc_redis::{RedisConnection, RedisRateLimitStore, connect};

const IN_FLIGHT: usize = 64;

/// A decision (the gateway's two windows, recording) and an `INCR`, each
/// as a future, on one connection.
struct Calls {
    redis: RedisConnection,
    store: RedisRateLimitStore,
    windows: [WindowLimit; 2],
    start: Instant,
}

impl Calls {
    fn new(redis: RedisConnection) -> Self {
        Calls {
            store: RedisRateLimitStore::new(redis.clone(), "bench:"),
            redis,
            // The gateway's default windows (a minute and an hour), with
            // limits high enough that every decision admits and records.
            windows: [
                WindowLimit::new(Duration::from_secs(60), 1_000_000_000),
                WindowLimit::new(Duration::from_secs(3_600), 1_000_000_000),
            ],
            start: Instant::now(),
        }
    }

    async fn decide(&self, key: String) {
        let now = Timestamp::from_unix_micros(
            1_764_000_000_000_000 + self.start.elapsed().as_micros() as i64,
        );
        let request = WindowRequest {
            key: &key,
            windows: &self.windows,
            burst: 0,
            now,
            record: true,
        };
        self.store.decide(request).await.unwrap();
    }

    async fn incr(&self, key: String) {
        let mut redis = self.redis.clone();
        redis::cmd("INCR")
            .arg(key)
            .query_async::<i64>(&mut redis)
            .await
            .unwrap();
    }

    /// `name`: `INCR` and decisions, [`IN_FLIGHT`] at a time.
    fn in_flight(&self, c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str) {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(IN_FLIGHT as u64));
        g.bench_function("INCR (anchor)", |b| {
            b.to_async(rt)
                .iter(|| join_all((0..IN_FLIGHT).map(|i| self.incr(format!("bench:incr:{i}")))))
        });
        g.bench_function("wsc decide, two windows", |b| {
            b.to_async(rt)
                .iter(|| join_all((0..IN_FLIGHT).map(|i| self.decide(format!("user-{i}")))))
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let calls = Calls::new(rt.block_on(connect(&server.url())).unwrap());

    let mut g = c.benchmark_group("redis_one_client");
    g.throughput(Throughput::Elements(1));
    g.bench_function("INCR (anchor)", |b| {
        b.to_async(&rt).iter(|| calls.incr("bench:incr".into()))
    });
    g.bench_function("wsc decide, two windows", |b| {
        b.to_async(&rt).iter(|| calls.decide("user-1".into()))
    });
    g.finish();
    calls.in_flight(c, &rt, "redis_pipelined_64");

    if let Ok(url) = std::env::var("WSC_REDIS_CLUSTER_URL") {
        let cluster = Calls::new(rt.block_on(connect(&url)).unwrap());
        cluster.in_flight(c, &rt, "redis_cluster_64");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
