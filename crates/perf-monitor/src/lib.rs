//! # wsc-perf-monitor
//!
//! Measures every WebSocket connection's handshake time, latency
//! distribution and throughput, raises alerts when they degrade, and exports
//! it all in the Prometheus text format.
//!
//! **Status:** the crate is being built; this release exposes no API yet.
//! The public shape to come:
//!
//! - `PerformanceMonitor` (legacy name `WebSocketPerformanceMonitor`) with
//!   `new(config)` and `with_clock(config, clock)`, per-connection state in a
//!   `DashMap`;
//! - a bounded latency histogram (p50/p95/p99/max), a bounded ring of recent
//!   samples, sliding one-second throughput buckets with peak;
//! - threshold alerts (one active alert per connection and kind, warning over
//!   the threshold, critical over twice it, resolved with hysteresis) with a
//!   subscription channel;
//! - a `ResourceSampler` trait reading the real process's memory and CPU;
//! - performance reports with ratings, system-wide metrics with outliers, and
//!   `render_prometheus()`.
#![forbid(unsafe_code)]
