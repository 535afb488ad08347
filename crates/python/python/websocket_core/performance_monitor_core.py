"""Every connection measured: handshake time, message latency, throughput,
resources, alerts and a rated report.

``WebSocketPerformanceMonitor`` (also ``PerformanceMonitor``) keeps one
``PerformanceMetrics`` per connection in ``_connection_metrics`` and its
latency measurements (the same list) in ``_latency_measurements``: both are
live state. Latency statistics and percentiles, alert severities and the
performance rating with its recommendations are decided by wsc's
performance monitor (Rust).
"""

import asyncio
import time
from datetime import datetime
from typing import Any, Dict, List, Optional

import psutil

from . import _clock, _native
from ._values import Record, ValueConfig
from .types import MessageType

__all__ = [
    "LatencyMeasurement",
    "PerformanceAlert",
    "PerformanceMetrics",
    "PerformanceMonitor",
    "PerformanceOutlier",
    "PerformanceReport",
    "PerformanceThresholds",
    "SystemMetrics",
    "ThroughputMetrics",
    "WebSocketPerformanceMonitor",
]

# Throughput below the minimum is an alert once a connection has been
# measured this long (a new connection has had no time to be busy).
_LOW_THROUGHPUT_AFTER_SECONDS = 60.0


class PerformanceThresholds(ValueConfig):
    """Alert thresholds. Compares by value."""

    __slots__ = (
        "max_message_latency_ms",
        "max_connection_time_ms",
        "min_throughput_messages_per_second",
        "max_memory_usage_mb",
        "max_cpu_usage_percent",
    )

    def __init__(
        self,
        max_message_latency_ms: float = 1000,
        max_connection_time_ms: float = 3000,
        min_throughput_messages_per_second: float = 10,
        max_memory_usage_mb: float = 100,
        max_cpu_usage_percent: float = 80,
    ) -> None:
        self.max_message_latency_ms = max_message_latency_ms
        self.max_connection_time_ms = max_connection_time_ms
        self.min_throughput_messages_per_second = min_throughput_messages_per_second
        self.max_memory_usage_mb = max_memory_usage_mb
        self.max_cpu_usage_percent = max_cpu_usage_percent



class LatencyMeasurement:
    """One message's latency, stamped with when it was recorded."""

    __slots__ = ("message_id", "latency_ms", "timestamp", "message_type")

    def __init__(
        self, message_id: Optional[str], latency_ms: float, timestamp: datetime, message_type: MessageType
    ) -> None:
        self.message_id = message_id
        self.latency_ms = latency_ms
        self.timestamp = timestamp
        self.message_type = message_type

    def __repr__(self) -> str:
        return f"LatencyMeasurement({self.message_id!r}, {self.latency_ms:.3f} ms, {self.timestamp.isoformat()})"


class PerformanceAlert:
    """A threshold crossed: ``alert_type`` (``high_latency``,
    ``slow_connection``, ``low_throughput``, ``high_memory``, ``high_cpu``)
    and ``severity`` (``warning`` over the threshold, ``critical`` over twice
    it)."""

    __slots__ = ("alert_type", "severity", "value_measured", "threshold_exceeded", "connection_id", "timestamp", "message")

    def __init__(
        self,
        alert_type: str,
        severity: str,
        value_measured: float,
        threshold_exceeded: float,
        connection_id: str,
        timestamp: datetime,
        message: str,
    ) -> None:
        self.alert_type = alert_type
        self.severity = severity
        self.value_measured = value_measured
        self.threshold_exceeded = threshold_exceeded
        self.connection_id = connection_id
        self.timestamp = timestamp
        self.message = message

    def __repr__(self) -> str:
        return f"PerformanceAlert({self.alert_type}, {self.severity}, {self.value_measured!r} vs {self.threshold_exceeded!r})"


class PerformanceMetrics:
    """One connection's measurements."""

    def __init__(self, connection_id: str, user_id: str) -> None:
        self.connection_id = connection_id
        self.user_id = user_id
        self.connection_time_ms: Optional[float] = None
        self.is_connected = False
        self.message_count = 0
        self.latency_measurements: List[LatencyMeasurement] = []
        self.average_latency_ms = 0.0
        self.min_latency_ms = 0.0
        self.max_latency_ms = 0.0
        self.current_memory_usage_mb = 0.0
        self.current_cpu_usage_percent = 0.0

    def __repr__(self) -> str:
        return (
            f"PerformanceMetrics(connection_id={self.connection_id!r}, messages={self.message_count}, "
            f"average_latency_ms={self.average_latency_ms:.3f})"
        )


