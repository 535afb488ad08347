"""Message types and messages: ``MessageType`` and ``WebSocketMessage``.

``MessageType`` is a ``(str, Enum)`` with one member per message type the
wsc protocol knows (``MessageType.AGENT_STARTED.value == "agent_started"``);
looking up a wire value, a legacy name or a legacy alias (``"user"``) gives
its member.
"""

from enum import Enum
from typing import Any, Dict, Optional, Union

from . import _native

__all__ = ["MessageType", "WebSocketMessage"]

MessageType = Enum(  # type: ignore[misc]
    "MessageType",
    [(name, name.lower()) for name, _wire in _native.message_types()],
    type=str,
    module=__name__,
    qualname="MessageType",
)
MessageType.__doc__ = "A WebSocket message's type; ``.value`` is the wire value."


def _missing(cls: Any, value: object) -> Any:
    # Legacy names and aliases: the Rust protocol knows them all.
    if isinstance(value, str):
        try:
            return cls[_native.type_name(value)]
        except ValueError:
            return None
    return None


MessageType._missing_ = classmethod(_missing)  # type: ignore[attr-defined]


def _as_type(value: Union[str, "MessageType"]) -> "MessageType":
    if isinstance(value, MessageType):
        return value
    return MessageType(value)


class WebSocketMessage:
    """One message: its type, payload and optional metadata.

    ``message_type`` may be given as ``type=`` too and as a string (converted
    to its ``MessageType``); ``timestamp`` is float Unix seconds or ``None``
    and is never set for you. Messages compare by value.
    """

    __slots__ = ("message_type", "payload", "timestamp", "message_id", "user_id", "thread_id")

    def __init__(
        self,
        message_type: Union[str, "MessageType", None] = None,
        payload: Optional[Dict[str, Any]] = None,
        timestamp: Optional[float] = None,
        message_id: Optional[str] = None,
        user_id: Optional[str] = None,
        thread_id: Optional[str] = None,
        *,
        type: Union[str, "MessageType", None] = None,  # noqa: A002 - the legacy synonym
    ) -> None:
        if message_type is None:
            message_type = type
        elif type is not None and _as_type(type) is not _as_type(message_type):
            raise TypeError("message_type and type name different types")
        if message_type is None:
            raise TypeError("WebSocketMessage needs a message_type (or type=)")
        self.message_type = _as_type(message_type)
        self.payload = {} if payload is None else payload
        self.timestamp = timestamp
        self.message_id = message_id
        self.user_id = user_id
        self.thread_id = thread_id

    @property
    def type(self) -> "MessageType":
        """The message's type (``message_type``)."""
        return self.message_type

    def _fields(self) -> tuple:
        return (
            self.message_type,
            self.payload,
            self.timestamp,
            self.message_id,
            self.user_id,
            self.thread_id,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WebSocketMessage):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"WebSocketMessage(message_type={self.message_type.name}, payload={self.payload!r}, "
            f"timestamp={self.timestamp!r}, message_id={self.message_id!r}, "
            f"user_id={self.user_id!r}, thread_id={self.thread_id!r})"
        )
