"""A scripted AG-UI agent backend for the wsc gateway.

Built on the official `ag-ui-protocol` package (its event types and
`EventEncoder`) and Starlette. Every POST is one run: the body is an AG-UI
`RunAgentInput`; the answer streams, over SSE, a run that thinks, calls two
tools whose calls interleave, and answers with the user's input in text
deltas.

Query parameters of the agent URL choose a mode:
  ?slow=MS   wait MS milliseconds between events
  ?fail=1    end the run with RUN_ERROR after the tool calls

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


async def run_agent(request: Request):
    try:
        run = RunAgentInput.model_validate(await request.json())
    except Exception as e:  # not an AG-UI RunAgentInput
        return JSONResponse({"error": str(e)}, status_code=400)
    slow = int(request.query_params.get("slow", "0")) / 1000
    fail = request.query_params.get("fail") == "1"
    encoder = EventEncoder(accept=request.headers.get("accept"))

    async def stream():
        for event in script(run, fail):
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