class ThroughputMetrics:
    """Messages over the time since tracking began, and the busiest second."""

    __slots__ = ("total_messages", "measurement_period_seconds", "messages_per_second", "peak_messages_per_second")

    def __init__(
        self,
        total_messages: int,
        measurement_period_seconds: float,
        messages_per_second: float,
        peak_messages_per_second: float,
    ) -> None:
        self.total_messages = total_messages
        self.measurement_period_seconds = measurement_period_seconds
        self.messages_per_second = messages_per_second
        self.peak_messages_per_second = peak_messages_per_second


class PerformanceReport(Record):
    """A connection's report: its numbers, a rating (``excellent``,
    ``good``, ``fair``, ``poor``) and what to do (never empty for fair and
    poor)."""

    __slots__ = (
        "connection_id",
        "total_messages",
        "average_latency_ms",
        "p95_latency_ms",
        "throughput_messages_per_second",
        "connection_duration_minutes",
        "performance_rating",
        "optimization_recommendations",
    )


class PerformanceOutlier:
    """A connection whose average latency is over twice the system's."""

    __slots__ = ("connection_id", "average_latency_ms", "system_average_latency_ms")

    def __init__(self, connection_id: str, average_latency_ms: float, system_average_latency_ms: float) -> None:
        self.connection_id = connection_id
        self.average_latency_ms = average_latency_ms
        self.system_average_latency_ms = system_average_latency_ms


class SystemMetrics(Record):
    """Every tracked connection together."""

    __slots__ = (
        "total_active_connections",
        "total_messages_processed",
        "average_system_latency_ms",
        "system_throughput_messages_per_second",
        "performance_outliers",
    )


class _Tracking:
    """What a connection's tracking needs beside its metrics."""

    __slots__ = ("started", "started_at", "alerts", "per_second", "peak")

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_at = _clock.now()
        self.alerts: Dict[str, PerformanceAlert] = {}
        self.per_second: Dict[int, int] = {}
        self.peak = 0


def _latency_of_client_timestamp(value: Any, now: float) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return (now - float(value)) * 1000.0
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            try:
                return (now - float(text)) * 1000.0
            except ValueError:
                return None
        if moment.tzinfo is None:
            return None
        return (now - moment.timestamp()) * 1000.0
    return None


