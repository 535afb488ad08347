"""The example app, run as a user would: ``python app.py`` in its own
process, real WebSocket clients (``websockets``) against it."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(HERE / "app.py"), "--port", str(port)], cwd=os.getcwd())
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the example app did not start")
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


async def frames_until(ws, kinds):
    got = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        got.append(frame)
        if frame["type"] in kinds:
            return got


def test_runs_are_validated_and_limits_told(server):
    async def scenario():
        async with websockets.connect(f"ws://{server}/ws?user_id=alice") as ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "connection_established"
            await ws.send(json.dumps({"type": "user_message", "payload": {"text": "hello"}}))
            got = await frames_until(ws, {"run_validated", "error"})
            assert [f["type"] for f in got] == [
                "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed",
                "run_validated",
            ]
            # A run without its thinking: the monitor names what is missing.
            await ws.send(json.dumps({"type": "user_message", "payload": {"text": "skip"}}))
            got = await frames_until(ws, {"run_validated", "error"})
            assert got[-1]["type"] == "error" and "AGENT_THINKING" in got[-1]["payload"]["message"]
            # Five messages a minute: the sixth is refused with retry_after.
            for _ in range(3):
                await ws.send(json.dumps({"type": "chat", "payload": {"text": "again"}}))
                await frames_until(ws, {"run_validated", "error"})
            await ws.send(json.dumps({"type": "chat", "payload": {"text": "one too many"}}))
            refused = await frames_until(ws, {"run_validated", "error"})
            assert refused[-1]["payload"]["code"] == "rate_limited"
            assert 0 < refused[-1]["payload"]["retry_after"] <= 60
            # Two connections per user: a third is closed with 1008.
            async with websockets.connect(f"ws://{server}/ws?user_id=alice") as second:
                await second.recv()
                async with websockets.connect(f"ws://{server}/ws?user_id=alice") as third:
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(third.recv(), 10)
                    assert closed.value.rcvd.code == 1008
                    assert "connection limit" in closed.value.rcvd.reason

    asyncio.run(scenario())
    with urllib.request.urlopen(f"http://{server}/report", timeout=10) as answer:
        report = json.loads(answer.read())
    assert any(r["messages"] >= 5 and r["rating"] in {"excellent", "good", "fair", "poor"} for r in report.values())
