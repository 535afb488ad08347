"""``websocket_core.performance_monitor_core``: every connection measured."""

import time
from datetime import datetime, timezone
from unittest import mock

import psutil
import pytest
from conftest import ago

from websocket_core.performance_monitor_core import (
    LatencyMeasurement,
    PerformanceAlert,
    PerformanceMetrics,
    PerformanceMonitor,
    PerformanceReport,
    PerformanceThresholds,
    SystemMetrics,
    ThroughputMetrics,
    WebSocketPerformanceMonitor,
)
from websocket_core.types import MessageType as T
from websocket_core.types import WebSocketMessage


def stamped(seconds_ago: float, **kw) -> WebSocketMessage:
    return WebSocketMessage(message_type=T.CHAT, timestamp=time.time() - seconds_ago, **kw)


async def tracked(monitor, cid="c"):
    await monitor.start_connection_tracking(cid, {"user_id": "u"})
    return monitor._connection_metrics[cid]


def test_names_defaults_and_attributes():
    assert PerformanceMonitor is WebSocketPerformanceMonitor
    t = PerformanceThresholds()
    assert (t.max_message_latency_ms, t.max_connection_time_ms, t.min_throughput_messages_per_second,
            t.max_memory_usage_mb, t.max_cpu_usage_percent) == (1000, 3000, 10, 100, 80)
    assert PerformanceThresholds(max_message_latency_ms=5) == PerformanceThresholds(max_message_latency_ms=5)
    m = WebSocketPerformanceMonitor()
    assert m.thresholds == PerformanceThresholds()
    assert (m.metrics_window_minutes, m.alert_enabled, m.detailed_tracking, m.auto_cleanup_enabled) == (
        5, True, True, True)
    assert m._connection_metrics == {} and len(m._latency_measurements) == 0
    given = PerformanceThresholds(max_cpu_usage_percent=50)
    assert WebSocketPerformanceMonitor(thresholds=given).thresholds is given
    m.anything = 1  # the instance accepts attribute assignment


@pytest.mark.asyncio
async def test_handshake_time_and_the_slow_connection_alert():
    m = WebSocketPerformanceMonitor(thresholds=PerformanceThresholds(max_connection_time_ms=10))
    metrics = await tracked(m)
    assert isinstance(metrics, PerformanceMetrics) and metrics.is_connected is False
    time.sleep(0.03)
    await m.record_connection_established("c")
    assert metrics.is_connected is True and metrics.connection_time_ms >= 30
    [alert] = await m.get_active_alerts("c")
    assert isinstance(alert, PerformanceAlert)
    assert alert.alert_type == "slow_connection" and alert.severity == "critical"
    assert alert.threshold_exceeded == 10 and alert.value_measured >= 30 and alert.connection_id == "c"


def test_latency_sources():
    m = WebSocketPerformanceMonitor()
    assert 1900 < m._calculate_message_latency(stamped(2)) < 2500
    iso = datetime.fromtimestamp(time.time() - 1, timezone.utc).isoformat()
    assert 900 < m._calculate_message_latency(WebSocketMessage(message_type=T.CHAT,
                                                               payload={"client_timestamp": iso})) < 1500
    unix = WebSocketMessage(message_type=T.CHAT, payload={"client_timestamp": time.time() - 3})
    assert 2900 < m._calculate_message_latency(unix) < 3500
    assert m._calculate_message_latency(WebSocketMessage(message_type=T.CHAT)) is None
    future = WebSocketMessage(message_type=T.CHAT, timestamp=time.time() + 60)
    assert m._calculate_message_latency(future) == 0


@pytest.mark.asyncio
async def test_messages_measurements_statistics_and_the_latency_alert():
    m = WebSocketPerformanceMonitor()
    metrics = await tracked(m)
    await m.record_message_processed("c", stamped(0.1, message_id="a"))
    await m.record_message_processed("c", stamped(0.3, message_id="b"))
    await m.record_message_processed("c", WebSocketMessage(message_type=T.CHAT))  # no latency
    assert metrics.message_count == 3
    assert [x.message_id for x in metrics.latency_measurements] == ["a", "b"]
    assert all(isinstance(x, LatencyMeasurement) for x in metrics.latency_measurements)
    assert m._latency_measurements["c"] is metrics.latency_measurements
    assert 90 < metrics.min_latency_ms < metrics.average_latency_ms < metrics.max_latency_ms < 400
    assert await m.get_active_alerts("c") == []
    await m.record_message_processed("c", stamped(2.5))
    [alert] = await m.get_active_alerts("c")
    assert (alert.alert_type, alert.severity) == ("high_latency", "critical")
    quiet = WebSocketPerformanceMonitor(alert_enabled=False)
    await tracked(quiet)
    await quiet.record_message_processed("c", stamped(5))
    assert await quiet.get_active_alerts("c") == []


