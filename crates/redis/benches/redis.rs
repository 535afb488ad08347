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
use wsc_redis::{RedisRateLimitStore, connect};

const IN_FLIGHT: usize = 64;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let redis = rt.block_on(connect(&server.url())).unwrap();
    let store = RedisRateLimitStore::new(redis.clone(), "bench:");
    // The gateway's default windows: 120 a minute and 3 600 an hour, with
    // limits high enough that every decision admits and records.
    let windows = [
        WindowLimit::new(Duration::from_secs(60), 1_000_000_000),
        WindowLimit::new(Duration::from_secs(3_600), 1_000_000_000),
    ];
    let start = Instant::now();
    let now = move || {
        Timestamp::from_unix_micros(1_764_000_000_000_000 + start.elapsed().as_micros() as i64)
    };
    let decide = |key: String| {
        let store = store.clone();
        async move {
            let request = WindowRequest {
                key: &key,
                windows: &windows,
                burst: 0,
                now: now(),
                record: true,
            };
            store.decide(request).await.unwrap()
        }
    };
    let incr = |key: String| {
        let mut redis = redis.clone();
        async move {
            redis::cmd("INCR")
                .arg(key)
                .query_async::<i64>(&mut redis)
                .await
                .unwrap()
        }
    };

    let mut g = c.benchmark_group("redis_one_client");
    g.throughput(Throughput::Elements(1));
    g.bench_function("INCR (anchor)", |b| {
        b.to_async(&rt).iter(|| incr("bench:incr".into()))
    });
    g.bench_function("wsc decide, two windows", |b| {
        b.to_async(&rt).iter(|| decide("user-1".into()))
    });
    g.finish();

    let mut g = c.benchmark_group("redis_pipelined_64");
    g.throughput(Throughput::Elements(IN_FLIGHT as u64));
    g.bench_function("INCR (anchor)", |b| {
        b.to_async(&rt)
            .iter(|| join_all((0..IN_FLIGHT).map(|i| incr(format!("bench:incr:{i}")))))
    });
    g.bench_function("wsc decide, two windows", |b| {
        b.to_async(&rt)
            .iter(|| join_all((0..IN_FLIGHT).map(|i| decide(format!("user-{i}")))))
    });
    g.finish();

    let Ok(cluster_url) = std::env::var("WSC_REDIS_CLUSTER_URL") else {
        return;
    };
    let cluster = rt.block_on(connect(&cluster_url)).unwrap();
    let store = RedisRateLimitStore::new(cluster.clone(), "bench:");
    let decide = |key: String| {
        let store = store.clone();
        async move {
            let request = WindowRequest {
                key: &key,
                windows: &windows,
                burst: 0,
                now: now(),
                record: true,
            };
            store.decide(request).await.unwrap()
        }
    };
    let incr = |key: String| {
        let mut redis = cluster.clone();
        async move {
            redis::cmd("INCR")
                .arg(key)
                .query_async::<i64>(&mut redis)
                .await
                .unwrap()
        }
    };
    let mut g = c.benchmark_group("redis_cluster_64");
    g.throughput(Throughput::Elements(IN_FLIGHT as u64));
    g.bench_function("INCR (anchor)", |b| {
        b.to_async(&rt)
            .iter(|| join_all((0..IN_FLIGHT).map(|i| incr(format!("bench:incr:{i}")))))
    });
    g.bench_function("wsc decide, two windows", |b| {
        b.to_async(&rt)
            .iter(|| join_all((0..IN_FLIGHT).map(|i| decide(format!("user-{i}")))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
