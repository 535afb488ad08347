// AG-UI clients reading the same runs directly from an AG-UI backend and
// through the gateway, in this one Node process: text deltas per second
// for
//   - a lean client (fetch, split SSE, JSON.parse) on the backend directly,
//   - the same lean client on the gateway's `POST /ag-ui`,
//   - a lean WebSocket client (`ws`, JSON.parse) on the gateway's AG-UI
//     dialect,
//   - `@ag-ui/client`'s HttpAgent on the backend directly and on the
//     gateway,
//   - `WscAgent` on the gateway.
// USERS users at once, RUNS runs each, one after another; the modes take
// turns for ROUNDS rounds and the median of each is reported (a ratio of
// two modes: the median of its rounds' ratios). Given the
// gateway's process id and the system's clock ticks per second, also the
// gateway's CPU per event it passed through in each gateway mode (its
// utime + stime from /proc, median of the rounds). Prints one JSON line.
// Run by crates/gateway/benches/ag_ui_clients.rs.

import { readFileSync } from "node:fs";

import WebSocket from "ws";
import { HttpAgent } from "@ag-ui/client";

import type { SocketConstructor } from "../src/index.js";
import { WscAgent } from "../src/ag-ui.js";

const [direct, gatewayHttp, gatewayWs] = process.argv.slice(2, 5);
const users = Number(process.argv[5] ?? 50);
const runs = Number(process.argv[6] ?? 10);
const rounds = Number(process.argv[7] ?? 3);
const gatewayPid = process.argv[8];
const clockTicks = Number(process.argv[9] ?? 100);
if (!direct || !gatewayHttp || !gatewayWs) {
  console.error(
    "usage: node dist/bench/ag-ui.js DIRECT_URL GATEWAY_HTTP GATEWAY_WS [USERS] [RUNS] [ROUNDS] [GATEWAY_PID CLK_TCK]",
  );
  process.exit(2);
}
/** Events of one run: RUN_STARTED, the tool call's four, TEXT_MESSAGE_START, the deltas, TEXT_MESSAGE_END, RUN_FINISHED. */
const eventsPerRun = 6 + 200 + 2;

/** The gateway's CPU seconds so far (utime + stime), or 0 without its pid. */
function gatewayCpu(): number {
  if (!gatewayPid) return 0;
  const stat = readFileSync(`/proc/${gatewayPid}/stat`, "utf8");
  // The fields after the command name, which is in parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

let unique = 0;
function input(runId: string): Record<string, unknown> {
  return {
    threadId: `t-${runId}`,
    runId,
    messages: [{ id: `q-${runId}`, role: "user", content: "go" }],
    tools: [],
    context: [],
    state: {},
    forwardedProps: {},
  };
}

/** Reads an SSE body, JSON.parse of each event; the text deltas. */
async function leanSse(url: string, user: string, runId: string): Promise<number> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-Wsc-User-Id": user },
    body: JSON.stringify(input(runId)),
  });
  if (!response.body) throw new Error(`no body: ${response.status}`);
  const decoder = new TextDecoder();
  let buffer = "";
  let deltas = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const event = JSON.parse(line.slice(6)) as { type: string };
        if (event.type === "TEXT_MESSAGE_CONTENT") deltas += 1;
        if (event.type === "RUN_FINISHED" || event.type === "RUN_ERROR") return deltas;
      }
    }
  }
  return deltas;
}

/** One user's lean WebSocket client of the AG-UI dialect: its runs one after another. */
async function leanWs(user: string, count: number): Promise<number> {
  const ws = new WebSocket(`${gatewayWs}?user_id=${user}&protocol=ag-ui`);
  await new Promise((resolve, reject) => {
    ws.once("message", resolve); // connection_established
    ws.once("error", reject);
  });
  let deltas = 0;
  for (let r = 0; r < count; r++) {
    const runId = `${user}-${r}`;
    const done = new Promise<void>((resolve) => {
      const onMessage = (data: WebSocket.RawData) => {
        const frame = JSON.parse(data.toString()) as { run_id?: string; event?: { type: string } };
        if (frame.run_id !== runId || !frame.event) return;
        if (frame.event.type === "TEXT_MESSAGE_CONTENT") deltas += 1;
        if (frame.event.type === "RUN_FINISHED" || frame.event.type === "RUN_ERROR") {
          ws.off("message", onMessage);
          resolve();
        }
      };
      ws.on("message", onMessage);
    });
    ws.send(JSON.stringify({ type: "run_agent", payload: { input: input(runId) } }));
    await done;
  }
  ws.close();
  return deltas;
}

