"""``websocket_core.types``: message types and messages."""

import enum

import pytest

from websocket_core import _native
from websocket_core.types import MessageType, WebSocketMessage


def test_message_type_is_a_str_enum_with_lower_case_values():
    assert issubclass(MessageType, str) and issubclass(MessageType, enum.Enum)
    assert MessageType.AGENT_STARTED.value == "agent_started"
    assert MessageType.AGENT_STARTED == "agent_started"
    for member in MessageType:
        assert member.value == member.name.lower()


def test_one_member_per_rust_type():
    names = [name for name, _wire in _native.message_types()]
    assert [m.name for m in MessageType] == names
    for name in ("AGENT_STARTED", "AGENT_THINKING", "TOOL_EXECUTING", "TOOL_COMPLETED", "AGENT_COMPLETED",
                 "USER_MESSAGE", "START_AGENT", "CHAT"):
        assert name in MessageType.__members__


def test_strings_become_members_aliases_included():
    assert MessageType("agent_completed") is MessageType.AGENT_COMPLETED
    assert MessageType("user") is MessageType.USER_MESSAGE
    with pytest.raises(ValueError):
        MessageType("no_such_type")


def test_message_keywords_defaults_and_synonym():
    m = WebSocketMessage(message_type="agent_started")
    assert m.message_type is MessageType.AGENT_STARTED
    assert m.payload == {} and m.timestamp is None
    assert m.message_id is None and m.user_id is None and m.thread_id is None
    t = WebSocketMessage(type=MessageType.CHAT, payload={"a": 1}, timestamp=12.5, message_id="m",
                         user_id="u", thread_id="t")
    assert t.message_type is MessageType.CHAT and t.type is MessageType.CHAT
    assert (t.payload, t.timestamp, t.message_id, t.user_id, t.thread_id) == ({"a": 1}, 12.5, "m", "u", "t")


def test_payload_defaults_are_not_shared_and_equality_is_by_value():
    a, b = WebSocketMessage(message_type="chat"), WebSocketMessage(message_type="chat")
    a.payload["x"] = 1
    assert b.payload == {}
    assert WebSocketMessage(message_type="chat", payload={"x": 1}) == a
    assert a != b


def test_a_message_needs_a_type():
    with pytest.raises(TypeError):
        WebSocketMessage()
    with pytest.raises(ValueError):
        WebSocketMessage(message_type="not_a_type")