class WebSocketPerformanceMonitor:
    """Measures connections; raises alerts over thresholds; rates them."""

    def __init__(
        self,
        thresholds: Optional[PerformanceThresholds] = None,
        metrics_window_minutes: float = 5,
        alert_enabled: bool = True,
        detailed_tracking: bool = True,
        auto_cleanup_enabled: bool = True,
    ) -> None:
        self.thresholds = thresholds if thresholds is not None else PerformanceThresholds()
        self.metrics_window_minutes = metrics_window_minutes
        self.alert_enabled = alert_enabled
        self.detailed_tracking = detailed_tracking
        self.auto_cleanup_enabled = auto_cleanup_enabled
        self._connection_metrics: Dict[str, PerformanceMetrics] = {}
        self._latency_measurements: Dict[str, List[LatencyMeasurement]] = {}
        self._tracking: Dict[str, _Tracking] = {}
        self._lock = asyncio.Lock()

    def _alert(self, connection_id: str, kind: str, value: float, threshold: float, high_is_bad: bool) -> None:
        tracking = self._tracking.get(connection_id)
        if tracking is None or not self.alert_enabled:
            return
        severity = _native.alert_severity(value, threshold, high_is_bad)
        direction = "over" if high_is_bad else "under"
        tracking.alerts[kind] = PerformanceAlert(
            alert_type=kind,
            severity=severity,
            value_measured=value,
            threshold_exceeded=threshold,
            connection_id=connection_id,
            timestamp=_clock.now(),
            message=f"{kind.replace('_', ' ')}: {value:.2f} {direction} the threshold {threshold:.2f}",
        )

    async def start_connection_tracking(self, connection_id: str, info: Dict[str, Any]) -> None:
        """Starts measuring a connection; ``info`` has ``user_id``."""
        metrics = PerformanceMetrics(connection_id, info.get("user_id", ""))
        self._connection_metrics[connection_id] = metrics
        self._latency_measurements[connection_id] = metrics.latency_measurements
        self._tracking[connection_id] = _Tracking()

    async def record_connection_established(self, connection_id: str) -> None:
        """The handshake's time (real milliseconds since tracking began);
        a ``slow_connection`` alert over its threshold."""
        metrics = self._connection_metrics.get(connection_id)
        tracking = self._tracking.get(connection_id)
        if metrics is None or tracking is None:
            return
        elapsed = (time.monotonic() - tracking.started) * 1000.0
        metrics.connection_time_ms = elapsed
        metrics.is_connected = True
        threshold = self.thresholds.max_connection_time_ms
        if elapsed > threshold:
            self._alert(connection_id, "slow_connection", elapsed, threshold, True)

    def _calculate_message_latency(self, message: Any) -> Optional[float]:
        """Milliseconds since the message's ``timestamp`` (Unix seconds), else
        since its payload's ``client_timestamp`` (ISO 8601 with an offset, or
        Unix seconds); never negative; ``None`` without either."""
        now = time.time()
        stamp = getattr(message, "timestamp", None)
        latency: Optional[float] = None
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            latency = (now - float(stamp)) * 1000.0
        else:
            payload = getattr(message, "payload", None)
            if isinstance(payload, dict) and "client_timestamp" in payload:
                latency = _latency_of_client_timestamp(payload["client_timestamp"], now)
        return None if latency is None else max(0.0, latency)

    async def record_message_processed(self, connection_id: str, message: Any) -> None:
        """Counts a message; its latency (``_calculate_message_latency``,
        looked up on the instance) becomes a measurement, updates the
        statistics and, over the threshold, a ``high_latency`` alert."""
        metrics = self._connection_metrics.get(connection_id)
        tracking = self._tracking.get(connection_id)
        if metrics is None or tracking is None:
            return
        metrics.message_count += 1
        second = int(time.monotonic())
        count = tracking.per_second.get(second, 0) + 1
        tracking.per_second = {second: count}
        tracking.peak = max(tracking.peak, count)
        latency = self._calculate_message_latency(message)
        if latency is None or isinstance(latency, bool) or not isinstance(latency, (int, float)):
            return
        latency = float(latency)
        measurement = LatencyMeasurement(
            getattr(message, "message_id", None),
            latency,
            _clock.now(),
            getattr(message, "message_type", None),
        )
        measurements = metrics.latency_measurements
        measurements.append(measurement)
        # Running statistics: a message costs no pass over the window's
        # measurements; a report and a clean-up recompute them all
        # (_summarize) from what the live list holds.
        n = len(measurements)
        if n == 1:
            metrics.average_latency_ms = metrics.min_latency_ms = metrics.max_latency_ms = latency
        else:
            metrics.average_latency_ms += (latency - metrics.average_latency_ms) / n
            metrics.min_latency_ms = min(metrics.min_latency_ms, latency)
            metrics.max_latency_ms = max(metrics.max_latency_ms, latency)
        threshold = self.thresholds.max_message_latency_ms
        if latency > threshold:
            self._alert(connection_id, "high_latency", latency, threshold, True)

    def _summarize(self, metrics: PerformanceMetrics) -> float:
        average, low, high, p95 = _native.latency_summary([m.latency_ms for m in metrics.latency_measurements])
        metrics.average_latency_ms = average
        metrics.min_latency_ms = low
        metrics.max_latency_ms = high
        return p95

    async def get_active_alerts(self, connection_id: str) -> List[PerformanceAlert]:
        """The connection's alerts (one per type, the latest)."""
        tracking = self._tracking.get(connection_id)
        return list(tracking.alerts.values()) if tracking is not None else []

    async def record_resource_usage(self, connection_id: str) -> None:
        """Memory (``psutil.virtual_memory().used`` in MiB) and CPU
        (``psutil.cpu_percent()``) into the connection's metrics;
        ``high_memory`` / ``high_cpu`` alerts over their thresholds."""
        metrics = self._connection_metrics.get(connection_id)
        if metrics is None:
            return
        memory_mb = psutil.virtual_memory().used / 2**20
        cpu = psutil.cpu_percent()
        metrics.current_memory_usage_mb = memory_mb
        metrics.current_cpu_usage_percent = cpu
        if memory_mb > self.thresholds.max_memory_usage_mb:
            self._alert(connection_id, "high_memory", memory_mb, self.thresholds.max_memory_usage_mb, True)
        if cpu > self.thresholds.max_cpu_usage_percent:
            self._alert(connection_id, "high_cpu", cpu, self.thresholds.max_cpu_usage_percent, True)

    def _throughput(self, connection_id: str) -> Optional[ThroughputMetrics]:
        metrics = self._connection_metrics.get(connection_id)
        tracking = self._tracking.get(connection_id)
        if metrics is None or tracking is None:
            return None
        period = max(time.monotonic() - tracking.started, 1e-9)
        rate = metrics.message_count / period
        return ThroughputMetrics(
            total_messages=metrics.message_count,
            measurement_period_seconds=period,
            messages_per_second=rate,
            peak_messages_per_second=float(max(tracking.peak, rate)),
        )

    async def calculate_throughput(self, connection_id: str) -> Optional[ThroughputMetrics]:
        """Messages per second since tracking began, and the busiest second;
        a ``low_throughput`` alert under the minimum once measured for a
        minute."""
        throughput = self._throughput(connection_id)
        if throughput is None:
            return None
        minimum = self.thresholds.min_throughput_messages_per_second
        if (
            throughput.measurement_period_seconds >= _LOW_THROUGHPUT_AFTER_SECONDS
            and throughput.messages_per_second < minimum
        ):
            self._alert(connection_id, "low_throughput", throughput.messages_per_second, minimum, False)
        return throughput

    async def generate_performance_report(self, connection_id: str) -> Optional[PerformanceReport]:
        """The connection's report with its rating and recommendations."""
        metrics = self._connection_metrics.get(connection_id)
        tracking = self._tracking.get(connection_id)
        throughput = self._throughput(connection_id)
        if metrics is None or tracking is None or throughput is None:
            return None
        p95 = self._summarize(metrics)
        low = tracking.alerts.get("low_throughput")
        rating, advice = _native.rate_performance(
            p95,
            throughput.messages_per_second if low is not None else None,
            metrics.connection_time_ms,
            float(self.thresholds.max_message_latency_ms),
            float(self.thresholds.max_connection_time_ms),
            float(self.thresholds.min_throughput_messages_per_second),
        )
        return PerformanceReport(
            connection_id=connection_id,
            total_messages=metrics.message_count,
            average_latency_ms=float(metrics.average_latency_ms),
            p95_latency_ms=float(p95),
            throughput_messages_per_second=throughput.messages_per_second,
            connection_duration_minutes=float(throughput.measurement_period_seconds / 60.0),
            performance_rating=rating,
            optimization_recommendations=list(advice),
        )

    async def cleanup_old_metrics(self) -> int:
        """Drops the measurements whose (live) ``timestamp`` is older than
        ``metrics_window_minutes``; how many. Nothing with
        ``auto_cleanup_enabled`` off."""
        if not self.auto_cleanup_enabled:
            return 0
        cutoff = _clock.seconds(_clock.now()) - self.metrics_window_minutes * 60.0
        removed = 0
        for metrics in self._connection_metrics.values():
            measurements = metrics.latency_measurements
            kept = [m for m in measurements if _clock.seconds(m.timestamp) >= cutoff]
            if len(kept) != len(measurements):
                removed += len(measurements) - len(kept)
                measurements[:] = kept
                self._summarize(metrics)
        return removed

    async def get_system_wide_metrics(self) -> SystemMetrics:
        """Every tracked connection together, with the outliers (average
        latency over twice the system's)."""
        averages = {
            cid: m.average_latency_ms for cid, m in self._connection_metrics.items() if m.latency_measurements
        }
        system_average, _low, _high, _p95 = _native.latency_summary(list(averages.values()))
        outliers = [
            PerformanceOutlier(cid, average, system_average)
            for cid, average in averages.items()
            if system_average > 0 and average > 2 * system_average
        ]
        throughput = 0.0
        for cid in self._connection_metrics:
            t = self._throughput(cid)
            if t is not None:
                throughput += t.messages_per_second
        return SystemMetrics(
            total_active_connections=len(self._connection_metrics),
            total_messages_processed=sum(m.message_count for m in self._connection_metrics.values()),
            average_system_latency_ms=max(0.0, system_average),
            system_throughput_messages_per_second=throughput,
            performance_outliers=outliers,
        )


PerformanceMonitor = WebSocketPerformanceMonitor
