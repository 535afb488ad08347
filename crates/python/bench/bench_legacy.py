"""The legacy package's hot calls beside the anchors Python teams use today,
in one run:

- the rate limiter's ``record_message`` against the ``limits`` package's
  moving-window limiter on its memory storage (``MovingWindowRateLimiter.hit``),
  the same limits (60 a minute, 1000 an hour) for 10 000 users taking turns,
  every decision an admission: decisions per second of each, and the ratio;
- the event monitor's ``record_event``: microseconds per call.

Prints one JSON line (``cargo xtask bench`` writes it into BENCHMARKS.md).
Usage: python bench/bench_legacy.py [--quick]
"""

import asyncio
import json
import sys
import time

from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from websocket_core.event_monitor import WebSocketEventMonitor
from websocket_core.rate_limiter import RateLimitConfig, WebSocketRateLimiter
from websocket_core.types import MessageType, WebSocketMessage

QUICK = "--quick" in sys.argv
USERS = 2_000 if QUICK else 10_000
ROUNDS = 10 if QUICK else 40  # messages per user: within both limits
REPEATS = 3


def best(measure):
    return min(measure() for _ in range(REPEATS))


def limits_seconds() -> float:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    minute, hour = RateLimitItemPerMinute(60), RateLimitItemPerHour(1000)
    users = [f"user-{n}" for n in range(USERS)]
    started = time.perf_counter()
    for _ in range(ROUNDS):
        for user in users:
            if not (limiter.hit(minute, user) and limiter.hit(hour, user)):
                raise AssertionError("limits refused an admission")
    return time.perf_counter() - started


def ours_seconds() -> float:
    limiter = WebSocketRateLimiter(RateLimitConfig(max_messages_per_minute=60, max_messages_per_hour=1000))
    message = WebSocketMessage(message_type=MessageType.USER_MESSAGE)
    users = [f"user-{n}" for n in range(USERS)]

    async def run() -> float:
        record = limiter.record_message
        started = time.perf_counter()
        for _ in range(ROUNDS):
            for user in users:
                await record(user, message)
        return time.perf_counter() - started

    return asyncio.run(run())


def record_event_us() -> float:
    calls = 50_000 if QUICK else 200_000
    monitor = WebSocketEventMonitor()
    message = WebSocketMessage(message_type=MessageType.AGENT_THINKING)

    async def run() -> float:
        sessions = [f"run-{n}" for n in range(100)]
        for s in sessions:
            await monitor.start_session_tracking(s, {"user_id": "u"})
        record = monitor.record_event
        started = time.perf_counter()
        for n in range(calls):
            await record(sessions[n % 100], message)
        return time.perf_counter() - started

    return asyncio.run(run()) / calls * 1e6


decisions = USERS * ROUNDS
ours = decisions / best(ours_seconds)
anchor = decisions / best(limits_seconds)
event_us = best(record_event_us)
print(
    json.dumps(
        {
            "python_legacy": True,
            "decisions": decisions,
            "users": USERS,
            "record_message_per_second": round(ours),
            "limits_moving_window_per_second": round(anchor),
            "ratio": round(ours / anchor, 2),
            "record_event_us": round(event_us, 3),
        }
    )
)