/** An AG-UI agent's runs one after another; the text deltas it saw. */
async function agentRuns(agent: HttpAgent | WscAgent, user: string, count: number): Promise<number> {
  let deltas = 0;
  for (let r = 0; r < count; r++) {
    agent.messages = [{ id: `q-${user}-${r}`, role: "user", content: "go" }];
    await agent.runAgent(
      { runId: `${user}-${r}` },
      {
        onTextMessageContentEvent() {
          deltas += 1;
        },
      },
    );
  }
  return deltas;
}

type Mode = (user: string) => Promise<number>;
const modes: Record<string, Mode> = {
  lean_direct: async (user) => {
    let d = 0;
    for (let r = 0; r < runs; r++) d += await leanSse(direct, user, `${user}-${r}`);
    return d;
  },
  lean_sse_gateway: async (user) => {
    let d = 0;
    for (let r = 0; r < runs; r++) d += await leanSse(`${gatewayHttp}/ag-ui`, user, `${user}-${r}`);
    return d;
  },
  lean_ws_gateway: (user) => leanWs(user, runs),
  http_agent_direct: (user) => agentRuns(new HttpAgent({ url: direct }), user, runs),
  http_agent_gateway: (user) =>
    agentRuns(new HttpAgent({ url: `${gatewayHttp}/ag-ui`, headers: { "X-Wsc-User-Id": user } }), user, runs),
  wsc_agent_gateway: async (user) => {
    const agent = new WscAgent({ url: gatewayWs, userId: user, WebSocket: WebSocket as unknown as SocketConstructor });
    const d = await agentRuns(agent, user, runs);
    agent.close();
    return d;
  },
};

/** Deltas per second of one mode, every user at once, and the gateway's CPU microseconds per event of the mode's runs. */
async function measure(mode: Mode): Promise<[number, number]> {
  unique += 1;
  const cpu = gatewayCpu();
  const started = performance.now();
  const counts = await Promise.all(Array.from({ length: users }, (_, u) => mode(`b${unique}-u${u}`)));
  const seconds = (performance.now() - started) / 1000;
  const cpuUs = ((gatewayCpu() - cpu) * 1e6) / (users * runs * eventsPerRun);
  return [counts.reduce((a, b) => a + b, 0) / seconds, cpuUs];
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? 0;
const results: Record<string, number[]> = {};
const cpus: Record<string, number[]> = {};
// Warm up every path once, then take turns.
for (const mode of Object.values(modes)) await measure(mode);
for (let round = 0; round < rounds; round++) {
  for (const [name, mode] of Object.entries(modes)) {
    const [rate, cpuUs] = await measure(mode);
    (results[name] ??= []).push(rate);
    (cpus[name] ??= []).push(cpuUs);
  }
}
const out: Record<string, number> = {};
for (const [name, values] of Object.entries(results)) out[name] = Math.round(median(values));
// The gateway's CPU per event, for the modes that go through it.
const cpuOut: Record<string, number> = {};
if (gatewayPid) {
  for (const [name, values] of Object.entries(cpus)) {
    if (name.endsWith("_gateway")) cpuOut[name] = Number(median(values).toFixed(2));
  }
}
// A ratio is the median of the rounds' ratios: the modes of a round run
// back to back, so a change in the machine's speed between rounds (it is
// shared) cancels out.
const ratio = (a: string, b: string) =>
  Number(median((results[a] ?? []).map((v, round) => v / (results[b]?.[round] || 1))).toFixed(3));
process.stdout.write(
  `${JSON.stringify({
    ag_ui_clients: true,
    users,
    runs,
    rounds,
    deltas_per_second: out,
    gateway_cpu_us_per_event: cpuOut,
    lean_sse_vs_direct: ratio("lean_sse_gateway", "lean_direct"),
    lean_ws_vs_direct: ratio("lean_ws_gateway", "lean_direct"),
    http_agent_vs_direct: ratio("http_agent_gateway", "http_agent_direct"),
    wsc_agent_vs_http_agent_direct: ratio("wsc_agent_gateway", "http_agent_direct"),
  })}\n`,
);
