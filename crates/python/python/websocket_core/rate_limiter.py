"""Per-user connection caps and exact message windows.

``WebSocketRateLimiter`` keeps one ``UserRateLimitState`` per user in
``_user_states``. Its ``message_timestamps`` is the live list of the
admitted messages' times (aware UTC datetimes, oldest first): callers may
rewrite entries, and the next decision counts what the list holds. The
counts, the limits and ``retry_after`` are decided by wsc's exact sliding
log (Rust), which mirrors the list entry for entry.
"""

import asyncio
import time
from datetime import datetime
from typing import Any, Dict, Iterable, List, Optional

from . import _clock, _native
from ._values import ValueConfig

__all__ = [
    "RateLimitConfig",
    "RateLimitExceededException",
    "UserRateLimitState",
    "WebSocketRateLimiter",
]

_HOUR = 3600.0
_time = time.time
_fromtimestamp = datetime.fromtimestamp
_UTC = _clock.UTC
_append = list.append


class RateLimitExceededException(Exception):
    """A connection or message over its limit; ``retry_after`` is the
    seconds until it would be admitted, when known."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class RateLimitConfig(ValueConfig):
    """The limits. Compares by value."""

    __slots__ = (
        "max_connections_per_user",
        "max_messages_per_minute",
        "max_messages_per_hour",
        "connection_window_seconds",
        "message_window_seconds",
        "burst_allowance",
        "cleanup_inactive_after_seconds",
    )

    def __init__(
        self,
        max_connections_per_user: int = 3,
        max_messages_per_minute: int = 60,
        max_messages_per_hour: int = 1000,
        connection_window_seconds: float = 60,
        message_window_seconds: float = 60,
        burst_allowance: int = 0,
        cleanup_inactive_after_seconds: Optional[float] = 3600,
    ) -> None:
        self.max_connections_per_user = max_connections_per_user
        self.max_messages_per_minute = max_messages_per_minute
        self.max_messages_per_hour = max_messages_per_hour
        self.connection_window_seconds = connection_window_seconds
        self.message_window_seconds = message_window_seconds
        self.burst_allowance = burst_allowance
        self.cleanup_inactive_after_seconds = cleanup_inactive_after_seconds

    def _windows(self) -> List[tuple]:
        # (seconds, limit): the message window with the burst allowance,
        # then the hour. A limit of 0 limits nothing.
        minute = self.max_messages_per_minute
        return [
            (float(self.message_window_seconds), minute + self.burst_allowance if minute else 0),
            (_HOUR, self.max_messages_per_hour),
        ]


class _LiveTimestamps(list):
    """The admitted messages' datetimes: a list whose every change reaches
    the native log that decides over it."""

    __slots__ = ("_log",)

    def __init__(self, log: Any, items: Iterable[datetime] = ()) -> None:
        super().__init__(items)
        self._log = log
        self._resync()

    def _resync(self) -> None:
        self._log.replace([_clock.seconds(t) for t in self])


def _resyncing(name: str) -> Any:
    method = getattr(list, name)

    def changed(self: _LiveTimestamps, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        self._resync()
        return result

    changed.__name__ = name
    return changed


for _name in (
    "__setitem__",
    "__delitem__",
    "__iadd__",
    "__imul__",
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "clear",
    "sort",
    "reverse",
):
    setattr(_LiveTimestamps, _name, _resyncing(_name))


class UserRateLimitState:
    """One user's connections, admitted messages and violations."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.active_connections: List[str] = []
        self._log = _native.MessageLog()
        self._timestamps = _LiveTimestamps(self._log)
        self.last_activity: datetime = _clock.now()
        self.violation_count = 0

    @property
    def message_timestamps(self) -> List[datetime]:
        """The live list of admitted messages' times, oldest first."""
        return self._timestamps

    @message_timestamps.setter
    def message_timestamps(self, value: Iterable[datetime]) -> None:
        self._timestamps = _LiveTimestamps(self._log, value)

    def __repr__(self) -> str:
        return (
            f"UserRateLimitState(user_id={self.user_id!r}, connections={len(self.active_connections)}, "
            f"messages={len(self._timestamps)}, violations={self.violation_count})"
        )


