"""``websocket_core.rate_limiter``: connection caps and exact message windows."""

import asyncio

import pytest
from conftest import ago, message

from websocket_core.rate_limiter import (
    RateLimitConfig,
    RateLimitExceededException,
    UserRateLimitState,
    WebSocketRateLimiter,
)
from websocket_core.types import MessageType as T


def test_names_defaults_and_value_equality():
    c = RateLimitConfig()
    assert (c.max_connections_per_user, c.max_messages_per_minute, c.max_messages_per_hour) == (3, 60, 1000)
    assert (c.connection_window_seconds, c.message_window_seconds, c.burst_allowance) == (60, 60, 0)
    assert c.cleanup_inactive_after_seconds == 3600
    assert RateLimitConfig(max_messages_per_minute=5) == RateLimitConfig(max_messages_per_minute=5)
    assert RateLimitConfig(max_messages_per_minute=5) != c
    given = RateLimitConfig(max_connections_per_user=1)
    limiter = WebSocketRateLimiter(given)
    assert limiter.config is given
    assert WebSocketRateLimiter().config == RateLimitConfig()
    assert limiter._user_states == {} and limiter._state_lock is not None and limiter._cleanup_lock is not None
    e = RateLimitExceededException("no", retry_after=2.5)
    assert str(e) == "no" and e.retry_after == 2.5
    assert RateLimitExceededException("no").retry_after is None


@pytest.mark.asyncio
async def test_connections_up_to_the_limit_and_the_entry_stays():
    limiter = WebSocketRateLimiter(RateLimitConfig(max_connections_per_user=2))
    assert await limiter.check_connection_limit("u") is True
    await limiter.record_connection("u", "c1")
    await limiter.record_connection("u", "c2")
    assert await limiter.check_connection_limit("u") is False
    with pytest.raises(RateLimitExceededException) as raised:
        await limiter.record_connection("u", "c3")
    assert "connection limit" in str(raised.value)
    state = limiter._user_states["u"]
    assert isinstance(state, UserRateLimitState) and state.active_connections == ["c1", "c2"]
    before = state.last_activity = ago(minutes=5)
    await limiter.remove_connection("u", "c1")
    assert state.active_connections == ["c2"] and state.last_activity > before
    await limiter.remove_connection("u", "c2")
    assert "u" in limiter._user_states
    assert await limiter.check_connection_limit("u") is True


@pytest.mark.asyncio
async def test_messages_up_to_the_minute_limit_then_refused_with_retry_after():
    limiter = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=3))
    for _ in range(3):
        assert await limiter.check_message_rate_limit("u") is True
        await limiter.record_message("u", message(T.USER_MESSAGE))
    assert await limiter.check_message_rate_limit("u") is False
    state = limiter._user_states["u"]
    with pytest.raises(RateLimitExceededException) as raised:
        await limiter.record_message("u", message(T.CHAT))
    assert "message rate limit" in str(raised.value)
    assert 59 < raised.value.retry_after <= 60
    assert state.violation_count == 1 and len(state.message_timestamps) == 3


@pytest.mark.asyncio
async def test_the_live_list_is_what_is_counted():
    limiter = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=2))
    await limiter.record_message("u", message(T.CHAT))
    await limiter.record_message("u", message(T.CHAT))
    state = limiter._user_states["u"]
    held = state.message_timestamps
    assert all(t.tzinfo is not None for t in held) and held[0] <= held[1]
    assert await limiter.check_message_rate_limit("u") is False
    # Age one entry: one more message fits the minute.
    held[0] = ago(minutes=2)
    assert state.message_timestamps is held
    assert await limiter.check_message_rate_limit("u") is True
    await limiter.record_message("u", message(T.CHAT))
    assert len(held) == 3
    # Every way of changing the list counts.
    held.clear()
    assert await limiter.check_message_rate_limit("u") is True
    held.extend([ago(seconds=1), ago(seconds=2)])
    assert await limiter.check_message_rate_limit("u") is False
    del held[0]
    assert await limiter.check_message_rate_limit("u") is True
    state.message_timestamps = [ago(seconds=5), ago(seconds=4)]
    assert await limiter.check_message_rate_limit("u") is False


@pytest.mark.asyncio
async def test_the_hour_window_and_the_burst_allowance():
    limiter = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=100, max_messages_per_hour=3))
    limiter._state("u").message_timestamps = [ago(minutes=50), ago(minutes=40), ago(minutes=30)]
    with pytest.raises(RateLimitExceededException) as raised:
        await limiter.record_message("u", message(T.CHAT))
    # The oldest leaves the hour in ten minutes.
    assert 9 * 60 < raised.value.retry_after <= 10 * 60
    burst = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=2, burst_allowance=1))
    for _ in range(3):
        await burst.record_message("u", message(T.CHAT))
    with pytest.raises(RateLimitExceededException):
        await burst.record_message("u", message(T.CHAT))


@pytest.mark.asyncio
async def test_fifty_concurrent_messages_append_fifty():
    limiter = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=100))
    await asyncio.gather(*(asyncio.create_task(limiter.record_message("u", message(T.CHAT))) for _ in range(50)))
    assert len(limiter._user_states["u"].message_timestamps) == 50
    over = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=30))
    results = await asyncio.gather(
        *(asyncio.create_task(over.record_message("u", message(T.CHAT))) for _ in range(50)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 30
    assert sum(isinstance(r, RateLimitExceededException) for r in results) == 20
    state = over._user_states["u"]
    assert len(state.message_timestamps) == 30 and state.violation_count == 20


@pytest.mark.asyncio
async def test_cleanup_judges_live_entries_and_inactive_users():
    limiter = WebSocketRateLimiter(RateLimitConfig(cleanup_inactive_after_seconds=600))
    for _ in range(3):
        await limiter.record_message("u", message(T.CHAT))
    held = limiter._user_states["u"].message_timestamps
    held[0] = ago(hours=2)
    assert await limiter._cleanup_expired_data() == 1
    assert len(held) == 2 and limiter._user_states["u"].message_timestamps is held
    # Gone: no connection, inactive for longer than allowed.
    limiter._user_states["u"].last_activity = ago(minutes=11)
    await limiter.record_connection("v", "c")
    limiter._user_states["v"].last_activity = ago(minutes=11)
    removed = await limiter.cleanup_expired_data()
    assert removed >= 1 and "u" not in limiter._user_states and "v" in limiter._user_states
    keep_all = WebSocketRateLimiter(RateLimitConfig(cleanup_inactive_after_seconds=None))
    await keep_all.record_message("w", message(T.CHAT))
    keep_all._user_states["w"].last_activity = ago(days=3)
    await keep_all._cleanup_expired_data()
    assert "w" in keep_all._user_states
