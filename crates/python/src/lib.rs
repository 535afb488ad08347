//! `websocket_core._native`: the compiled half of the legacy `websocket_core`
//! Python package. Each function here is one decision of the package, made by
//! the wsc crates: which critical events a run is missing and whether its
//! order holds ([`wsc_event_monitor`]), window counts, limits and
//! `retry_after` ([`wsc_rate_limiter::SlidingLog`]), latency statistics,
//! alert severities and the performance rating ([`wsc_perf_monitor`]), and
//! backoff delays ([`wsc_reconnection::backoff_ceiling`]). The Python modules
//! beside it (`python/websocket_core/`) keep the package's live state and its
//! `async` surface and call these.
//!
//! Used from Python, once the package is installed (`pip install
//! ./crates/python`):
//!
//! ```python
//! from websocket_core import _native
//!
//! log = _native.MessageLog()
//! # One message more at t seconds: 2 a minute, 1 000 an hour.
//! assert log.admit_message(0.0, 60.0, 2, 1000) is None
//! assert log.admit_message(1.0, 60.0, 2, 1000) is None
//! assert log.admit_message(2.0, 60.0, 2, 1000) == (0, 58.0)  # admitted again at 60 s
//! assert _native.backoff_delay(1.0, 2.0, 30.0, 3) == 8.0
//! ```

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use wsc_core::{ManualClock, MessageType, Timestamp, WebSocketMessage};
use wsc_event_monitor::{
    AgentSession, EventMonitor, EventMonitorConfig, EventType, EventValidationError, ViolationKind,
};
use wsc_perf_monitor::{AlertSeverity, PerformanceRating, PerformanceThresholds, Rated};
use wsc_rate_limiter::{SlidingLog, WindowDecision, WindowLimit};

/// Every message type: `(legacy name, wire value)`, in declaration order.
#[pyfunction]
fn message_types() -> Vec<(&'static str, &'static str)> {
    MessageType::ALL
        .iter()
        .map(|t| (t.legacy_name(), t.as_str()))
        .collect()
}

/// The legacy name of the type `text` names: a wire value, a legacy name
/// or a legacy alias (`"user"` is `USER_MESSAGE`).
///
/// Raises `ValueError` for text that names no type.
#[pyfunction]
fn type_name(text: &str) -> PyResult<&'static str> {
    text.parse::<MessageType>()
        .map(|t| t.legacy_name())
        .map_err(|_| PyValueError::new_err(format!("{text:?} is not a message type")))
}

/// The critical events' legacy names, in their canonical order.
#[pyfunction]
fn critical_events() -> Vec<&'static str> {
    MessageType::CRITICAL_AGENT_EVENTS
        .iter()
        .map(MessageType::legacy_name)
        .collect()
}

