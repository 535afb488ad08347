//! Telemetry for `/api/stats` and the dashboard: the delivery latency of
//! live agent events, and a one-sample-per-second series of the last
//! minutes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::counters::GatewayStats;

/// Samples kept: five minutes at one per second.
pub(crate) const SERIES_LEN: usize = 300;

/// One point of the dashboard's series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StatsSample {
    /// When it was taken, Unix seconds.
    pub t: f64,
    /// Open WebSocket connections.
    pub connections: u64,
    /// Sessions held (attached or resumable).
    pub sessions: u64,
    /// Agent runs started per second over the last interval.
    pub runs_per_s: f64,
    /// Frames sent per second over the last interval.
    pub events_per_s: f64,
    /// Median delivery latency of live agent events in the interval, ms
    /// (from the agent emitting an event to its frame being written).
    pub p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_ms: f64,
    /// Live events whose latency was measured in the interval.
    pub latency_samples: u64,
}

struct Inner {
    /// Latency of the current interval, µs, merged from the shards.
    interval: Histogram<u64>,
    /// Every latency since start, µs (merged from the intervals), and
    /// their exact sum: the exported histogram.
    total: Histogram<u64>,
    total_sum_us: u64,
    series: VecDeque<StatsSample>,
    last: Option<(f64, GatewayStats)>,
}

/// Latency shards: writers on different threads record into different
/// histograms, so the per-event path takes an uncontended lock; the
/// sampler merges them once a second.
const SHARDS: usize = 8;

/// Shared by every connection's writer and the sampler.
pub(crate) struct Telemetry {
    shards: [Mutex<Shard>; SHARDS],
    inner: Mutex<Inner>,
}

/// One shard: its histogram and the exact sum of what it recorded, µs.
struct Shard {
    histogram: Histogram<u64>,
    sum_us: u64,
}

