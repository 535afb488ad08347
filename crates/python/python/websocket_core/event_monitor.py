"""Every agent run delivers its critical events, in order.

``WebSocketEventMonitor`` (also ``ChatEventMonitor``) tracks sessions: each
event recorded is kept (the same message object) with its timing, and
``validate_session_completion`` judges the run — missing critical events
first, then their order — by the wsc event monitor (Rust).

The trackers in ``_session_trackers`` are the live state: a caller holding
one sees later changes, and assigning ``tracker.started_at`` ages the
session for the next call.
"""

import asyncio
import time
from datetime import datetime
from typing import Any, Dict, List, Optional

from . import _clock, _native
from .types import MessageType, WebSocketMessage

__all__ = [
    "ChatEventMonitor",
    "EventMetrics",
    "EventTiming",
    "EventTracker",
    "EventValidationError",
    "MissingCriticalEventError",
    "WebSocketEventMonitor",
]


class EventValidationError(Exception):
    """A session's events do not make a complete run (or the session is unknown)."""


class MissingCriticalEventError(EventValidationError):
    """Critical events never arrived; ``str()`` names each missing member."""


class EventTiming:
    """When one event was recorded, and the milliseconds since the one before
    (for the first, since tracking began)."""

    __slots__ = ("event_type", "_at", "_since", "_timestamp")

    def __init__(self, event_type: MessageType, timestamp: datetime, latency_ms: Optional[float]) -> None:
        self.event_type = event_type
        self._timestamp = timestamp
        self._at = _clock.seconds(timestamp)
        self._since = self._at - (latency_ms or 0.0) / 1000.0

    @classmethod
    def _recorded(cls, event_type: MessageType, at: float, since: float) -> "EventTiming":
        # The hot path: plain seconds, the datetime made when first read.
        timing = cls.__new__(cls)
        timing.event_type = event_type
        timing._at = at
        timing._since = since
        timing._timestamp = None
        return timing

    @property
    def timestamp(self) -> datetime:
        """When the event was recorded (aware UTC)."""
        if self._timestamp is None:
            self._timestamp = _clock.from_seconds(self._at)
        return self._timestamp

    @property
    def latency_ms(self) -> float:
        """Milliseconds since the event before (the first: since tracking began)."""
        return max(0.0, (self._at - self._since) * 1000.0)

    def __repr__(self) -> str:
        return f"EventTiming({self.event_type.name}, {self.timestamp.isoformat()}, {self.latency_ms!r})"


class EventTracker:
    """One tracked session: who it is for, the messages received (in arrival
    order) and whether it completed or timed out."""

    def __init__(
        self,
        user_id: str,
        thread_id: Optional[str] = None,
        run_id: Optional[str] = None,
        agent_name: Optional[str] = None,
        started_at: Optional[datetime] = None,
    ) -> None:
        self.user_id = user_id
        self.thread_id = thread_id
        self.run_id = run_id
        self.agent_name = agent_name
        self.events_received: List[WebSocketMessage] = []
        self.started_at: datetime = started_at if started_at is not None else _clock.now()
        self.is_complete = False
        self.is_timeout = False
        self.completed_at: Optional[datetime] = None
        self.event_timings: List[EventTiming] = []
        self._timed_out_at: Optional[datetime] = None

    def __repr__(self) -> str:
        return (
            f"EventTracker(user_id={self.user_id!r}, run_id={self.run_id!r}, "
            f"events={len(self.events_received)}, is_complete={self.is_complete})"
        )


class EventMetrics:
    """A session's duration, event count and per-event timings."""

    __slots__ = ("session_id", "session_duration_ms", "total_events", "event_timings")

    def __init__(
        self, session_id: str, session_duration_ms: float, total_events: int, event_timings: List[EventTiming]
    ) -> None:
        self.session_id = session_id
        self.session_duration_ms = session_duration_ms
        self.total_events = total_events
        self.event_timings = event_timings

    def __repr__(self) -> str:
        return (
            f"EventMetrics(session_id={self.session_id!r}, session_duration_ms={self.session_duration_ms:.3f}, "
            f"total_events={self.total_events})"
        )


_time = time.time
_recorded = EventTiming._recorded


def _ms(later: datetime, earlier: datetime) -> float:
    return (_clock.seconds(later) - _clock.seconds(earlier)) * 1000.0


