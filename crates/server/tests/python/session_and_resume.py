"""A wsc gateway session and resume from Python, with the `websockets` package.

Usage: python session_and_resume.py ws://HOST:PORT/ws
Exits 0 when a run's events arrive numbered 1..N across a reconnection that
resumed the session; prints what it saw.
"""

import asyncio
import json
import sys

import websockets


async def main(url: str) -> int:
    seen = []
    async with websockets.connect(f"{url}?user_id=python-user") as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "connection_established", hello
        info = hello["payload"]
        assert info["resumed"] is False, info
        await ws.send(json.dumps({
            "type": "start_agent",
            "payload": {"agent_name": "py", "tools": ["search", "fetch"], "step_delay_ms": 40},
        }))
        while len(seen) < 3:
            frame = json.loads(await ws.recv())
            if "seq" in frame:
                seen.append(frame["seq"])
    # The connection is gone; resume from the last seq received.
    query = (f"?user_id=python-user&session_id={info['session_id']}"
             f"&resume_token={info['resume_token']}&last_seq={seen[-1]}")
    async with websockets.connect(url + query) as ws:
        hello = json.loads(await ws.recv())["payload"]
        assert hello["resumed"] is True, hello
        assert hello["session_id"] == info["session_id"], hello
        while not seen or seen[-1] < 7:
            frame = json.loads(await ws.recv())
            if "seq" in frame:
                seen.append(frame["seq"])
                if frame["type"] == "agent_completed":
                    break
    print(json.dumps({"seqs": seen, "resumed": True}))
    return 0 if seen == list(range(1, 8)) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
