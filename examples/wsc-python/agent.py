"""A scripted agent backend that speaks wsc frames, for the wsc gateway.

Every POST is one run: the body is `{run_id, thread_id, user_id, agent_name,
input}`; the answer streams NDJSON, one wsc frame per line, in the legacy
vocabulary the gateway accepts (`agent_start`, `tool_execute`, ...).

Run it, then the gateway in front of it:
  python agent.py --port 8912
  wsc-gateway serve --agent-url http://127.0.0.1:8912/ --agent-protocol wsc
"""

import argparse
import asyncio
import json
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


def frames(run: dict):
    yield {"type": "agent_start", "payload": {}}
    yield {"type": "agent_thinking", "payload": {"thought": f"about {run.get('input', '')!r}"}}
    yield {"type": "tool_execute", "payload": {"tool_name": "search", "tool_call_id": "s-1"}}
    yield {"type": "tool_complete", "payload": {"tool_name": "search", "tool_call_id": "s-1", "result": "3 results"}}
    yield {"type": "agent_response_chunk", "payload": {"delta": "Found 3."}}
    yield {"type": "agent_complete", "payload": {"result": "Found 3."}}


async def run_agent(request: Request):
    run = await request.json()
    slow = int(request.query_params.get("slow", "0")) / 1000

    async def stream():
        for frame in frames(run):
            yield json.dumps(frame) + "\n"
            if slow:
                await asyncio.sleep(slow)

    return StreamingResponse(stream(), media_type="application/x-ndjson")


app = Starlette(routes=[Route("/", run_agent, methods=["POST"])])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8912, help="0 picks a free port")
    args = parser.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    # Listening before the address is printed: a client that reads it can
    # connect at once (uvicorn serves this socket).
    sock.listen(128)
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
