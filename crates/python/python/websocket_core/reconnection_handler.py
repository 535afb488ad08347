"""Sessions that lose their connection come back: retries with exponential
backoff, then the buffered messages replayed on the new connection.

``WebSocketReconnectionHandler`` drives the caller's own collaborators: a
``websocket_manager`` whose ``attempt_reconnection(session)`` is awaited for
each try and whose ``send_messages(connection_id, messages)`` replays, and a
``message_buffer`` whose ``get_buffered_messages(user_id)`` gives what to
replay — looked up on them at each call, so they can be replaced at any time.
Backoff delays are decided by wsc's reconnection crate (Rust); the waits go
through ``asyncio.sleep`` as looked up at call time.
"""

import asyncio
import inspect
from datetime import datetime
from typing import Any, Dict, List, Optional

from . import _clock, _native
from ._values import Record, ValueConfig

__all__ = [
    "MaxRetriesExceededException",
    "ReconnectionConfig",
    "ReconnectionMetrics",
    "ReconnectionSession",
    "ReconnectionState",
    "WebSocketReconnectionHandler",
]


class MaxRetriesExceededException(Exception):
    """Every reconnection try failed."""


class ReconnectionConfig(ValueConfig):
    """Retry and session settings. Compares by value."""

    __slots__ = (
        "max_retry_attempts",
        "initial_retry_delay_seconds",
        "max_retry_delay_seconds",
        "backoff_multiplier",
        "session_timeout_minutes",
        "message_buffer_max_size",
        "jitter_factor",
    )

    def __init__(
        self,
        max_retry_attempts: int = 5,
        initial_retry_delay_seconds: float = 1.0,
        max_retry_delay_seconds: float = 30.0,
        backoff_multiplier: float = 2.0,
        session_timeout_minutes: float = 30,
        message_buffer_max_size: int = 1000,
        jitter_factor: float = 0.0,
    ) -> None:
        self.max_retry_attempts = max_retry_attempts
        self.initial_retry_delay_seconds = initial_retry_delay_seconds
        self.max_retry_delay_seconds = max_retry_delay_seconds
        self.backoff_multiplier = backoff_multiplier
        self.session_timeout_minutes = session_timeout_minutes
        self.message_buffer_max_size = message_buffer_max_size
        self.jitter_factor = jitter_factor



class ReconnectionSession:
    """A registered session: who, which connection, and its history."""

    def __init__(
        self,
        session_id: str,
        user_id: str,
        connection_id: str,
        thread_id: Optional[str] = None,
        last_message_id: Optional[str] = None,
        user_agent: Optional[str] = None,
        client_ip: Optional[str] = None,
        connected_at: Optional[datetime] = None,
    ) -> None:
        now = _clock.now()
        self.session_id = session_id
        self.user_id = user_id
        self.connection_id = connection_id
        self.thread_id = thread_id
        self.last_message_id = last_message_id
        self.user_agent = user_agent
        self.client_ip = client_ip
        self.connected_at: datetime = connected_at if connected_at is not None else now
        self.last_activity: datetime = now
        self.is_active = True
        self.disconnected_at: Optional[datetime] = None
        self.reconnected_at: Optional[datetime] = None
        self.reconnection_count = 0
        self.total_downtime_seconds = 0.0

    def __repr__(self) -> str:
        return (
            f"ReconnectionSession(session_id={self.session_id!r}, user_id={self.user_id!r}, "
            f"connection_id={self.connection_id!r}, is_active={self.is_active})"
        )


class ReconnectionState:
    """A session's reconnection in progress (a record, not an enum)."""

    def __init__(self, lost_reason: str) -> None:
        self.retry_count = 0
        self.is_reconnecting = True
        self.lost_reason = lost_reason
        self.reconnected_at: Optional[datetime] = None
        self.failed_permanently = False

    def __repr__(self) -> str:
        return (
            f"ReconnectionState(retry_count={self.retry_count}, is_reconnecting={self.is_reconnecting}, "
            f"failed_permanently={self.failed_permanently})"
        )


class ReconnectionMetrics(Record):
    """A session's disconnections and reconnections."""

    __slots__ = (
        "total_disconnections",
        "total_reconnection_attempts",
        "successful_reconnections",
        "failed_reconnections",
        "average_reconnection_time_seconds",
    )


class _Counts:
    __slots__ = ("disconnections", "attempts", "successes", "failures", "reconnect_seconds")

    def __init__(self) -> None:
        self.disconnections = 0
        self.attempts = 0
        self.successes = 0
        self.failures = 0
        self.reconnect_seconds = 0.0


def _seconds_between(later: datetime, earlier: Optional[datetime]) -> float:
    if earlier is None:
        return 0.0
    return max(0.0, _clock.seconds(later) - _clock.seconds(earlier))


