//! Snapshots, alerts and reports.

use crate::config::PerformanceThresholds;
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
    /// The severity of `value` measured against `threshold`, once it is
    /// over it (`high_is_bad`: a latency, a memory size) or under it (a
    /// throughput): [`Critical`](Self::Critical) beyond twice the
    /// threshold (under half of it), else [`Warning`](Self::Warning).
    ///
    /// ```
    /// use wsc_perf_monitor::AlertSeverity;
    /// assert_eq!(AlertSeverity::of_breach(1_500.0, 1_000.0, true), AlertSeverity::Warning);
    /// assert_eq!(AlertSeverity::of_breach(2_500.0, 1_000.0, true), AlertSeverity::Critical);
    /// assert_eq!(AlertSeverity::of_breach(4.0, 10.0, false), AlertSeverity::Critical);
    /// ```
    pub fn of_breach(value: f64, threshold: f64, high_is_bad: bool) -> AlertSeverity {
        let critical = if high_is_bad {
            value > 2.0 * threshold
        } else {
            value < threshold / 2.0
        };
        if critical {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        }
    }

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
    /// A connection's rating and what to do about it, from what was
    /// measured: its p95 latency and error rate against their thresholds
    /// (excellent within a quarter of the latency threshold and a tenth of
    /// the error rate's, good within half of each, fair within them, else
    /// poor), at best fair with `low_throughput` (a low-throughput alert
    /// is active). Fair and poor always carry at least one
    /// recommendation.
    ///
    /// ```
    /// use wsc_perf_monitor::{PerformanceRating, PerformanceThresholds, Rated};
    /// let thresholds = PerformanceThresholds::default();
    /// let rated = PerformanceRating::rate(&Rated::default(), &thresholds);
    /// assert_eq!(rated.0, PerformanceRating::Excellent);
    /// let slow = Rated { p95_latency_ms: 900.0, ..Rated::default() };
    /// let (rating, advice) = PerformanceRating::rate(&slow, &thresholds);
    /// assert_eq!(rating, PerformanceRating::Fair);
    /// assert!(!advice.is_empty());
    /// ```
    pub fn rate(measured: &Rated, thresholds: &PerformanceThresholds) -> (Self, Vec<String>) {
        let (p95, error_rate) = (measured.p95_latency_ms, measured.error_rate);
        let (lt, et) = (thresholds.max_message_latency_ms, thresholds.max_error_rate);
        let mut rating = if p95 <= lt / 4.0 && error_rate <= et / 10.0 {
            PerformanceRating::Excellent
        } else if p95 <= lt / 2.0 && error_rate <= et / 2.0 {
            PerformanceRating::Good
        } else if p95 <= lt && error_rate <= et {
            PerformanceRating::Fair
        } else {
            PerformanceRating::Poor
        };
        if measured.low_throughput.is_some() {
            rating = rating.max(PerformanceRating::Fair);
        }
        let mut recs = Vec::new();
        if p95 > lt / 2.0 {
            recs.push(format!(
                "p95 latency is {p95:.1} ms against a {lt:.0} ms threshold: check the agent's response time and \
                 the network path, and batch small frames"
            ));
        }
        if error_rate > et / 2.0 {
            recs.push(format!(
                "{:.1} % of messages failed (threshold {:.1} %): inspect the connection's error frames",
                error_rate * 100.0,
                et * 100.0
            ));
        }
        if let Some(rate) = measured.low_throughput {
            recs.push(format!(
                "throughput is {rate:.2} msg/s, under the {:.2} msg/s minimum: check for a stalled client or agent",
                thresholds.min_throughput_messages_per_second
            ));
        }
        if measured
            .connection_time_ms
            .is_some_and(|h| h > thresholds.max_connection_time_ms)
        {
            recs.push(
                "the handshake was slow: check authentication and TLS termination".to_owned(),
            );
        }
        if recs.is_empty() && rating >= PerformanceRating::Fair {
            recs.push(
                "latency and errors are close to their thresholds: watch this connection's alerts"
                    .to_owned(),
            );
        }
        (rating, recs)
    }

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

/// What a connection's rating is made of ([`PerformanceRating::rate`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rated {
    /// The p95 of its message latencies, milliseconds.
    pub p95_latency_ms: f64,
    /// The share of its messages that failed, 0 to 1.
    pub error_rate: f64,
    /// Its throughput (messages per second) while a low-throughput alert
    /// is active, else `None`.
    pub low_throughput: Option<f64>,
    /// Its handshake time, milliseconds, once established.
    pub connection_time_ms: Option<f64>,
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