class WebSocketRateLimiter:
    """Connection caps and message windows per user."""

    def __init__(self, config: Optional[RateLimitConfig] = None) -> None:
        self.config = config if config is not None else RateLimitConfig()
        self._user_states: Dict[str, UserRateLimitState] = {}
        # Every method runs to its end without yielding to the event loop,
        # so no update is lost between concurrent tasks; the locks are kept
        # for code that takes them around several calls.
        self._state_lock = asyncio.Lock()
        self._cleanup_lock = asyncio.Lock()

    def _state(self, user_id: str) -> UserRateLimitState:
        state = self._user_states.get(user_id)
        if state is None:
            state = self._user_states[user_id] = UserRateLimitState(user_id)
        return state

    async def check_connection_limit(self, user_id: str) -> bool:
        """Whether the user has fewer active connections than allowed."""
        state = self._user_states.get(user_id)
        active = len(state.active_connections) if state is not None else 0
        return active < self.config.max_connections_per_user

    async def record_connection(self, user_id: str, connection_id: str) -> None:
        """Adds a connection; raises ``RateLimitExceededException`` at the
        user's connection limit."""
        state = self._state(user_id)
        limit = self.config.max_connections_per_user
        if connection_id in state.active_connections:
            state.last_activity = _clock.now()
            return
        if len(state.active_connections) >= limit:
            raise RateLimitExceededException(
                f"connection limit reached for user {user_id!r}: {len(state.active_connections)} of {limit} open"
            )
        state.active_connections.append(connection_id)
        state.last_activity = _clock.now()

    async def remove_connection(self, user_id: str, connection_id: str) -> None:
        """Removes a connection; the user's entry stays."""
        state = self._user_states.get(user_id)
        if state is None:
            return
        if connection_id in state.active_connections:
            state.active_connections.remove(connection_id)
        state.last_activity = _clock.now()

    async def check_message_rate_limit(self, user_id: str) -> bool:
        """Whether one more message would be admitted now (nothing recorded)."""
        state = self._user_states.get(user_id)
        if state is None:
            return True
        admitted, _window, _retry = state._log.decide(_clock.seconds(_clock.now()), self.config._windows())
        return admitted

    async def record_message(self, user_id: str, message: Any) -> None:
        """Admits one message (of any type) or raises
        ``RateLimitExceededException`` with its ``retry_after``; a refusal
        counts a violation and records nothing."""
        state = self._user_states.get(user_id)
        if state is None:
            state = self._state(user_id)
        c = self.config
        per_minute = c.max_messages_per_minute
        now = _time()
        refused = state._log.admit_message(
            now,
            c.message_window_seconds,
            per_minute + c.burst_allowance if per_minute else 0,
            c.max_messages_per_hour,
        )
        if refused is not None:
            window, retry = refused
            state.violation_count += 1
            which = "per minute" if window == 0 else "per hour"
            raise RateLimitExceededException(
                f"message rate limit exceeded for user {user_id!r} ({which}): retry in {retry:.3f} s",
                retry_after=retry,
            )
        # The native log recorded it; the live list gets its datetime.
        moment = _fromtimestamp(now, _UTC)
        _append(state._timestamps, moment)
        state.last_activity = moment

    async def _cleanup_expired_data(self) -> int:
        """Drops the message times no window needs (judging the live
        entries) and the users with no connections inactive for longer than
        ``cleanup_inactive_after_seconds``; how many of both were removed."""
        now = _clock.now()
        now_s = _clock.seconds(now)
        windows = self.config._windows()
        removed = 0
        for user_id, state in list(self._user_states.items()):
            timestamps = state._timestamps
            # The native log mirrors the live list: drop the same entries.
            keep = state._log.retain_needed(now_s, windows)
            if not all(keep):
                kept = [t for t, k in zip(timestamps, keep) if k]
                removed += len(timestamps) - len(kept)
                list.clear(timestamps)
                list.extend(timestamps, kept)
            inactive_after = self.config.cleanup_inactive_after_seconds
            if (
                inactive_after is not None
                and not state.active_connections
                and now_s - _clock.seconds(state.last_activity) > inactive_after
            ):
                del self._user_states[user_id]
                removed += 1
        return removed

    async def cleanup_expired_data(self) -> int:
        """The same as ``_cleanup_expired_data``."""
        return await self._cleanup_expired_data()
