//! Snapshots, alerts and reports.

use std::fmt;

use serde::Serialize;
use wsc_core::{MessageType, Timestamp};

/// Who a tracked connection belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    /// The user.
    pub user_id: String,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The client's address.
    pub ip_address: Option<String>,
}

impl ConnectionInfo {
    /// Info with only a user id.
    pub fn new(user_id: impl Into<String>) -> Self {
        ConnectionInfo {
            user_id: user_id.into(),
            ..Default::default()
        }
    }

    /// Sets `user_agent`.
    pub fn with_user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = Some(agent.into());
        self
    }

    /// Sets `ip_address`.
    pub fn with_ip_address(mut self, ip: impl Into<String>) -> Self {
        self.ip_address = Some(ip.into());
        self
    }
}

/// One recorded latency.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyMeasurement {
    /// The message's id, if it had one.
    pub message_id: Option<String>,
    /// The latency in milliseconds.
    pub latency_ms: f64,
    /// When it was recorded.
    pub timestamp: Timestamp,
    /// The message's type.
    pub message_type: MessageType,
}

/// A snapshot of one connection's metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerformanceMetrics {
    /// The connection.
    pub connection_id: String,
    /// Its user.
    pub user_id: String,
    /// Handshake time: from tracking start to established.
    pub connection_time_ms: Option<f64>,
    /// Established and not closed.
    pub is_connected: bool,
    /// Messages processed.
    pub message_count: u64,
    /// Recent samples (when `detailed_tracking`), oldest first.
    pub latency_measurements: Vec<LatencyMeasurement>,
    /// Mean latency over every sample, ms.
    pub average_latency_ms: f64,
    /// Smallest latency, ms (0 without samples).
    pub min_latency_ms: f64,
    /// Largest latency, ms.
    pub max_latency_ms: f64,
    /// Median latency, ms.
    pub p50_latency_ms: f64,
    /// 95th percentile latency, ms.
    pub p95_latency_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_latency_ms: f64,
    /// Latency samples recorded.
    pub latency_samples: u64,
    /// Messages with no usable timestamp (counted, no sample).
    pub latency_missing: u64,
    /// Messages whose timestamp was in the future (clock skew; no sample).
    pub latency_skewed: u64,
    /// Bytes sent to the client.
    pub bytes_sent: u64,
    /// Bytes received from the client.
    pub bytes_received: u64,
    /// Errors recorded.
    pub error_count: u64,
    /// Process memory at the last resource sample, MB.
    pub current_memory_usage_mb: f64,
    /// Process CPU at the last resource sample, percent.
    pub current_cpu_usage_percent: f64,
    /// When tracking began.
    pub tracking_started_at: Timestamp,
}

/// Throughput of one connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThroughputMetrics {
    /// Messages over the time elapsed since tracking began.
    pub messages_per_second: f64,
    /// Messages processed.
    pub total_messages: u64,
    /// Seconds since tracking began.
    pub measurement_period_seconds: f64,
    /// The highest rate seen: the busiest 1 s bucket within the window, or
    /// the overall rate if higher (short connections).
    pub peak_messages_per_second: f64,
    /// Messages per second over the last `metrics_window` (or since
    /// tracking began, if shorter).
    pub window_messages_per_second: f64,
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertType {
    /// A message's latency over the threshold.
    HighLatency,
    /// A handshake slower than the threshold.
    SlowConnection,
    /// Throughput under the minimum after warm-up.
    LowThroughput,
    /// Process memory over the threshold.
    HighMemory,
    /// Process CPU over the threshold.
    HighCpu,
    /// Errors per message over the threshold.
    HighErrorRate,
}

impl AlertType {
    /// Every alert type.
    pub const ALL: [AlertType; 6] = [
        AlertType::HighLatency,
        AlertType::SlowConnection,
        AlertType::LowThroughput,
        AlertType::HighMemory,
        AlertType::HighCpu,
        AlertType::HighErrorRate,
    ];

    /// `"high_latency"`, `"slow_connection"`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertType::HighLatency => "high_latency",
            AlertType::SlowConnection => "slow_connection",
            AlertType::LowThroughput => "low_throughput",
            AlertType::HighMemory => "high_memory",
            AlertType::HighCpu => "high_cpu",
            AlertType::HighErrorRate => "high_error_rate",
        }
    }
}

