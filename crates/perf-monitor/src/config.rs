//! [`PerformanceMonitorConfig`] and [`PerformanceThresholds`].

use std::time::Duration;

/// When a metric raises an alert. Warning over the threshold, critical over
/// twice it (for throughput: under it, and under half of it).
#[derive(Clone, Debug, PartialEq)]
pub struct PerformanceThresholds {
    /// Message latency (default 1 000 ms).
    pub max_message_latency_ms: f64,
    /// Handshake time (default 5 000 ms).
    pub max_connection_time_ms: f64,
    /// Messages per second over `metrics_window`, checked once a connection
    /// has been tracked for `throughput_warmup` and processed
    /// `min_messages_for_throughput` messages (default 0.1).
    pub min_throughput_messages_per_second: f64,
    /// Process resident memory (default 1 024 MB).
    pub max_memory_usage_mb: f64,
    /// Process CPU (default 80 %).
    pub max_cpu_usage_percent: f64,
    /// Errors per processed message, 0 to 1 (default 0.05), checked after
    /// `min_messages_for_throughput` messages.
    pub max_error_rate: f64,
}

impl Default for PerformanceThresholds {
    fn default() -> Self {
        PerformanceThresholds {
            max_message_latency_ms: 1_000.0,
            max_connection_time_ms: 5_000.0,
            min_throughput_messages_per_second: 0.1,
            max_memory_usage_mb: 1_024.0,
            max_cpu_usage_percent: 80.0,
            max_error_rate: 0.05,
        }
    }
}

/// Configuration of a [`PerformanceMonitor`](crate::PerformanceMonitor).
///
/// Every field has a default; write `PerformanceMonitorConfig {
/// detailed_tracking: false, ..Default::default() }` to change one.
#[derive(Clone, Debug, PartialEq)]
pub struct PerformanceMonitorConfig {
    /// Alert thresholds.
    pub thresholds: PerformanceThresholds,
    /// The sliding throughput window (1 s buckets) and the age past which
    /// recent samples are dropped by cleanup (default 60 s).
    pub metrics_window: Duration,
    /// Raise alerts (default `true`).
    pub alert_enabled: bool,
    /// Keep a ring of recent latency samples per connection (default `true`).
    pub detailed_tracking: bool,
    /// Let cleanup drop closed connections idle for `metrics_window`
    /// (default `true`).
    pub auto_cleanup_enabled: bool,
    /// Recent samples kept per connection (default 50).
    pub max_recent_samples: usize,
    /// Connections tracked at most (default 100 000); past it new
    /// connections are counted but not tracked.
    pub max_connections: usize,
    /// An alert resolves once its metric stays back within the threshold
    /// this long (default 30 s).
    pub alert_hysteresis: Duration,
    /// Low-throughput checks start this long after tracking began (default 30 s).
    pub throughput_warmup: Duration,
    /// Messages a connection must have processed before throughput and
    /// error-rate checks (default 10).
    pub min_messages_for_throughput: u64,
    /// Resolved and superseded alerts kept in the history (default 1 000).
    pub max_alert_history: usize,
}

impl Default for PerformanceMonitorConfig {
    fn default() -> Self {
        PerformanceMonitorConfig {
            thresholds: PerformanceThresholds::default(),
            metrics_window: Duration::from_secs(60),
            alert_enabled: true,
            detailed_tracking: true,
            auto_cleanup_enabled: true,
            max_recent_samples: 50,
            max_connections: 100_000,
            alert_hysteresis: Duration::from_secs(30),
            throughput_warmup: Duration::from_secs(30),
            min_messages_for_throughput: 10,
            max_alert_history: 1_000,
        }
    }
}