@pytest.mark.asyncio
async def test_the_latency_function_is_looked_up_on_the_instance():
    m = WebSocketPerformanceMonitor()
    metrics = await tracked(m)
    m._calculate_message_latency = lambda message: 1500.0
    await m.record_message_processed("c", WebSocketMessage(message_type=T.CHAT))
    assert metrics.latency_measurements[-1].latency_ms == 1500.0
    [alert] = await m.get_active_alerts("c")
    assert alert.severity == "warning"


@pytest.mark.asyncio
async def test_resources_through_psutil_at_call_time():
    m = WebSocketPerformanceMonitor(thresholds=PerformanceThresholds(max_memory_usage_mb=100,
                                                                     max_cpu_usage_percent=80))
    metrics = await tracked(m)
    memory = mock.Mock(used=150 * 2**20)
    with mock.patch.object(psutil, "virtual_memory", return_value=memory), \
            mock.patch.object(psutil, "cpu_percent", return_value=95.0):
        await m.record_resource_usage("c")
    assert metrics.current_memory_usage_mb == 150 and metrics.current_cpu_usage_percent == 95.0
    kinds = {a.alert_type: a.severity for a in await m.get_active_alerts("c")}
    assert kinds == {"high_memory": "warning", "high_cpu": "warning"}


@pytest.mark.asyncio
async def test_throughput_report_and_rating():
    m = WebSocketPerformanceMonitor()
    await tracked(m)
    assert await m.calculate_throughput("nobody") is None
    for _ in range(5):
        await m.record_message_processed("c", stamped(0.01))
    t = await m.calculate_throughput("c")
    assert isinstance(t, ThroughputMetrics) and t.total_messages == 5
    assert t.measurement_period_seconds > 0
    assert t.messages_per_second == pytest.approx(5 / t.measurement_period_seconds, rel=0.5)
    assert t.peak_messages_per_second >= 1
    report = await m.generate_performance_report("c")
    assert isinstance(report, PerformanceReport)
    assert report.connection_id == "c" and report.total_messages == 5
    assert report.performance_rating == "excellent" and report.p95_latency_ms >= report.average_latency_ms > 0
    assert isinstance(report.connection_duration_minutes, float)
    assert await m.generate_performance_report("nobody") is None
    slow = WebSocketPerformanceMonitor()
    await tracked(slow)
    await slow.record_message_processed("c", stamped(0.9))
    report = await slow.generate_performance_report("c")
    assert report.performance_rating == "fair" and report.optimization_recommendations
    await slow.record_message_processed("c", stamped(3))
    report = await slow.generate_performance_report("c")
    assert report.performance_rating == "poor" and report.optimization_recommendations
    empty = WebSocketPerformanceMonitor()
    await tracked(empty)
    assert (await empty.generate_performance_report("c")).average_latency_ms == 0.0


@pytest.mark.asyncio
async def test_cleanup_reads_the_live_timestamps():
    m = WebSocketPerformanceMonitor(metrics_window_minutes=5)
    metrics = await tracked(m)
    for _ in range(3):
        await m.record_message_processed("c", stamped(0.1))
    metrics.latency_measurements[0].timestamp = ago(minutes=6)
    assert await m.cleanup_old_metrics() == 1
    assert len(metrics.latency_measurements) == 2
    off = WebSocketPerformanceMonitor(auto_cleanup_enabled=False)
    metrics = await tracked(off)
    await off.record_message_processed("c", stamped(0.1))
    metrics.latency_measurements[0].timestamp = ago(minutes=60)
    assert await off.cleanup_old_metrics() == 0


@pytest.mark.asyncio
async def test_system_metrics_and_outliers():
    m = WebSocketPerformanceMonitor()
    for cid in ("a", "b", "c", "d"):
        await tracked(m, cid)
    for cid in ("a", "b", "c"):
        await m.record_message_processed(cid, stamped(0.01))
    await m.record_message_processed("d", stamped(1.0))
    system = await m.get_system_wide_metrics()
    assert isinstance(system, SystemMetrics)
    assert system.total_active_connections == 4 and system.total_messages_processed == 4
    assert system.average_system_latency_ms >= 0 and system.system_throughput_messages_per_second > 0
    assert [o.connection_id for o in system.performance_outliers] == ["d"]
    assert system.performance_outliers[0].average_latency_ms > 2 * system.average_system_latency_ms


@pytest.mark.asyncio
async def test_concurrent_messages_lose_no_count():
    import asyncio

    m = WebSocketPerformanceMonitor()
    metrics = await tracked(m)
    await asyncio.gather(*(asyncio.create_task(m.record_message_processed("c", stamped(0.01)))
                           for _ in range(100)))
    assert metrics.message_count == 100 and len(metrics.latency_measurements) == 100
