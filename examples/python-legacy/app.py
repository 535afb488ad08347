"""A Starlette WebSocket endpoint guarded by the legacy ``websocket_core``
package: each user's connections and messages are rate-limited, every
connection is measured, and every agent run's events are validated.

A client connects to ``/ws?user_id=U`` and sends JSON messages
``{"type": "user_message", "payload": {"text": "..."}}``. Each one runs a
scripted agent whose five lifecycle events are recorded by the event monitor
and sent back; the run is validated at its end and the client gets
``{"type": "run_validated", ...}`` or ``{"type": "error", ...}`` naming what
was missing or out of order. Over the limits, the client gets an ``error``
frame with ``retry_after`` (messages) or the connection is closed with 1008
(connections).

    python app.py --port 8920
"""

import argparse
import itertools
import json
import time

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from websocket_core.event_monitor import EventValidationError, WebSocketEventMonitor
from websocket_core.performance_monitor_core import WebSocketPerformanceMonitor
from websocket_core.rate_limiter import RateLimitConfig, RateLimitExceededException, WebSocketRateLimiter
from websocket_core.types import MessageType, WebSocketMessage

limiter = WebSocketRateLimiter(RateLimitConfig(max_connections_per_user=2, max_messages_per_minute=5))
events = WebSocketEventMonitor()
performance = WebSocketPerformanceMonitor()
runs = itertools.count(1)

# The agent's script; "skip" in a message's text leaves out its thinking,
# which the event monitor then reports as missing.
SCRIPT = [
    MessageType.AGENT_STARTED,
    MessageType.AGENT_THINKING,
    MessageType.TOOL_EXECUTING,
    MessageType.TOOL_COMPLETED,
    MessageType.AGENT_COMPLETED,
]


async def run_agent(websocket: WebSocket, user_id: str, text: str) -> None:
    run_id = f"run-{next(runs)}"
    await events.start_session_tracking(run_id, {"user_id": user_id, "run_id": run_id})
    for kind in SCRIPT:
        if kind is MessageType.AGENT_THINKING and "skip" in text:
            continue
        event = WebSocketMessage(message_type=kind, payload={"run_id": run_id}, timestamp=time.time())
        await events.record_event(run_id, event)
        await websocket.send_json({"type": kind.value, "payload": event.payload})
    try:
        await events.validate_session_completion(run_id)
        await websocket.send_json({"type": "run_validated", "payload": {"run_id": run_id}})
    except EventValidationError as e:
        await websocket.send_json({"type": "error", "payload": {"code": "invalid_run", "message": str(e)}})


async def endpoint(websocket: WebSocket) -> None:
    user_id = websocket.query_params.get("user_id", "anonymous")
    connection_id = f"{user_id}-{id(websocket)}"
    await websocket.accept()
    try:
        await limiter.record_connection(user_id, connection_id)
    except RateLimitExceededException as e:
        await websocket.close(code=1008, reason=str(e)[:120])
        return
    await performance.start_connection_tracking(connection_id, {"user_id": user_id})
    await performance.record_connection_established(connection_id)
    await websocket.send_json({"type": "connection_established", "payload": {"connection_id": connection_id}})
    try:
        while True:
            raw = await websocket.receive_text()
            try:
                data = json.loads(raw)
                message = WebSocketMessage(message_type=data.get("type", ""), payload=data.get("payload") or {},
                                           timestamp=data.get("timestamp"))
            except (ValueError, TypeError, AttributeError) as e:
                await websocket.send_json({"type": "error", "payload": {"code": "bad_message", "message": str(e)}})
                continue
            try:
                await limiter.record_message(user_id, message)
            except RateLimitExceededException as e:
                await websocket.send_json(
                    {"type": "error", "payload": {"code": "rate_limited", "message": str(e),
                                                  "retry_after": e.retry_after}}
                )
                continue
            await performance.record_message_processed(connection_id, message)
            await run_agent(websocket, user_id, str(message.payload.get("text", "")))
    except WebSocketDisconnect:
        pass
    finally:
        await limiter.remove_connection(user_id, connection_id)


async def report(request) -> JSONResponse:
    """Each tracked connection's rating, from the performance monitor."""
    out = {}
    for connection_id in list(performance._connection_metrics):
        r = await performance.generate_performance_report(connection_id)
        if r is not None:
            out[connection_id] = {"messages": r.total_messages, "rating": r.performance_rating}
    return JSONResponse(out)


app = Starlette(routes=[WebSocketRoute("/ws", endpoint), Route("/report", report)])

if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8920)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
