//! Snapshots and reports: [`EventTracker`], [`EventMetrics`], [`HealthReport`].

use std::fmt;

use serde::Serialize;
use wsc_core::{MessageType, Timestamp, WebSocketMessage};

use crate::error::{OrderViolation, SilentFailure};

/// A snapshot of one tracked run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventTracker {
    /// The user the run streams to.
    pub user_id: String,
    /// The conversation thread.
    pub thread_id: Option<String>,
    /// The run id given at tracking start, if any.
    pub run_id: Option<String>,
    /// The agent's name.
    pub agent_name: Option<String>,
    /// The stored events, in the order recorded (out-of-order ones included).
    /// Whole messages while the run is in flight; once it has ended, unless
    /// [`keep_payloads_after_end`](crate::EventMonitorConfig::keep_payloads_after_end)
    /// keeps them, rebuilt from compact records: the type, and for tool
    /// events the `tool_call_id` (see [`payloads_dropped`](Self::payloads_dropped)).
    pub events_received: Vec<WebSocketMessage>,
    /// The run ended and its events were compacted: `events_received` holds
    /// each event's type (and tool call id), not its payload or other fields.
    pub payloads_dropped: bool,
    /// When tracking began.
    pub started_at: Timestamp,
    /// When the last event was recorded (`started_at` before any).
    pub last_event_at: Timestamp,
    /// The run is *validated* complete: it delivered `agent_completed` and
    /// passes [`validate_session_completion`](crate::EventMonitor::validate_session_completion)
    /// (every required critical event arrived, in an order that broke no
    /// rule, as far as the config checks them). A run that reached
    /// `agent_completed` but misses events or broke the order is not
    /// complete; see [`reached_completion`](Self::reached_completion) for
    /// "ended with `agent_completed`" alone.
    pub is_complete: bool,
    /// The run delivered `agent_completed` (its terminal event), whether or
    /// not it is valid.
    pub reached_completion: bool,
    /// The run ended with `error` or `agent_error`.
    pub is_failed: bool,
    /// That error was a cancellation by the run's user (`code:
    /// "cancelled"`).
    pub is_cancelled: bool,
    /// The run was marked timed out.
    pub is_timeout: bool,
    /// Every event recorded, stored or not.
    pub total_events: u64,
    /// Events past `max_events_per_run` were counted but not stored.
    pub events_truncated: bool,
    /// The stored order violations.
    pub violations: Vec<OrderViolation>,
    /// Tools currently open.
    pub open_tools: usize,
}

/// Timing of one recorded event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventTiming {
    /// The event's type.
    pub event_type: MessageType,
    /// When the monitor recorded it.
    pub timestamp: Timestamp,
    /// Milliseconds since the previous event of the run (`None` for the first).
    pub latency_ms: Option<f64>,
    /// About how many bytes the event took when it was recorded: its
    /// strings and the JSON of its payload, plus a fixed size per event (an
    /// estimate, the one the storage budgets count in).
    pub approx_bytes: usize,
}

/// Timing metrics of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventMetrics {
    /// The run's tracking id.
    pub session_id: String,
    /// From tracking start to the run's end, or to now if it has not ended.
    pub session_duration_ms: f64,
    /// Every event recorded (stored or not).
    pub total_events: usize,
    /// One entry per stored event, in order.
    pub event_timings: Vec<EventTiming>,
}

/// The overall health of the monitored runs.
///
/// From the [`HealthReport`] figures, worst first:
/// - `Failed`: runs are active but none is making progress (every active run
///   is stale or has a stuck tool), or at least 4 runs ended and all failed or
///   timed out;
/// - `Critical`: a stuck tool, p95 inter-event latency over
///   `latency_critical`, at least `critical_violation_count` recent
///   violations, or at least a quarter of ended runs failed or timed out;
/// - `Warning`: a stale run, a recent violation, p95 over `latency_warning`,
///   or any failed or timed-out run still tracked;
/// - `Healthy`: none of these (an empty monitor is healthy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Nothing wrong.
    Healthy,
    /// Something to look at.
    Warning,
    /// Users are affected.
    Critical,
    /// Nothing is getting through.
    Failed,
}

impl HealthStatus {
    /// `"healthy"`, `"warning"`, `"critical"` or `"failed"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
            HealthStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inter-event latency across tracked runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Mean gap between consecutive events of a run, in ms.
    pub avg_ms: f64,
    /// Largest gap, in ms.
    pub max_ms: f64,
    /// 95th percentile gap over the sampled stored events, in ms.
    pub p95_ms: f64,
    /// How many gaps the mean and max cover.
    pub samples: u64,
}

/// The result of [`check_health`](crate::EventMonitor::check_health).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// The rolled-up status.
    pub status: HealthStatus,
    /// Human-readable reasons for a status other than healthy.
    pub issues: Vec<String>,
    /// When the check ran.
    pub checked_at: Timestamp,
    /// Runs tracked now.
    pub total_runs: usize,
    /// Runs not ended.
    pub active_runs: usize,
    /// Runs that delivered `agent_completed`.
    pub completed_runs: usize,
    /// Runs ended by an error (cancelled ones not included).
    pub failed_runs: usize,
    /// Runs their user stopped (`agent_error {code: "cancelled"}`): ended
    /// on purpose, so they do not make the monitor less healthy.
    pub cancelled_runs: usize,
    /// Runs marked timed out.
    pub timed_out_runs: usize,
    /// The users the timed-out runs belong to (how many distinct).
    pub timed_out_users: usize,
    /// Active runs with no event for `stale_after`.
    pub stale_runs: usize,
    /// Tools open longer than `tool_timeout`.
    pub stuck_tools: usize,
    /// Violations within `health_window`.
    pub recent_silent_failures: usize,
    /// Violations since the monitor started.
    pub total_silent_failures: u64,
    /// Runs evicted to respect `max_tracked_runs`.
    pub evicted_runs: u64,
    /// Inter-event latency.
    pub latency: LatencySummary,
}

/// What the monitor publishes on [`subscribe`](crate::EventMonitor::subscribe).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MonitorEvent {
    /// An order rule was broken (published live, as recorded).
    Violation(SilentFailure),
    /// The sweeper marked a run timed out.
    RunTimedOut {
        /// The run.
        session_id: String,
    },
    /// The health status changed between two sweeps.
    HealthChanged {
        /// The status before.
        previous: HealthStatus,
        /// The status now.
        current: HealthStatus,
    },
}

/// What one [`sweep`](crate::EventMonitor::sweep) did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepReport {
    /// Runs newly marked timed out.
    pub timed_out: usize,
    /// Ended runs removed for age.
    pub removed: usize,
    /// The health after the sweep.
    pub health: HealthStatus,
}