impl fmt::Display for AlertType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSeverity {
    /// For information.
    Info,
    /// Over the threshold.
    Warning,
    /// Over twice the threshold.
    Critical,
}

impl AlertSeverity {
    /// `"info"`, `"warning"` or `"critical"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

impl fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A threshold breach on one connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerformanceAlert {
    /// What it is about.
    pub alert_type: AlertType,
    /// How bad.
    pub severity: AlertSeverity,
    /// The latest breaching value.
    pub value_measured: f64,
    /// The threshold it broke.
    pub threshold_exceeded: f64,
    /// The connection.
    pub connection_id: String,
    /// When it was raised or last updated.
    pub timestamp: Timestamp,
    /// A human-readable description.
    pub message: String,
    /// When it was first raised.
    pub raised_at: Timestamp,
    /// When it was resolved (`None` while active).
    pub resolved_at: Option<Timestamp>,
}

/// What the monitor publishes on [`subscribe`](crate::PerformanceMonitor::subscribe).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AlertEvent {
    /// A new alert.
    Raised(PerformanceAlert),
    /// An active alert changed severity.
    Updated(PerformanceAlert),
    /// An alert's metric stayed within its threshold for the hysteresis
    /// period (or its connection stopped being tracked).
    Resolved(PerformanceAlert),
}

/// A connection's overall rating.
///
/// From the p95 latency `L` (against the latency threshold `T`) and the
/// error rate `E` (against the error threshold `X`): **Excellent** when
/// `L <= T/4` and `E <= X/10`; **Good** when `L <= T/2` and `E <= X/2`;
/// **Fair** when `L <= T` and `E <= X`; **Poor** otherwise. An active
/// low-throughput alert caps the rating at Fair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PerformanceRating {
    /// Well within every threshold.
    Excellent,
    /// Within half of every threshold.
    Good,
    /// Within the thresholds.
    Fair,
    /// Over a threshold.
    Poor,
}

impl PerformanceRating {
    /// `"excellent"`, `"good"`, `"fair"` or `"poor"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PerformanceRating::Excellent => "excellent",
            PerformanceRating::Good => "good",
            PerformanceRating::Fair => "fair",
            PerformanceRating::Poor => "poor",
        }
    }
}

/// A connection's performance report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerformanceReport {
    /// The connection.
    pub connection_id: String,
    /// Messages processed.
    pub total_messages: u64,
    /// Mean latency, ms.
    pub average_latency_ms: f64,
    /// 95th percentile latency, ms.
    pub p95_latency_ms: f64,
    /// Messages per second since tracking began.
    pub throughput_messages_per_second: f64,
    /// Minutes since tracking began.
    pub connection_duration_minutes: f64,
    /// The rating (see [`PerformanceRating`] for the cut-offs).
    pub performance_rating: PerformanceRating,
    /// What to do about it; never empty when fair or poor.
    pub optimization_recommendations: Vec<String>,
    /// Errors per processed message.
    pub error_rate: f64,
    /// Alerts active now.
    pub active_alerts: Vec<PerformanceAlert>,
}

/// A connection whose latency stands out from the rest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerformanceOutlier {
    /// The connection.
    pub connection_id: String,
    /// Its mean latency, ms.
    pub average_latency_ms: f64,
    /// Its p95 latency, ms.
    pub p95_latency_ms: f64,
    /// Its p95 over the median p95 of all connections with samples.
    pub factor_over_median: f64,
}

/// Metrics across all connections.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemMetrics {
    /// Connections established and not closed.
    pub total_active_connections: usize,
    /// Connections tracked (including not yet established or closed).
    pub tracked_connections: usize,
    /// Messages processed since the monitor started (including connections
    /// no longer tracked).
    pub total_messages_processed: u64,
    /// Mean latency over the samples of tracked connections, ms.
    pub average_system_latency_ms: f64,
    /// Sum of the tracked connections' rates since their tracking began.
    pub system_throughput_messages_per_second: f64,
    /// Connections whose p95 is over 3× the median p95 and over the latency
    /// threshold.
    pub performance_outliers: Vec<PerformanceOutlier>,
    /// Alerts active now.
    pub active_alerts: usize,
}