/// A run's events (their wire values or legacy names, in arrival order)
/// judged as the legacy package judges them: `None` if the run is
/// complete, else `("missing", message)` — a critical event never arrived
/// (checked first, with `track_critical`) — or `("order", message)` — the
/// critical events broke an order rule (with `validate_order`): the first
/// event is not `AGENT_STARTED`, a second `AGENT_STARTED`, an event after
/// `AGENT_COMPLETED`, a `TOOL_COMPLETED` with no open `TOOL_EXECUTING`.
///
/// Only the five critical types take part (the legacy rules are about
/// them); the event monitor's stricter rule that a run completes with no
/// tool open is not one of the legacy rules and is not applied.
///
/// Raises `ValueError` for a type that names no message type.
#[pyfunction]
#[pyo3(signature = (types, track_critical = true, validate_order = true))]
fn judge_events(
    types: Vec<String>,
    track_critical: bool,
    validate_order: bool,
) -> PyResult<Option<(&'static str, String)>> {
    let clock = ManualClock::new(Timestamp::UNIX_EPOCH);
    let monitor = EventMonitor::with_clock(
        EventMonitorConfig {
            track_critical_events: track_critical,
            validate_event_order: validate_order,
            max_events_per_run: types.len().max(1),
            ..EventMonitorConfig::default()
        },
        clock.shared(),
    );
    monitor.start_session_tracking("run", AgentSession::new("python"));
    for text in &types {
        let t = text
            .parse::<MessageType>()
            .map_err(|_| PyValueError::new_err(format!("{text:?} is not a message type")))?;
        let critical = matches!(EventType::classify(t), Some(k) if k != EventType::Error);
        if critical {
            monitor
                .record_event("run", WebSocketMessage::new(t, serde_json::json!({})))
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
    }
    Ok(match monitor.validate_session_completion("run") {
        Ok(_) => None,
        Err(EventValidationError::MissingCriticalEvents(e)) => Some(("missing", e.to_string())),
        Err(EventValidationError::OrderViolation { violations, .. }) => {
            let legacy: Vec<_> = violations
                .iter()
                .filter(|v| {
                    !matches!(
                        v.kind,
                        ViolationKind::CompletedWithOpenTools | ViolationKind::TooManyOpenTools
                    )
                })
                .collect();
            legacy.first().map(|first| {
                (
                    "order",
                    format!(
                        "event order violated: {first} ({} violation(s) in all)",
                        legacy.len()
                    ),
                )
            })
        }
        Err(other) => Some(("order", other.to_string())),
    })
}

fn instant(secs: f64) -> PyResult<Timestamp> {
    Timestamp::from_unix_secs_f64(secs)
        .ok_or_else(|| PyValueError::new_err(format!("{secs} is not a time the package can keep")))
}

fn windows(spec: &[(f64, u32)]) -> PyResult<Vec<WindowLimit>> {
    spec.iter()
        .map(|&(secs, limit)| {
            Duration::try_from_secs_f64(secs)
                .map(|length| WindowLimit::new(length, limit))
                .map_err(|_| PyValueError::new_err(format!("{secs} is not a window length")))
        })
        .collect()
}

/// A decision as Python sees it: `(admitted, refusing window's index,
/// seconds until every window admits again)`.
type Decision = (bool, Option<usize>, Option<f64>);

fn decision(d: &WindowDecision, now: Timestamp) -> Decision {
    let retry = d
        .retry_at
        .map(|at| at.signed_micros_since(now).max(0) as f64 / 1e6);
    (d.admitted, d.refused_window, retry)
}

/// The admission times of one user (Unix seconds), entry for entry the
/// same as the package's live list of them, and the window decisions over
/// them ([`SlidingLog`]). Windows are given as `[(seconds, limit), ...]`;
/// a limit of 0 limits nothing.
#[pyclass(module = "websocket_core._native")]
#[derive(Default)]
struct MessageLog {
    log: SlidingLog,
}

#[pymethods]
impl MessageLog {
    /// An empty log.
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __len__(&self) -> usize {
        self.log.len()
    }

    /// Appends an entry.
    fn push(&mut self, at: f64) -> PyResult<()> {
        self.log.push(instant(at)?);
        Ok(())
    }

    /// Replaces every entry (after the caller changed the list).
    fn replace(&mut self, times: Vec<f64>) -> PyResult<()> {
        let times = times
            .into_iter()
            .map(instant)
            .collect::<PyResult<Vec<_>>>()?;
        self.log.replace(times);
        Ok(())
    }

    /// Whether one more message at `now` fits every window: `(admitted,
    /// refusing window, retry after seconds)`; records nothing.
    fn decide(&self, now: f64, windows_spec: Vec<(f64, u32)>) -> PyResult<Decision> {
        let now = instant(now)?;
        Ok(decision(
            &self.log.decide(now, &windows(&windows_spec)?),
            now,
        ))
    }

    /// The legacy limiter's one call per message: one more message at
    /// `now` against its message window (`window_seconds`, `window_limit`
    /// with the burst allowance) and the hour (`hour_limit`), recorded when
    /// admitted. `None` when admitted, else `(refusing window: 0 the message
    /// window, 1 the hour, seconds until both admit again)`.
    fn admit_message(
        &mut self,
        now: f64,
        window_seconds: f64,
        window_limit: u32,
        hour_limit: u32,
    ) -> PyResult<Option<(usize, f64)>> {
        let now = instant(now)?;
        let window = Duration::try_from_secs_f64(window_seconds).map_err(|_| {
            PyValueError::new_err(format!("{window_seconds} is not a window length"))
        })?;
        let windows = [
            WindowLimit::new(window, window_limit),
            WindowLimit::new(Duration::from_secs(3600), hour_limit),
        ];
        let d = self.log.admit(now, &windows);
        Ok((!d.admitted).then(|| {
            let (_, window, retry) = decision(&d, now);
            (window.unwrap_or(0), retry.unwrap_or(0.0))
        }))
    }

    /// Drops the entries no window counts from `now` on; for each entry
    /// before, whether it was kept.
    fn retain_needed(&mut self, now: f64, windows_spec: Vec<(f64, u32)>) -> PyResult<Vec<bool>> {
        Ok(self
            .log
            .retain_needed(instant(now)?, &windows(&windows_spec)?))
    }
}

/// The delay before retry `retry` (0-based): `min(initial * multiplier **
/// retry, maximum)` seconds, before any jitter.
#[pyfunction]
fn backoff_delay(initial: f64, multiplier: f64, maximum: f64, retry: u32) -> PyResult<f64> {
    let seconds = |s: f64| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| PyValueError::new_err(format!("{s} is not a delay in seconds")))
    };
    Ok(
        wsc_reconnection::backoff_ceiling(seconds(initial)?, multiplier, seconds(maximum)?, retry)
            .as_secs_f64(),
    )
}

