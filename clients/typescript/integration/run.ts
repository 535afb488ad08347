// Drives the real gateway (its URL is the first argument) with many
// clients, each running several agent runs while its connection is cut
// (by the client every few frames, unless CUT_EVERY is 0: then by a proxy
// in between); prints one JSON line: what arrived, and whether every frame came
// exactly once and in order. Run by crates/server/tests/typescript.rs.

import WebSocket from "ws";

import { type Frame, type SocketConstructor, WscClient } from "../src/index.js";

const url = process.argv[2];
const clients = Number(process.argv[3] ?? 20);
const runsEach = Number(process.argv[4] ?? 3);
const cutEvery = Number(process.argv[5] ?? 4);
if (!url) {
  console.error("usage: node dist/integration/run.js WS_URL [CLIENTS] [RUNS] [CUT_EVERY_N_FRAMES]");
  process.exit(2);
}

interface Outcome {
  runs: number;
  completed: number;
  frames: number;
  duplicates: number;
  outOfOrder: number;
  drops: number;
  resumesRefused: number;
}

async function oneClient(i: number): Promise<Outcome> {
  const client = new WscClient({
    url,
    userId: `ts-${i}`,
    WebSocket: WebSocket as unknown as SocketConstructor,
    backoff: { initialMs: 20, maxMs: 200 },
  });
  const out: Outcome = { runs: 0, completed: 0, frames: 0, duplicates: 0, outOfOrder: 0, drops: 0, resumesRefused: 0 };
  const seen = new Set<string>();
  let lastSeq = 0;
  let sinceCut = 0;
  client.on("resumeRefused", () => (out.resumesRefused += 1));
  client.on("frame", (f: Frame) => {
    if (f.seq === undefined) return;
    out.frames += 1;
    if (f.message_id && seen.has(f.message_id)) out.duplicates += 1;
    if (f.message_id) seen.add(f.message_id);
    if (f.seq !== lastSeq + 1) out.outOfOrder += 1;
    lastSeq = f.seq;
    sinceCut += 1;
    if (cutEvery > 0 && sinceCut >= cutEvery + (i % 3)) {
      sinceCut = 0;
      out.drops += 1;
      // Cut it the way a network would, from this side.
      setImmediate(() => client.dropConnection());
    }
  });
  for (let r = 0; r < runsEach; r++) {
    out.runs += 1;
    const run = client.startAgent({ input: `run ${r}`, tools: ["search", "fetch"] });
    const types: string[] = [];
    for await (const frame of run) types.push(frame.type);
    if (types[0] === "agent_started" && types.at(-1) === "agent_completed") out.completed += 1;
  }
  client.close();
  return out;
}

// A run that never ends fails the whole drive instead of hanging it.
setTimeout(() => {
  console.error("not every run ended within 60 s");
  process.exit(3);
}, 60_000).unref();

const outcomes = await Promise.all(Array.from({ length: clients }, (_, i) => oneClient(i)));
const total = outcomes.reduce(
  (a, o) => {
    for (const k of Object.keys(a) as (keyof Outcome)[]) a[k] += o[k];
    return a;
  },
  { runs: 0, completed: 0, frames: 0, duplicates: 0, outOfOrder: 0, drops: 0, resumesRefused: 0 },
);
console.log(JSON.stringify(total));