class WebSocketReconnectionHandler:
    """Registers sessions, retries lost ones, replays what they missed."""

    def __init__(
        self,
        config: Optional[ReconnectionConfig] = None,
        websocket_manager: Any = None,
        message_buffer: Any = None,
    ) -> None:
        self.config = config if config is not None else ReconnectionConfig()
        self.websocket_manager = websocket_manager
        self.message_buffer = message_buffer
        self._active_sessions: Dict[str, ReconnectionSession] = {}
        self._reconnection_states: Dict[str, ReconnectionState] = {}
        self._cleanup_lock = asyncio.Lock()
        self._in_flight: set = set()
        self._counts: Dict[str, _Counts] = {}

    async def register_session(self, session_id: str, data: Dict[str, Any]) -> None:
        """Registers an active session; ``data`` has ``user_id`` and
        ``connection_id`` and optionally ``thread_id``, ``last_message_id``,
        ``user_agent``, ``client_ip``, ``connected_at``."""
        self._active_sessions[session_id] = ReconnectionSession(
            session_id,
            data["user_id"],
            data["connection_id"],
            thread_id=data.get("thread_id"),
            last_message_id=data.get("last_message_id"),
            user_agent=data.get("user_agent"),
            client_ip=data.get("client_ip"),
            connected_at=data.get("connected_at"),
        )
        self._counts.setdefault(session_id, _Counts())

    async def handle_connection_lost(self, session_id: str, reason: str = "unknown") -> None:
        """The session is inactive from now, with a new reconnection state."""
        session = self._active_sessions.get(session_id)
        if session is None:
            return
        now = _clock.now()
        session.is_active = False
        session.disconnected_at = now
        session.last_activity = now
        self._reconnection_states[session_id] = ReconnectionState(reason)
        self._counts.setdefault(session_id, _Counts()).disconnections += 1

    def _calculate_backoff_delay(self, retry_count: int) -> float:
        """``min(initial * multiplier ** retry_count, max)`` seconds, no jitter."""
        c = self.config
        return _native.backoff_delay(
            float(c.initial_retry_delay_seconds),
            float(c.backoff_multiplier),
            float(c.max_retry_delay_seconds),
            max(0, int(retry_count)),
        )

    async def attempt_reconnection(self, session_id: str) -> bool:
        """Tries up to ``max_retry_attempts`` times, waiting the backoff
        delay between a failed try and the next. True on success; raises
        ``MaxRetriesExceededException`` when every try failed; False at once
        (the manager untouched) for an unknown session, one not
        reconnecting, or one with an attempt already in flight."""
        session = self._active_sessions.get(session_id)
        state = self._reconnection_states.get(session_id)
        if session is None or state is None or not state.is_reconnecting or session_id in self._in_flight:
            return False
        self._in_flight.add(session_id)
        counts = self._counts.setdefault(session_id, _Counts())
        try:
            tries = 0
            while tries < self.config.max_retry_attempts:
                tries += 1
                state.retry_count = tries
                counts.attempts += 1
                outcome = self.websocket_manager.attempt_reconnection(session)
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                if inspect.isawaitable(outcome):
                    outcome = await outcome
                if outcome:
                    now = _clock.now()
                    state.is_reconnecting = False
                    state.reconnected_at = now
                    session.is_active = True
                    session.reconnected_at = now
                    session.last_activity = now
                    session.reconnection_count += 1
                    downtime = _seconds_between(now, session.disconnected_at)
                    session.total_downtime_seconds += downtime
                    counts.successes += 1
                    counts.reconnect_seconds += downtime
                    return True
                if tries < self.config.max_retry_attempts:
                    await asyncio.sleep(self._calculate_backoff_delay(tries - 1))
            state.is_reconnecting = False
            state.failed_permanently = True
            counts.failures += 1
            raise MaxRetriesExceededException(
                f"max retry attempts ({self.config.max_retry_attempts}) exceeded for session {session_id!r}"
            )
        finally:
            self._in_flight.discard(session_id)

    async def handle_successful_reconnection(self, session_id: str, new_connection_id: str) -> int:
        """The session on its new connection, then its user's buffered
        messages replayed there (the same list, once); how many."""
        session = self._active_sessions.get(session_id)
        if session is None:
            return 0
        now = _clock.now()
        was_down = session.disconnected_at if not session.is_active else None
        session.connection_id = new_connection_id
        session.is_active = True
        session.reconnected_at = now
        session.last_activity = now
        state = self._reconnection_states.get(session_id)
        if state is not None and state.is_reconnecting:
            state.is_reconnecting = False
            state.reconnected_at = now
            session.reconnection_count += 1
            downtime = _seconds_between(now, was_down)
            session.total_downtime_seconds += downtime
            counts = self._counts.setdefault(session_id, _Counts())
            counts.successes += 1
            counts.reconnect_seconds += downtime
        messages = await self.message_buffer.get_buffered_messages(session.user_id)
        if not messages:
            return 0
        await self.websocket_manager.send_messages(new_connection_id, messages)
        return len(messages)

    async def cleanup_expired_sessions(self) -> int:
        """Removes the sessions (and their states) whose live
        ``last_activity`` is older than ``session_timeout_minutes``; how many."""
        cutoff = _clock.seconds(_clock.now()) - self.config.session_timeout_minutes * 60.0
        removed = 0
        for session_id, session in list(self._active_sessions.items()):
            if _clock.seconds(session.last_activity) < cutoff:
                del self._active_sessions[session_id]
                self._reconnection_states.pop(session_id, None)
                self._counts.pop(session_id, None)
                removed += 1
        return removed

    async def get_session_metrics(self, session_id: str) -> Optional[ReconnectionMetrics]:
        """The session's disconnections and reconnections; ``None`` if unknown."""
        if session_id not in self._active_sessions:
            return None
        counts = self._counts.setdefault(session_id, _Counts())
        average = counts.reconnect_seconds / counts.successes if counts.successes else 0.0
        return ReconnectionMetrics(
            total_disconnections=counts.disconnections,
            total_reconnection_attempts=counts.attempts,
            successful_reconnections=counts.successes,
            failed_reconnections=counts.failures,
            average_reconnection_time_seconds=average,
        )