/// Upper bounds (seconds) of the exported delivery-latency histogram.
pub(crate) const DELIVERY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// 1 µs .. 1 h, two significant figures: about 2 KiB.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// Locks, ignoring poisoning: a panic elsewhere cannot leave these numbers
/// inconsistent enough to matter, so keep serving them.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// This thread's shard: assigned round-robin on first use.
fn shard_index() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Telemetry {
    pub(crate) fn new() -> Self {
        Telemetry {
            shards: std::array::from_fn(|_| {
                Mutex::new(Shard {
                    histogram: latency_histogram(),
                    sum_us: 0,
                })
            }),
            inner: Mutex::new(Inner {
                interval: latency_histogram(),
                total: latency_histogram(),
                total_sum_us: 0,
                series: VecDeque::with_capacity(SERIES_LEN),
                last: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Records the delivery latency of one live event.
    pub(crate) fn record_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut shard = lock(&self.shards[shard_index()]);
        shard.histogram.saturating_record(us.max(1));
        shard.sum_us = shard.sum_us.saturating_add(us);
    }

    /// Closes the current interval: appends a sample computed from the
    /// counters' growth since the previous one, and starts a new interval.
    pub(crate) fn sample(&self, now_unix: f64, stats: GatewayStats, open: u64, sessions: u64) {
        let mut inner = self.lock();
        for shard in &self.shards {
            let mut shard = lock(shard);
            // Same bounds on both sides: adding cannot fail.
            let _ = inner.interval.add(&shard.histogram);
            shard.histogram.reset();
            inner.total_sum_us = inner.total_sum_us.saturating_add(shard.sum_us);
            shard.sum_us = 0;
        }
        let Inner {
            interval, total, ..
        } = &mut *inner;
        let _ = total.add(&*interval);
        let (runs_per_s, events_per_s) = match inner.last {
            Some((t, prev)) if now_unix > t => {
                let dt = now_unix - t;
                (
                    stats.runs.saturating_sub(prev.runs) as f64 / dt,
                    stats.frames_sent.saturating_sub(prev.frames_sent) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        };
        let h = &inner.interval;
        let quantile = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1_000.0
            }
        };
        let sample = StatsSample {
            t: now_unix,
            connections: open,
            sessions,
            runs_per_s,
            events_per_s,
            p50_ms: quantile(0.50),
            p99_ms: quantile(0.99),
            latency_samples: h.len(),
        };
        inner.interval.reset();
        if inner.series.len() == SERIES_LEN {
            inner.series.pop_front();
        }
        inner.series.push_back(sample);
        inner.last = Some((now_unix, stats));
    }

    /// Every delivery latency sampled so far (up to the last sample), as
    /// per-bucket counts over [`DELIVERY_BUCKETS`] and `+Inf`, and their sum
    /// in seconds.
    pub(crate) fn delivery_histogram(&self) -> (Vec<(f64, u64)>, f64) {
        let inner = self.lock();
        let h = &inner.total;
        let mut buckets = Vec::with_capacity(DELIVERY_BUCKETS.len() + 1);
        let mut below = 0u64;
        for bound in DELIVERY_BUCKETS {
            let up_to = h.count_between(0, (bound * 1e6) as u64);
            buckets.push((bound, up_to.saturating_sub(below)));
            below = below.max(up_to);
        }
        buckets.push((f64::INFINITY, h.len().saturating_sub(below)));
        (buckets, inner.total_sum_us as f64 / 1e6)
    }

    /// The series, oldest first.
    pub(crate) fn series(&self) -> Vec<StatsSample> {
        self.lock().series.iter().copied().collect()
    }

    /// The last sample, if any.
    pub(crate) fn latest(&self) -> Option<StatsSample> {
        self.lock().series.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_turn_counter_growth_into_rates_and_latency_into_quantiles() {
        let t = Telemetry::new();
        t.sample(100.0, GatewayStats::default(), 0, 0);
        for ms in 1..=100 {
            t.record_latency(Duration::from_millis(ms));
        }
        let stats = GatewayStats {
            runs: 20,
            frames_sent: 500,
            ..Default::default()
        };
        t.sample(102.0, stats, 3, 4);
        let series = t.series();
        assert_eq!(series.len(), 2);
        let s = series[1];
        assert_eq!((s.runs_per_s, s.events_per_s), (10.0, 250.0));
        assert_eq!((s.connections, s.sessions, s.latency_samples), (3, 4, 100));
        assert!((s.p50_ms - 50.0).abs() <= 0.5, "{}", s.p50_ms);
        assert!((s.p99_ms - 99.0).abs() <= 1.0, "{}", s.p99_ms);
        // A new interval starts empty.
        t.sample(103.0, stats, 0, 0);
        let last = t.series()[2];
        assert_eq!(
            (last.p50_ms, last.latency_samples, last.runs_per_s),
            (0.0, 0, 0.0)
        );
    }

    #[test]
    fn latencies_from_many_threads_all_reach_the_sample() {
        let t = std::sync::Arc::new(Telemetry::new());
        let writers: Vec<_> = (0..12)
            .map(|i| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        t.record_latency(Duration::from_millis(1 + i));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        t.sample(1.0, GatewayStats::default(), 0, 0);
        let s = t.series()[0];
        assert_eq!(s.latency_samples, 12_000);
        assert!((s.p99_ms - 12.0).abs() <= 0.2, "{}", s.p99_ms);
        // The shards were emptied into that sample.
        t.sample(2.0, GatewayStats::default(), 0, 0);
        assert_eq!(t.series()[1].latency_samples, 0);
    }

    #[test]
    fn the_series_is_bounded() {
        let t = Telemetry::new();
        for i in 0..(SERIES_LEN + 50) {
            t.sample(i as f64, GatewayStats::default(), 0, 0);
        }
        let series = t.series();
        assert_eq!(series.len(), SERIES_LEN);
        assert_eq!(series[0].t, 50.0);
    }
}
