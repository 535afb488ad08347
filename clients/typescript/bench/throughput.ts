// Frames per second into one Node client: the WscClient against a bare
// `ws` connection to the same gateway, in this one process, the same load
// (runs of the simulated agent with 32 tools, 4 in flight). Prints one
// JSON line. Run by crates/gateway/benches/ts_client.rs.

import WebSocket from "ws";

import { type SocketConstructor, WscClient } from "../src/index.js";

const url = process.argv[2];
const runs = Number(process.argv[3] ?? 200);
if (!url) {
  console.error("usage: node dist/bench/throughput.js WS_URL [RUNS]");
  process.exit(2);
}
const tools = Array.from({ length: 32 }, (_, i) => `tool-${i}`);
/** Frames of one run: started, thinking, 32 x (executing, completed), completed. */
const FRAMES_PER_RUN = 3 + 2 * tools.length;
const IN_FLIGHT = 4;

/** Runs `runs` runs through the client, 4 at a time; seconds taken. */
async function viaClient(user: string): Promise<number> {
  const client = new WscClient({ url: url!, userId: user, WebSocket: WebSocket as unknown as SocketConstructor });
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < runs) {
      next += 1;
      let frames = 0;
      for await (const _ of client.startAgent({ tools })) frames += 1;
      if (frames !== FRAMES_PER_RUN) throw new Error(`a run had ${frames} frames`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const seconds = (performance.now() - started) / 1000;
  client.close();
  return seconds;
}

/** The same through a bare `ws` connection: parse each frame, count runs. */
async function viaBareWs(user: string): Promise<number> {
  const ws = new WebSocket(`${url}?user_id=${user}`);
  await new Promise<void>((resolve, reject) => {
    ws.once("message", () => resolve()); // connection_established
    ws.once("error", reject);
  });
  const started = performance.now();
  let sent = 0;
  let done = 0;
  const start = () => {
    sent += 1;
    ws.send(JSON.stringify({ type: "start_agent", payload: { tools } }));
  };
  await new Promise<void>((resolve) => {
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as { type: string };
      if (frame.type === "agent_completed") {
        done += 1;
        if (done === runs) resolve();
        else if (sent < runs) start();
      }
    });
    for (let i = 0; i < IN_FLIGHT; i++) start();
  });
  const seconds = (performance.now() - started) / 1000;
  ws.close();
  return seconds;
}

// Warm both paths, then measure each twice, alternating.
await viaClient("warm-client");
await viaBareWs("warm-bare");
const client: number[] = [];
const bare: number[] = [];
for (let i = 0; i < 2; i++) {
  client.push(await viaClient(`client-${i}`));
  bare.push(await viaBareWs(`bare-${i}`));
}
const frames = runs * FRAMES_PER_RUN;
const best = (xs: number[]) => Math.min(...xs);
console.log(
  JSON.stringify({
    ts_client: true,
    frames,
    client_fps: frames / best(client),
    bare_ws_fps: frames / best(bare),
    ratio: best(bare) / best(client),
  }),
);
