//! Our check-and-record beside `governor`'s keyed limiter (DashMap state
//! store, same quota) in the same group: one hot key and 100 000 keys, one
//! and two threads; one window (per minute) and two (minute and hour).

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use serde_json::json;
use wsc_core::{MessageType, WebSocketMessage};
use wsc_rate_limiter::{RateLimitConfig, WebSocketRateLimiter};

const PER_MINUTE: u32 = 60;
const PER_HOUR: u32 = 1_000;

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("in-memory decisions never wait"),
    }
}

fn ours(windows: usize) -> WebSocketRateLimiter {
    WebSocketRateLimiter::new(RateLimitConfig {
        max_messages_per_minute: PER_MINUTE,
        max_messages_per_hour: if windows == 2 { PER_HOUR } else { 0 },
        max_tracked_users: 200_000,
        ..Default::default()
    })
}

/// Runs `iters` operations split over `threads` threads, each walking the
/// keys from its own offset; returns the wall time.
fn spread(iters: u64, threads: usize, keys: &[String], op: &(dyn Fn(&String) + Sync)) -> Duration {
    let per = iters / threads as u64 + 1;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut i = t * 7919 % keys.len();
                for _ in 0..per {
                    op(&keys[i]);
                    i += 1;
                    if i == keys.len() {
                        i = 0;
                    }
                }
            });
        }
    });
    start.elapsed()
}

fn decisions(c: &mut Criterion) {
    let msg = WebSocketMessage::new(MessageType::Chat, json!({}));
    for (label, n_keys) in [("hot_key", 1usize), ("100k_keys", 100_000)] {
        let keys: Vec<String> = (0..n_keys).map(|i| format!("user-{i:06}")).collect();
        let mut group = c.benchmark_group(format!("rate_limiter/{label}"));
        group.throughput(Throughput::Elements(1));
        for threads in [1usize, 2] {
            let gov = RateLimiter::dashmap(Quota::per_minute(
                NonZeroU32::new(PER_MINUTE).expect("non-zero"),
            ));
            group.bench_with_input(BenchmarkId::new("governor", threads), &threads, |b, &t| {
                b.iter_custom(|iters| {
                    spread(iters, t, &keys, &|k| {
                        black_box(gov.check_key(k).is_ok());
                    })
                })
            });
            for windows in [1usize, 2] {
                let limiter = ours(windows);
                let name = format!(
                    "wsc_{windows}_window{}",
                    if windows == 2 { "s" } else { "" }
                );
                group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &t| {
                    b.iter_custom(|iters| {
                        spread(iters, t, &keys, &|k| {
                            black_box(ready(limiter.record_message(k, &msg)).is_ok());
                        })
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, decisions);
criterion_main!(benches);