/// Latency samples (milliseconds) summed up: `(average, minimum, maximum,
/// p95)`, the p95 by nearest rank; all 0.0 without samples.
#[pyfunction]
fn latency_summary(mut samples: Vec<f64>) -> (f64, f64, f64, f64) {
    samples.retain(|s| s.is_finite());
    if samples.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let average = samples.iter().sum::<f64>() / n as f64;
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    (average, samples[0], samples[n - 1], samples[rank - 1])
}

/// How bad `value` is against `threshold` once over it (`high_is_bad`) or
/// under it: `"critical"` beyond twice it (under half), else `"warning"`.
#[pyfunction]
#[pyo3(signature = (value, threshold, high_is_bad = true))]
fn alert_severity(value: f64, threshold: f64, high_is_bad: bool) -> &'static str {
    AlertSeverity::of_breach(value, threshold, high_is_bad).as_str()
}

/// A connection's rating and recommendations: `(rating, [advice, ...])`
/// from its p95 latency, its throughput while a low-throughput alert is
/// active, its handshake time, and the thresholds.
#[pyfunction]
#[pyo3(signature = (
    p95_latency_ms,
    low_throughput,
    connection_time_ms,
    max_message_latency_ms,
    max_connection_time_ms,
    min_throughput_messages_per_second,
))]
fn rate_performance(
    p95_latency_ms: f64,
    low_throughput: Option<f64>,
    connection_time_ms: Option<f64>,
    max_message_latency_ms: f64,
    max_connection_time_ms: f64,
    min_throughput_messages_per_second: f64,
) -> (&'static str, Vec<String>) {
    let thresholds = PerformanceThresholds {
        max_message_latency_ms,
        max_connection_time_ms,
        min_throughput_messages_per_second,
        ..PerformanceThresholds::default()
    };
    let (rating, advice) = PerformanceRating::rate(
        &Rated {
            p95_latency_ms,
            error_rate: 0.0,
            low_throughput,
            connection_time_ms,
        },
        &thresholds,
    );
    (rating.as_str(), advice)
}

