//! # wsc-perf-monitor
//!
//! Measures every WebSocket connection's handshake time, latency
//! distribution and throughput, raises alerts when they degrade, and exports
//! it all for Prometheus.
//!
//! - **Latency**: now minus the message's `timestamp`, else minus
//!   `payload.client_timestamp` (Unix seconds or RFC 3339); a message with
//!   neither is counted without a sample, one from the future is counted as
//!   clock skew. Samples go into a bounded log-linear histogram (4 KiB, p50,
//!   p95, p99 within [`HISTOGRAM_RELATIVE_ERROR`] ≈ 1.6 %) and, with
//!   `detailed_tracking`, a bounded ring of recent samples.
//! - **Throughput** since tracking began, over a sliding window of 1 s
//!   buckets, and its peak.
//! - **Alerts** `high_latency`, `slow_connection`, `low_throughput` (after a
//!   warm-up with traffic), `high_memory`, `high_cpu`, `high_error_rate`:
//!   warning over the threshold, critical over twice it; one active alert per
//!   connection and kind, updated in place, resolved once the metric stays
//!   within the threshold for `alert_hysteresis`; a bounded history and a
//!   [`subscribe`](PerformanceMonitor::subscribe) channel.
//! - **Resources**: a [`ResourceSampler`], by default the real process's
//!   resident memory and CPU.
//! - **Reports** with a [`PerformanceRating`] and recommendations;
//!   system-wide metrics with outliers; [`render_prometheus`](PerformanceMonitor::render_prometheus).
//!
//! ## Prometheus metrics
//!
//! Written by the `prometheus-client` crate: Prometheus text by
//! [`render_prometheus`](PerformanceMonitor::render_prometheus), or
//! OpenMetrics and Prometheus text from your own registry with a
//! [`MonitorCollector`] in it. Counters
//! `wsc_messages_processed_total`, `wsc_bytes_total{direction}`,
//! `wsc_connection_errors_total`, `wsc_latency_unmeasured_total{reason}`,
//! `wsc_untracked_total`, `wsc_alerts_raised_total{kind}`; gauges
//! `wsc_tracked_connections`, `wsc_active_connections`,
//! `wsc_connection_state_bytes` (the heap bytes of the tracked connections'
//! measurements, [`PerformanceMonitor::state_bytes`]),
//! `wsc_active_alerts{severity}`; histogram `wsc_message_latency_seconds`
//! (buckets 1 ms to 10 s). The standard process metrics
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, ...) come from [`ProcessCollector`].
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use serde_json::json;
//! use wsc_core::{Clock, ManualClock, MessageType, WebSocketMessage};
//! use wsc_perf_monitor::{AlertType, ConnectionInfo, PerformanceMonitor, PerformanceMonitorConfig};
//!
//! let clock = ManualClock::default();
//! let monitor = PerformanceMonitor::with_clock(PerformanceMonitorConfig::default(), clock.shared());
//! monitor.start_connection_tracking("conn-1", ConnectionInfo::new("user-1"));
//! clock.advance(Duration::from_millis(30));
//! monitor.record_connection_established("conn-1");
//!
//! // A message sent 1.5 s ago: its latency is over the 1 s threshold.
//! let sent = clock.now() - Duration::from_millis(1500);
//! let msg = WebSocketMessage::new(MessageType::UserMessage, json!({})).with_timestamp(sent);
//! monitor.record_message_processed("conn-1", &msg);
//!
//! let metrics = monitor.connection_metrics("conn-1").unwrap();
//! assert_eq!(metrics.connection_time_ms, Some(30.0));
//! assert_eq!(metrics.max_latency_ms, 1500.0);
//! let alerts = monitor.get_active_alerts("conn-1");
//! assert_eq!(alerts[0].alert_type, AlertType::HighLatency);
//! assert!(monitor.render_prometheus().contains("wsc_message_latency_seconds_count 1"));
//! ```
#![forbid(unsafe_code)]

mod alerts;
mod config;
mod histogram;
mod metrics;
mod monitor;
mod report;
mod sampler;
mod state;
mod types;

pub use alerts::EvaluatorHandle;
pub use config::{PerformanceMonitorConfig, PerformanceThresholds};
pub use histogram::HISTOGRAM_RELATIVE_ERROR;
pub use metrics::{MonitorCollector, ProcessCollector};
pub use monitor::PerformanceMonitor;
/// The `prometheus-client` crate the collectors are written for (its
/// `Registry`, encoders and metric types), re-exported so versions match.
pub use prometheus_client;
pub use sampler::{
    ProcessSampler, ResourceSampler, ResourceUsage, open_file_limit, resident_memory_bytes,
};
pub use types::{
    AlertEvent, AlertSeverity, AlertType, ConnectionInfo, LatencyMeasurement, PerformanceAlert,
    PerformanceMetrics, PerformanceOutlier, PerformanceRating, PerformanceReport, Rated,
    SystemMetrics, ThroughputMetrics,
};

// The README's code is compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
