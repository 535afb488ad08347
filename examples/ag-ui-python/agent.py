"""A scripted AG-UI agent backend for the wsc gateway.

Built on the official `ag-ui-protocol` package (its event types and
`EventEncoder`) and Starlette. Every POST is one run: the body is an AG-UI
`RunAgentInput`; the answer streams, over SSE, a run that thinks, calls two
tools whose calls interleave, and answers with the user's input in text
deltas.

Query parameters of the agent URL choose a mode:
  ?slow=MS   wait MS milliseconds between events
  ?fail=1    end the run with RUN_ERROR after the tool calls
  ?all=1     a run that uses every one of AG-UI 1.0's 31 event types but
             RUN_ERROR (with ?fail=1 too: it ends with RUN_ERROR instead
             of RUN_FINISHED)

Run it, then the gateway in front of it:
  python agent.py --port 8911
  wsc-gateway serve --agent-url http://127.0.0.1:8911/
"""

import argparse
import asyncio
import socket
import sys

import uvicorn
from ag_ui.core import (
    BaseEvent,
    EventType,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.encoder import EventEncoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


def script(run: RunAgentInput, fail: bool):
    """The run's events, in order."""
    question = run.messages[-1].content if run.messages else ""
    yield RunStartedEvent(type=EventType.RUN_STARTED, thread_id=run.thread_id, run_id=run.run_id)
    yield StepStartedEvent(type=EventType.STEP_STARTED, step_name="plan")
    # Two tool calls that interleave: both start before either ends.
    yield ToolCallStartEvent(type=EventType.TOOL_CALL_START, tool_call_id="search-1", tool_call_name="search")
    yield ToolCallStartEvent(type=EventType.TOOL_CALL_START, tool_call_id="fetch-1", tool_call_name="fetch")
    yield ToolCallArgsEvent(type=EventType.TOOL_CALL_ARGS, tool_call_id="search-1", delta='{"query": ')
    yield ToolCallArgsEvent(type=EventType.TOOL_CALL_ARGS, tool_call_id="fetch-1", delta='{"url": "https://example.org"}')
    yield ToolCallArgsEvent(type=EventType.TOOL_CALL_ARGS, tool_call_id="search-1", delta=f'"{question[:40]}"}}')
    yield ToolCallEndEvent(type=EventType.TOOL_CALL_END, tool_call_id="fetch-1")
    yield ToolCallEndEvent(type=EventType.TOOL_CALL_END, tool_call_id="search-1")
    yield ToolCallResultEvent(type=EventType.TOOL_CALL_RESULT, message_id="r-1", tool_call_id="search-1", content="3 results")
    yield ToolCallResultEvent(type=EventType.TOOL_CALL_RESULT, message_id="r-2", tool_call_id="fetch-1", content="a page")
    yield StepFinishedEvent(type=EventType.STEP_FINISHED, step_name="plan")
    if fail:
        yield RunErrorEvent(type=EventType.RUN_ERROR, message="the scripted agent failed on purpose")
        return
    yield TextMessageStartEvent(type=EventType.TEXT_MESSAGE_START, message_id="answer", role="assistant")
    for word in ["You", " asked: ", question]:
        yield TextMessageContentEvent(type=EventType.TEXT_MESSAGE_CONTENT, message_id="answer", delta=word or " ")
    yield TextMessageEndEvent(type=EventType.TEXT_MESSAGE_END, message_id="answer")
    yield RunFinishedEvent(type=EventType.RUN_FINISHED, thread_id=run.thread_id, run_id=run.run_id)


# Every AG-UI 1.0 event type, by its wire name, for `?all=1`: each event
# is validated by the package's own model for its type.
EVENT_MODELS = {
    "TEXT_MESSAGE_START": "TextMessageStartEvent",
    "TEXT_MESSAGE_CONTENT": "TextMessageContentEvent",
    "TEXT_MESSAGE_END": "TextMessageEndEvent",
    "TEXT_MESSAGE_CHUNK": "TextMessageChunkEvent",
    "TOOL_CALL_START": "ToolCallStartEvent",
    "TOOL_CALL_ARGS": "ToolCallArgsEvent",
    "TOOL_CALL_END": "ToolCallEndEvent",
    "TOOL_CALL_CHUNK": "ToolCallChunkEvent",
    "TOOL_CALL_RESULT": "ToolCallResultEvent",
    "STATE_SNAPSHOT": "StateSnapshotEvent",
    "STATE_DELTA": "StateDeltaEvent",
    "MESSAGES_SNAPSHOT": "MessagesSnapshotEvent",
    "ACTIVITY_SNAPSHOT": "ActivitySnapshotEvent",
    "ACTIVITY_DELTA": "ActivityDeltaEvent",
    "RAW": "RawEvent",
    "CUSTOM": "CustomEvent",
    "RUN_STARTED": "RunStartedEvent",
    "RUN_FINISHED": "RunFinishedEvent",
    "RUN_ERROR": "RunErrorEvent",
    "STEP_STARTED": "StepStartedEvent",
    "STEP_FINISHED": "StepFinishedEvent",
    "REASONING_START": "ReasoningStartEvent",
    "REASONING_MESSAGE_START": "ReasoningMessageStartEvent",
    "REASONING_MESSAGE_CONTENT": "ReasoningMessageContentEvent",
    "REASONING_MESSAGE_END": "ReasoningMessageEndEvent",
    "REASONING_MESSAGE_CHUNK": "ReasoningMessageChunkEvent",
    "REASONING_END": "ReasoningEndEvent",
    "REASONING_ENCRYPTED_VALUE": "ReasoningEncryptedValueEvent",
    "SUBAGENT_STARTED": "SubagentStartedEvent",
    "SUBAGENT_FINISHED": "SubagentFinishedEvent",
    "SUBAGENT_ERROR": "SubagentErrorEvent",
}


def event(fields: dict) -> BaseEvent:
    """An event from its wire fields (camelCase), validated by its model."""
    import ag_ui.core as core

    return getattr(core, EVENT_MODELS[fields["type"]]).model_validate(fields)


def everything(run: RunAgentInput, fail: bool):
    """A well-formed run that uses every event type but one of its two
    ends (`?all=1`)."""
    ids = {"threadId": run.thread_id, "runId": run.run_id}
    for fields in [
        {"type": "RUN_STARTED", **ids},
        {"type": "STEP_STARTED", "stepName": "plan"},
        {"type": "REASONING_START", "messageId": "think"},
        {"type": "REASONING_MESSAGE_START", "messageId": "think-1", "role": "reasoning"},
        {"type": "REASONING_MESSAGE_CONTENT", "messageId": "think-1", "delta": "Which tool?"},
        {"type": "REASONING_MESSAGE_END", "messageId": "think-1"},
        {"type": "REASONING_MESSAGE_CHUNK", "messageId": "think-2", "delta": " Search."},
        {"type": "REASONING_ENCRYPTED_VALUE", "subtype": "message", "entityId": "think-1", "encryptedValue": "b64:opaque"},
        {"type": "REASONING_END", "messageId": "think"},
        {"type": "STATE_SNAPSHOT", "snapshot": {"progress": 0}},
        {"type": "STATE_DELTA", "delta": [{"op": "replace", "path": "/progress", "value": 50}]},
        {"type": "TOOL_CALL_START", "toolCallId": "search-1", "toolCallName": "search"},
        {"type": "TOOL_CALL_ARGS", "toolCallId": "search-1", "delta": '{"query": "all"}'},
        {"type": "TOOL_CALL_END", "toolCallId": "search-1"},
        {"type": "TOOL_CALL_RESULT", "messageId": "result-1", "toolCallId": "search-1", "content": "31 types"},
        {"type": "TOOL_CALL_CHUNK", "toolCallId": "fetch-1", "toolCallName": "fetch", "delta": "{}"},
        {"type": "ACTIVITY_SNAPSHOT", "messageId": "activity-1", "activityType": "progress", "content": {"pct": 50}},
        {"type": "ACTIVITY_DELTA", "messageId": "activity-1", "activityType": "progress", "patch": [{"op": "replace", "path": "/pct", "value": 100}]},
        {"type": "SUBAGENT_STARTED", "subagentRunId": "helper-1", "name": "helper"},
        {"type": "TEXT_MESSAGE_START", "messageId": "helper-answer", "role": "assistant", "subagentRunId": "helper-1"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "helper-answer", "delta": "found it", "subagentRunId": "helper-1"},
        {"type": "TEXT_MESSAGE_END", "messageId": "helper-answer", "subagentRunId": "helper-1"},
        {"type": "SUBAGENT_FINISHED", "subagentRunId": "helper-1", "outcome": {"type": "success"}},
        {"type": "SUBAGENT_STARTED", "subagentRunId": "helper-2", "name": "checker"},
        {"type": "SUBAGENT_ERROR", "subagentRunId": "helper-2", "message": "nothing to check"},
        {"type": "STEP_FINISHED", "stepName": "plan"},
        {"type": "MESSAGES_SNAPSHOT", "messages": [{"id": "question", "role": "user", "content": "all of it"}]},
        {"type": "RAW", "event": {"provider": "scripted", "tokens": 31}},
        {"type": "CUSTOM", "name": "usage", "value": {"tokens": 31}},
        {"type": "TEXT_MESSAGE_START", "messageId": "answer", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "answer", "delta": "Every event type."},
        {"type": "TEXT_MESSAGE_END", "messageId": "answer"},
        {"type": "TEXT_MESSAGE_CHUNK", "messageId": "answer-2", "role": "assistant", "delta": " Done."},
    ]:
        yield event(fields)
    if fail:
        yield event({"type": "RUN_ERROR", "message": "the scripted agent failed on purpose", "code": "scripted"})
    else:
        yield event({"type": "RUN_FINISHED", **ids, "outcome": {"type": "success"}})


async def run_agent(request: Request):
    try:
        run = RunAgentInput.model_validate(await request.json())
    except Exception as e:  # not an AG-UI RunAgentInput
        return JSONResponse({"error": str(e)}, status_code=400)
    slow = int(request.query_params.get("slow", "0")) / 1000
    fail = request.query_params.get("fail") == "1"
    everything_mode = request.query_params.get("all") == "1"
    encoder = EventEncoder(accept=request.headers.get("accept"))

    async def stream():
        events = everything(run, fail) if everything_mode else script(run, fail)
        for event in events:
            yield encoder.encode(event)
            if slow:
                await asyncio.sleep(slow)

    return StreamingResponse(stream(), media_type=encoder.get_content_type())


app = Starlette(routes=[Route("/", run_agent, methods=["POST"])])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8911, help="0 picks a free port")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    # Listening before the address is printed: a client that reads it can
    # connect at once (uvicorn serves this socket).
    sock.listen(128)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