class WebSocketEventMonitor:
    """Tracks agent sessions' events and validates each run's completion."""

    def __init__(
        self,
        track_critical_events: bool = True,
        validate_event_order: bool = True,
        metrics_enabled: bool = True,
        auto_cleanup_enabled: bool = True,
    ) -> None:
        self.track_critical_events = track_critical_events
        self.validate_event_order = validate_event_order
        self.metrics_enabled = metrics_enabled
        self.auto_cleanup_enabled = auto_cleanup_enabled
        self._session_trackers: Dict[str, EventTracker] = {}
        # Every method runs to its end without yielding to the event loop,
        # so concurrent tasks cannot interleave inside one; the lock is kept
        # for code that takes it around several calls.
        self._validation_lock = asyncio.Lock()

    def _tracker(self, session_id: str) -> EventTracker:
        tracker = self._session_trackers.get(session_id)
        if tracker is None:
            raise EventValidationError(f"unknown session {session_id!r}: start tracking it first")
        return tracker

    async def start_session_tracking(self, session_id: str, data: Dict[str, Any]) -> None:
        """Starts tracking ``session_id``; ``data`` has ``user_id`` and
        optionally ``thread_id``, ``run_id``, ``agent_name``, ``started_at``."""
        if "user_id" not in data:
            raise EventValidationError("session data needs a user_id")
        self._session_trackers[session_id] = EventTracker(
            user_id=data["user_id"],
            thread_id=data.get("thread_id"),
            run_id=data.get("run_id"),
            agent_name=data.get("agent_name"),
            started_at=data.get("started_at"),
        )

    async def record_event(self, session_id: str, message: WebSocketMessage) -> None:
        """Keeps ``message`` (the same object) and its timing. Never raises
        for a known session, whatever the order: order is judged at
        validation. Raises ``EventValidationError`` for an unknown one."""
        tracker = self._session_trackers.get(session_id)
        if tracker is None:
            raise EventValidationError(f"unknown session {session_id!r}: start tracking it first")
        now = _time()
        timings = tracker.event_timings
        since = timings[-1]._at if timings else _clock.seconds(tracker.started_at)
        tracker.events_received.append(message)
        timings.append(_recorded(message.message_type, now, since))

    async def validate_session_completion(self, session_id: str) -> bool:
        """Judges the run: raises ``MissingCriticalEventError`` if a critical
        event never arrived (with ``track_critical_events``), else a plain
        ``EventValidationError`` if their order is broken (with
        ``validate_event_order``); else marks it complete and returns True."""
        tracker = self._tracker(session_id)
        verdict = _native.judge_events(
            [m.message_type.value for m in tracker.events_received],
            self.track_critical_events,
            self.validate_event_order,
        )
        if verdict is not None:
            kind, message = verdict
            if kind == "missing":
                raise MissingCriticalEventError(message)
            raise EventValidationError(message)
        tracker.is_complete = True
        tracker.completed_at = _clock.now()
        return True

    async def get_session_metrics(self, session_id: str) -> Optional[EventMetrics]:
        """The session's duration (to its completion, or now), event count
        and timings; ``None`` for an unknown session."""
        tracker = self._session_trackers.get(session_id)
        if tracker is None:
            return None
        end = tracker.completed_at if tracker.completed_at is not None else _clock.now()
        duration = _ms(end, tracker.started_at)
        return EventMetrics(
            session_id=session_id,
            # Positive even when nothing measurable has elapsed.
            session_duration_ms=max(duration, 1e-6),
            total_events=len(tracker.events_received),
            event_timings=list(tracker.event_timings),
        )

    async def cleanup_completed_sessions(self, max_age_minutes: float = 60) -> int:
        """Removes the sessions complete (or timed out) at least
        ``max_age_minutes`` ago (0: all of them); how many. Nothing with
        ``auto_cleanup_enabled`` off."""
        if not self.auto_cleanup_enabled:
            return 0
        now = _clock.now()
        removed = 0
        for session_id, tracker in list(self._session_trackers.items()):
            ended = tracker.completed_at if tracker.is_complete else None
            if ended is None and tracker.is_timeout:
                ended = tracker._timed_out_at or tracker.started_at
            if ended is None:
                continue
            if _ms(now, ended) >= max_age_minutes * 60_000.0:
                del self._session_trackers[session_id]
                removed += 1
        return removed

    async def check_session_timeout(self, session_id: str, timeout_minutes: float = 30) -> bool:
        """Whether the session exists, is incomplete, and started (its live
        ``started_at``) more than ``timeout_minutes`` ago."""
        tracker = self._session_trackers.get(session_id)
        if tracker is None or tracker.is_complete:
            return False
        return _ms(_clock.now(), tracker.started_at) > timeout_minutes * 60_000.0

    async def mark_session_timeout(self, session_id: str) -> bool:
        """Marks the session timed out (it stays incomplete); False if unknown."""
        tracker = self._session_trackers.get(session_id)
        if tracker is None:
            return False
        tracker.is_timeout = True
        tracker._timed_out_at = _clock.now()
        return True


ChatEventMonitor = WebSocketEventMonitor