/// The Rust facade's verdict (`websocket_core::event_monitor::
/// ChatEventMonitor`) on the same run, for the tests that compare the
/// Python surface with it: `None`, or `(kind, message)` with kind
/// `"missing"`, `"order"` (the violations' kinds listed after a colon) or
/// `"failed"`.
#[pyfunction]
fn facade_judge(types: Vec<String>) -> PyResult<Option<(&'static str, String)>> {
    use websocket_core::event_monitor::ChatEventMonitor;
    let clock = ManualClock::new(Timestamp::UNIX_EPOCH);
    let monitor = ChatEventMonitor::with_clock(
        EventMonitorConfig {
            max_events_per_run: types.len().max(1),
            ..EventMonitorConfig::default()
        },
        clock.shared(),
    );
    let verdict = runtime()?.block_on(async {
        monitor
            .start_session_tracking("run", AgentSession::new("python"))
            .await;
        for text in &types {
            let t = text
                .parse::<MessageType>()
                .map_err(|_| PyValueError::new_err(format!("{text:?} is not a message type")))?;
            monitor
                .record_event("run", WebSocketMessage::new(t, serde_json::json!({})))
                .await
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        Ok::<_, PyErr>(monitor.validate_session_completion("run").await)
    })?;
    Ok(match verdict {
        Ok(_) => None,
        Err(EventValidationError::MissingCriticalEvents(e)) => Some(("missing", e.to_string())),
        Err(EventValidationError::OrderViolation { violations, .. }) => {
            let kinds: Vec<&str> = violations.iter().map(|v| v.kind.as_str()).collect();
            Some(("order", format!("order: {}", kinds.join(","))))
        }
        Err(other) => Some(("failed", other.to_string())),
    })
}

/// The Rust facade's decisions (`websocket_core::rate_limiter::
/// WebSocketRateLimiter`, on a manual clock, no violation backoff, the
/// finest window ticks) for one user's messages at `times` (Unix seconds,
/// in order): admitted or not, each. For the tests that compare the
/// Python surface with it.
#[pyfunction]
fn facade_admit(times: Vec<f64>, per_minute: u32, per_hour: u32) -> PyResult<Vec<bool>> {
    use websocket_core::rate_limiter::{RateLimitConfig, WebSocketRateLimiter};
    let start = times.first().copied().unwrap_or(0.0);
    let clock = ManualClock::new(instant(start)?);
    let limiter = WebSocketRateLimiter::with_clock(
        RateLimitConfig {
            max_messages_per_minute: per_minute,
            max_messages_per_hour: per_hour,
            window_buckets: WindowLimit::MAX_BUCKETS,
            base_backoff: Duration::ZERO,
            ..RateLimitConfig::default()
        },
        clock.shared(),
    );
    let message = WebSocketMessage::new(MessageType::UserMessage, serde_json::json!({}));
    runtime()?.block_on(async {
        let mut admitted = Vec::with_capacity(times.len());
        for at in &times {
            clock.set(instant(*at)?);
            admitted.push(limiter.record_message("user", &message).await.is_ok());
        }
        Ok(admitted)
    })
}

fn runtime() -> PyResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| PyValueError::new_err(format!("no runtime for the facade: {e}")))
}

/// The module `websocket_core._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(message_types, m)?)?;
    m.add_function(wrap_pyfunction!(type_name, m)?)?;
    m.add_function(wrap_pyfunction!(critical_events, m)?)?;
    m.add_function(wrap_pyfunction!(judge_events, m)?)?;
    m.add_function(wrap_pyfunction!(backoff_delay, m)?)?;
    m.add_function(wrap_pyfunction!(latency_summary, m)?)?;
    m.add_function(wrap_pyfunction!(alert_severity, m)?)?;
    m.add_function(wrap_pyfunction!(rate_performance, m)?)?;
    m.add_function(wrap_pyfunction!(facade_judge, m)?)?;
    m.add_function(wrap_pyfunction!(facade_admit, m)?)?;
    m.add_class::<MessageLog>()?;
    Ok(())
}
