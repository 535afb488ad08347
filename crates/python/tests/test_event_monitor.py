"""``websocket_core.event_monitor``: every run delivers its critical events, in order."""

import asyncio

import pytest
from conftest import CRITICAL, ago, message

from websocket_core.event_monitor import (
    ChatEventMonitor,
    EventMetrics,
    EventTiming,
    EventTracker,
    EventValidationError,
    MissingCriticalEventError,
    WebSocketEventMonitor,
)
from websocket_core.types import MessageType as T


async def tracked(monitor: WebSocketEventMonitor, events, session="s", **data):
    await monitor.start_session_tracking(session, {"user_id": "u", **data})
    for kind in events:
        await monitor.record_event(session, message(kind))
    return monitor._session_trackers[session]


def test_names_defaults_and_attributes():
    assert ChatEventMonitor is WebSocketEventMonitor
    assert issubclass(MissingCriticalEventError, EventValidationError)
    assert issubclass(EventValidationError, Exception)
    m = WebSocketEventMonitor()
    assert m.track_critical_events is True and m.validate_event_order is True
    assert m.metrics_enabled is True and m.auto_cleanup_enabled is True
    assert m._session_trackers == {} and m._validation_lock is not None
    off = WebSocketEventMonitor(track_critical_events=False, validate_event_order=False,
                                metrics_enabled=False, auto_cleanup_enabled=False)
    assert (off.track_critical_events, off.validate_event_order, off.metrics_enabled,
            off.auto_cleanup_enabled) == (False, False, False, False)


@pytest.mark.asyncio
async def test_tracking_keeps_the_data_and_the_same_messages():
    m = WebSocketEventMonitor()
    started = ago(minutes=3)
    await m.start_session_tracking("s", {"user_id": "u", "thread_id": "t", "run_id": "r",
                                         "agent_name": "a", "started_at": started})
    tracker = m._session_trackers["s"]
    assert isinstance(tracker, EventTracker)
    assert (tracker.user_id, tracker.thread_id, tracker.run_id, tracker.agent_name) == ("u", "t", "r", "a")
    assert tracker.started_at == started
    assert tracker.is_complete is False and tracker.is_timeout is False and tracker.completed_at is None
    sent = message(T.AGENT_STARTED)
    await m.record_event("s", sent)
    assert tracker.events_received[0] is sent


@pytest.mark.asyncio
async def test_a_complete_run_validates():
    m = WebSocketEventMonitor()
    tracker = await tracked(m, CRITICAL)
    assert await m.validate_session_completion("s") is True
    assert tracker.is_complete is True and tracker.completed_at is not None


@pytest.mark.asyncio
async def test_missing_events_are_named_and_checked_before_order():
    m = WebSocketEventMonitor()
    await tracked(m, [T.TOOL_EXECUTING, T.AGENT_STARTED, T.TOOL_EXECUTING])
    with pytest.raises(MissingCriticalEventError) as raised:
        await m.validate_session_completion("s")
    text = str(raised.value)
    assert "missing critical events" in text.lower()
    for name in ("AGENT_THINKING", "TOOL_COMPLETED", "AGENT_COMPLETED"):
        assert name in text
    assert "AGENT_STARTED" not in text
    assert m._session_trackers["s"].is_complete is False


@pytest.mark.parametrize(
    "events",
    [
        # The first is not AGENT_STARTED.
        [T.AGENT_THINKING, T.AGENT_STARTED, T.TOOL_EXECUTING, T.TOOL_COMPLETED, T.AGENT_COMPLETED],
        # A second AGENT_STARTED.
        [T.AGENT_STARTED, T.AGENT_STARTED, T.AGENT_THINKING, T.TOOL_EXECUTING, T.TOOL_COMPLETED, T.AGENT_COMPLETED],
        # Something after AGENT_COMPLETED.
        [T.AGENT_STARTED, T.AGENT_THINKING, T.TOOL_EXECUTING, T.TOOL_COMPLETED, T.AGENT_COMPLETED, T.AGENT_THINKING],
        # TOOL_COMPLETED with no open TOOL_EXECUTING.
        [T.AGENT_STARTED, T.AGENT_THINKING, T.TOOL_COMPLETED, T.TOOL_EXECUTING, T.AGENT_COMPLETED],
    ],
)
@pytest.mark.asyncio
async def test_each_order_rule(events):
    m = WebSocketEventMonitor()
    await tracked(m, events)
    with pytest.raises(EventValidationError) as raised:
        await m.validate_session_completion("s")
    assert type(raised.value) is EventValidationError
    assert "event order" in str(raised.value)
    assert m._session_trackers["s"].is_complete is False


