"""Shared helpers of the package's tests."""

from datetime import datetime, timedelta, timezone

import pytest

from websocket_core.types import MessageType, WebSocketMessage

CRITICAL = [
    MessageType.AGENT_STARTED,
    MessageType.AGENT_THINKING,
    MessageType.TOOL_EXECUTING,
    MessageType.TOOL_COMPLETED,
    MessageType.AGENT_COMPLETED,
]


def ago(**delta: float) -> datetime:
    """An aware UTC datetime that long ago."""
    return datetime.now(timezone.utc) - timedelta(**delta)


def message(kind: MessageType, **payload: object) -> WebSocketMessage:
    return WebSocketMessage(message_type=kind, payload=dict(payload))


@pytest.fixture
def critical_run() -> list:
    return [message(t) for t in CRITICAL]
