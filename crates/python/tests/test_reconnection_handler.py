"""``websocket_core.reconnection_handler``: lost sessions come back."""

import asyncio
from unittest import mock

import pytest
from conftest import ago

from websocket_core.reconnection_handler import (
    MaxRetriesExceededException,
    ReconnectionConfig,
    ReconnectionMetrics,
    ReconnectionSession,
    ReconnectionState,
    WebSocketReconnectionHandler,
)


def handler(**config):
    manager, buffer = mock.Mock(), mock.Mock()
    manager.attempt_reconnection = mock.AsyncMock(return_value=True)
    manager.send_messages = mock.AsyncMock()
    buffer.get_buffered_messages = mock.AsyncMock(return_value=[])
    return WebSocketReconnectionHandler(ReconnectionConfig(**config), manager, buffer)


async def lost(h, session="s"):
    await h.register_session(session, {"user_id": "u", "connection_id": "c1", "thread_id": "t"})
    await h.handle_connection_lost(session, reason="network")


def test_names_defaults_and_attributes():
    c = ReconnectionConfig()
    assert (c.max_retry_attempts, c.initial_retry_delay_seconds, c.max_retry_delay_seconds,
            c.backoff_multiplier, c.session_timeout_minutes, c.message_buffer_max_size,
            c.jitter_factor) == (5, 1.0, 30.0, 2.0, 30, 1000, 0.0)
    assert ReconnectionConfig(max_retry_attempts=2) == ReconnectionConfig(max_retry_attempts=2)
    manager, buffer = mock.Mock(), mock.Mock()
    h = WebSocketReconnectionHandler(c, manager, buffer)
    assert h.config is c and h.websocket_manager is manager and h.message_buffer is buffer
    assert h._active_sessions == {} and h._reconnection_states == {} and h._cleanup_lock is not None
    assert WebSocketReconnectionHandler().config == ReconnectionConfig()


def test_backoff_exactly():
    h = handler(initial_retry_delay_seconds=1.0, backoff_multiplier=2.0, max_retry_delay_seconds=30.0)
    assert [h._calculate_backoff_delay(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@pytest.mark.asyncio
async def test_register_and_lose():
    h = handler()
    await h.register_session("s", {"user_id": "u", "connection_id": "c1", "client_ip": "1.2.3.4"})
    session = h._active_sessions["s"]
    assert isinstance(session, ReconnectionSession) and session.is_active is True
    assert (session.user_id, session.connection_id, session.client_ip) == ("u", "c1", "1.2.3.4")
    await h.handle_connection_lost("s", reason="network")
    state = h._reconnection_states["s"]
    assert isinstance(state, ReconnectionState)
    assert (state.retry_count, state.is_reconnecting, state.lost_reason) == (0, True, "network")
    assert session.is_active is False and session.disconnected_at is not None


@pytest.mark.asyncio
async def test_a_successful_try():
    h = handler()
    await lost(h)
    session = h._active_sessions["s"]
    session.disconnected_at = ago(seconds=3)
    assert await h.attempt_reconnection("s") is True
    h.websocket_manager.attempt_reconnection.assert_awaited_once_with(session)
    state = h._reconnection_states["s"]
    assert state.is_reconnecting is False and state.reconnected_at is not None and state.retry_count == 1
    assert session.is_active is True and session.reconnected_at is not None
    assert session.reconnection_count == 1 and session.total_downtime_seconds >= 3
    h.message_buffer.get_buffered_messages.assert_not_called()
    h.websocket_manager.send_messages.assert_not_called()


@pytest.mark.asyncio
async def test_retries_sleep_the_backoff_through_asyncio_then_give_up():
    h = handler(max_retry_attempts=4, initial_retry_delay_seconds=0.5, backoff_multiplier=3.0,
                max_retry_delay_seconds=2.0)
    h.websocket_manager.attempt_reconnection = mock.AsyncMock(return_value=False)
    await lost(h)
    with mock.patch("asyncio.sleep", new=mock.AsyncMock()) as sleep:
        with pytest.raises(MaxRetriesExceededException) as raised:
            await h.attempt_reconnection("s")
    assert "max retry attempts" in str(raised.value).lower()
    assert [c.args[0] for c in sleep.await_args_list] == [0.5, 1.5, 2.0]
    state = h._reconnection_states["s"]
    assert state.retry_count == 4 and state.is_reconnecting is False and state.failed_permanently is True
    assert h.websocket_manager.attempt_reconnection.await_count == 4


@pytest.mark.asyncio
async def test_a_future_result_is_awaited_and_success_comes_later():
    h = handler()
    loop = asyncio.get_running_loop()
    results = iter([False, False, True])

    def attempt(session):
        future = loop.create_future()
        future.set_result(next(results))
        return future

    h.websocket_manager.attempt_reconnection = attempt
    await lost(h)
    with mock.patch("asyncio.sleep", new=mock.AsyncMock()) as sleep:
        assert await h.attempt_reconnection("s") is True
    assert sleep.await_count == 2 and h._reconnection_states["s"].retry_count == 3


@pytest.mark.asyncio
async def test_refusals_without_touching_the_manager():
    h = handler()
    assert await h.attempt_reconnection("nobody") is False
    await h.register_session("s", {"user_id": "u", "connection_id": "c"})
    assert await h.attempt_reconnection("s") is False  # not reconnecting
    await h.handle_connection_lost("s")
    gate = asyncio.Event()

    async def slow(session):
        await gate.wait()
        return True

    h.websocket_manager.attempt_reconnection = mock.AsyncMock(side_effect=slow)
    first = asyncio.create_task(h.attempt_reconnection("s"))
    await asyncio.sleep(0)
    assert await h.attempt_reconnection("s") is False  # one in flight
    gate.set()
    assert await first is True
    assert h.websocket_manager.attempt_reconnection.await_count == 1


@pytest.mark.asyncio
async def test_successful_reconnection_replays_the_same_list_once():
    h = handler()
    await lost(h)
    buffered = [{"n": 1}, {"n": 2}]
    h.message_buffer.get_buffered_messages = mock.AsyncMock(return_value=buffered)
    assert await h.handle_successful_reconnection("s", "c2") == 2
    h.message_buffer.get_buffered_messages.assert_awaited_once_with("u")
    h.websocket_manager.send_messages.assert_awaited_once()
    args = h.websocket_manager.send_messages.await_args.args
    assert args[0] == "c2" and args[1] is buffered
    session = h._active_sessions["s"]
    assert session.connection_id == "c2" and session.is_active is True and session.reconnected_at is not None
    assert h._reconnection_states["s"].is_reconnecting is False
    # Nothing buffered: nothing sent.
    h2 = handler()
    await h2.register_session("s", {"user_id": "u", "connection_id": "c"})
    assert await h2.handle_successful_reconnection("s", "c3") == 0
    h2.websocket_manager.send_messages.assert_not_called()


@pytest.mark.asyncio
async def test_cleanup_and_metrics():
    h = handler(session_timeout_minutes=30)
    await lost(h, "old")
    await lost(h, "new")
    assert await h.attempt_reconnection("new") is True
    h._active_sessions["old"].last_activity = ago(minutes=31)
    assert await h.cleanup_expired_sessions() == 1
    assert "old" not in h._active_sessions and "old" not in h._reconnection_states
    metrics = await h.get_session_metrics("new")
    assert isinstance(metrics, ReconnectionMetrics)
    assert (metrics.total_disconnections, metrics.total_reconnection_attempts,
            metrics.successful_reconnections) == (1, 1, 1)
    assert metrics.average_reconnection_time_seconds >= 0
    assert await h.get_session_metrics("old") is None