@pytest.mark.asyncio
async def test_only_critical_events_take_part_in_order():
    m = WebSocketEventMonitor()
    await tracked(m, [T.USER_MESSAGE, T.AGENT_STARTED, T.AGENT_THINKING, T.AGENT_RESPONSE_CHUNK,
                      T.TOOL_EXECUTING, T.TOOL_COMPLETED, T.AGENT_COMPLETED, T.CHAT])
    assert await m.validate_session_completion("s") is True


@pytest.mark.asyncio
async def test_the_switches_turn_the_rules_off():
    lax = WebSocketEventMonitor(track_critical_events=False)
    await tracked(lax, [T.AGENT_STARTED])
    assert await lax.validate_session_completion("s") is True
    unordered = WebSocketEventMonitor(validate_event_order=False)
    await tracked(unordered, list(reversed(CRITICAL)))
    assert await unordered.validate_session_completion("s") is True


@pytest.mark.asyncio
async def test_record_never_raises_for_a_known_session_and_unknown_ones_are_told():
    m = WebSocketEventMonitor()
    await tracked(m, [T.AGENT_COMPLETED, T.AGENT_COMPLETED, T.TOOL_COMPLETED])
    with pytest.raises(EventValidationError):
        await m.record_event("nobody", message(T.AGENT_STARTED))
    with pytest.raises(EventValidationError):
        await m.validate_session_completion("nobody")


@pytest.mark.asyncio
async def test_metrics_duration_count_and_timings():
    m = WebSocketEventMonitor()
    assert await m.get_session_metrics("nobody") is None
    await tracked(m, CRITICAL[:2], started_at=ago(seconds=2))
    metrics = await m.get_session_metrics("s")
    assert isinstance(metrics, EventMetrics)
    assert metrics.total_events == 2
    assert metrics.session_duration_ms >= 2000
    assert [t.event_type for t in metrics.event_timings] == CRITICAL[:2]
    assert all(isinstance(t, EventTiming) and t.latency_ms >= 0 for t in metrics.event_timings)
    assert metrics.event_timings[0].timestamp <= metrics.event_timings[1].timestamp
    # A fresh session still has a positive duration.
    await m.start_session_tracking("new", {"user_id": "u"})
    assert (await m.get_session_metrics("new")).session_duration_ms > 0


@pytest.mark.asyncio
async def test_duration_stops_at_completion():
    m = WebSocketEventMonitor()
    await tracked(m, CRITICAL, started_at=ago(seconds=1))
    await m.validate_session_completion("s")
    first = (await m.get_session_metrics("s")).session_duration_ms
    await asyncio.sleep(0.02)
    assert (await m.get_session_metrics("s")).session_duration_ms == first


@pytest.mark.asyncio
async def test_timeouts_read_the_live_started_at():
    m = WebSocketEventMonitor()
    await tracked(m, [T.AGENT_STARTED])
    assert await m.check_session_timeout("s", timeout_minutes=30) is False
    m._session_trackers["s"].started_at = ago(minutes=31)
    assert await m.check_session_timeout("s", timeout_minutes=30) is True
    assert await m.check_session_timeout("nobody") is False
    assert await m.mark_session_timeout("s") is True
    tracker = m._session_trackers["s"]
    assert tracker.is_timeout is True and tracker.is_complete is False
    assert await m.mark_session_timeout("nobody") is False


@pytest.mark.asyncio
async def test_cleanup_removes_old_complete_or_timed_out_sessions():
    m = WebSocketEventMonitor()
    await tracked(m, CRITICAL, session="done")
    await m.validate_session_completion("done")
    await tracked(m, [T.AGENT_STARTED], session="running")
    await tracked(m, [T.AGENT_STARTED], session="stuck")
    await m.mark_session_timeout("stuck")
    assert await m.cleanup_completed_sessions(max_age_minutes=60) == 0
    m._session_trackers["done"].completed_at = ago(minutes=61)
    assert await m.cleanup_completed_sessions(max_age_minutes=60) == 1
    assert set(m._session_trackers) == {"running", "stuck"}
    assert await m.cleanup_completed_sessions(max_age_minutes=0) == 1
    assert set(m._session_trackers) == {"running"}
    off = WebSocketEventMonitor(auto_cleanup_enabled=False)
    await tracked(off, CRITICAL)
    await off.validate_session_completion("s")
    assert await off.cleanup_completed_sessions(max_age_minutes=0) == 0


@pytest.mark.asyncio
async def test_concurrent_records_lose_nothing():
    m = WebSocketEventMonitor()
    await m.start_session_tracking("s", {"user_id": "u"})
    sent = [message(T.AGENT_THINKING, n=n) for n in range(200)]
    await asyncio.gather(*(asyncio.create_task(m.record_event("s", s)) for s in sent))
    tracker = m._session_trackers["s"]
    assert len(tracker.events_received) == 200
    assert {id(x) for x in tracker.events_received} == {id(x) for x in sent}
