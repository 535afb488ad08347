//! `record_message_processed` with 10 000 tracked connections, beside a raw
//! `hdrhistogram` record and a `metrics` histogram (the Prometheus exporter's
//! recorder) per connection, in one group.

#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::json;
use wsc_core::{Clock, MessageType, SystemClock, WebSocketMessage};
use wsc_perf_monitor::{ConnectionInfo, PerformanceMonitor, PerformanceMonitorConfig};

const CONNECTIONS: usize = 10_000;

fn record(c: &mut Criterion) {
    let ids: Vec<String> = (0..CONNECTIONS).map(|i| format!("conn-{i:06}")).collect();
    let mut group = c.benchmark_group("perf_monitor/record_10k_connections");
    group.throughput(Throughput::Elements(1));

    let monitor = PerformanceMonitor::new(PerformanceMonitorConfig::default());
    for id in &ids {
        monitor.start_connection_tracking(id, ConnectionInfo::new("user"));
    }
    // Every record is a latency sample of a few ms: the message is
    // re-stamped every 4 096 records (amortized to nothing), so latencies
    // stay under the alert threshold as on a healthy server.
    let stamp = || SystemClock.now() - std::time::Duration::from_millis(5);
    let mut msg =
        WebSocketMessage::new(MessageType::AgentThinking, json!({})).with_timestamp(stamp());
    let mut i = 0usize;
    group.bench_function("wsc_record_message_processed", |b| {
        b.iter(|| {
            monitor.record_message_processed(&ids[i], black_box(&msg));
            i = (i + 1) % CONNECTIONS;
            if i.is_multiple_of(4096) {
                msg.timestamp = Some(stamp());
            }
        })
    });
    drop(monitor);

    let mut hdr: Vec<Histogram<u64>> = (0..CONNECTIONS)
        .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"))
        .collect();
    let mut i = 0usize;
    let mut v = 1u64;
    group.bench_function("hdrhistogram_record", |b| {
        b.iter(|| {
            v = v * 7 % 50_000 + 1;
            hdr[i].saturating_record(black_box(v));
            i = (i + 1) % CONNECTIONS;
        })
    });
    drop(hdr);

    let recorder = PrometheusBuilder::new().build_recorder();
    let handles: Vec<metrics::Histogram> = metrics::with_local_recorder(&recorder, || {
        ids.iter()
            .map(|id| metrics::histogram!("latency_seconds", "connection" => id.clone()))
            .collect()
    });
    let mut i = 0usize;
    let mut v = 1u64;
    group.bench_function("metrics_histogram_record", |b| {
        b.iter(|| {
            v = v * 7 % 50_000 + 1;
            handles[i].record(black_box(v as f64 / 1e6));
            i = (i + 1) % CONNECTIONS;
        })
    });
    group.finish();
}

criterion_group!(benches, record);
criterion_main!(benches);
